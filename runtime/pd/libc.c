/*
 * musl start-up and the syscall interposer.
 *
 * LionsOS's libc_init() points musl's __sysinfo at its own dispatcher but never
 * runs musl's start-up, so the thread pointer is 0 and the first errno write
 * faults. We run __init_libc with an environment and an auxv, and put our own
 * dispatcher in front of LionsOS's: a slot we define wins, the rest chain on.
 */
#include <elf.h>
#include <errno.h>
#include <stddef.h>
#include <sys/syscall.h>

#include "chrysopolis.h"

extern size_t __sysinfo;
void __init_libc(char **envp, char *pn); /* hidden in musl, still links statically */

#define MAX_SYSCALL 512

typedef long (*lions_dispatch_t)(long, ...);
static lions_dispatch_t lions_dispatch;
static runtime_syscall_t table[MAX_SYSCALL];

/* musl calls __sysinfo(n, args...); AAPCS64 passes these in x0-x6 either way. */
static long dispatch(long n, long a, long b, long c, long d, long e, long f)
{
    if (n >= 0 && n < MAX_SYSCALL && table[n] != NULL) {
        return table[n](a, b, c, d, e, f);
    }
    return lions_dispatch(n, a, b, c, d, e, f);
}

/* Run LionsOS's handler for `n` (for interposers that add to it rather than replace it). */
long runtime_lions_syscall(long n, long a, long b, long c, long d, long e, long f)
{
    return lions_dispatch(n, a, b, c, d, e, f);
}

void runtime_define_syscall(long nr, runtime_syscall_t fn)
{
    if (nr >= 0 && nr < MAX_SYSCALL) {
        table[nr] = fn;
    }
}

static long sys_set_tid_address(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    return 1; /* one thread id for the whole PD */
}

static char *start_env[] = {
    "HOME=/",
    "PATH=/bin",
    NULL,
    /* auxv follows the environment, as the kernel lays it out */
    (char *)AT_PAGESZ,
    (char *)4096,
    (char *)AT_NULL,
    NULL,
};

void runtime_libc_init(void)
{
    lions_dispatch = (lions_dispatch_t)__sysinfo;
    __sysinfo = (size_t)dispatch;
    runtime_define_syscall(SYS_set_tid_address, sys_set_tid_address);
    __init_libc(start_env, "beam_server");
}
