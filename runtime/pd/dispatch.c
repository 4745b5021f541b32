/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * musl start-up and the syscall dispatcher.
 *
 * LionsOS's libc_init() points musl's __sysinfo at its own dispatcher but never
 * runs musl's start-up, so the thread pointer is 0 and the first errno write
 * faults. We run __init_libc with an environment and an auxv, and put our own
 * dispatcher in front of LionsOS's: a slot registered here wins, the rest chain on.
 * Registration goes through tables only (PD_SYSCALLS below, SYSCALLS in
 * runtime/posix/syscalls.c) and refuses a taken slot: docs/syscalls.md.
 */
#include <elf.h>
#include <errno.h>
#include <stddef.h>
#include <sys/syscall.h>

#include <microkit.h>

#include <chrysopolis/dispatch.h>
#include <chrysopolis/pd.h>

extern size_t __sysinfo;
void __init_libc(char **envp, char *pn); /* hidden in musl, still links statically */

typedef long (*lions_dispatch_t)(long, ...);
static lions_dispatch_t lions_dispatch;
static dispatch_fn_t table[DISPATCH_MAX];

/* musl calls __sysinfo(n, args...); AAPCS64 passes these in x0-x6 either way. */
static long dispatch(long n, long a, long b, long c, long d, long e, long f)
{
    if (n >= 0 && n < DISPATCH_MAX && table[n] != NULL) {
        return table[n](a, b, c, d, e, f);
    }
    return lions_dispatch(n, a, b, c, d, e, f);
}

long dispatch_lions(long n, long a, long b, long c, long d, long e, long f)
{
    return lions_dispatch(n, a, b, c, d, e, f);
}

dispatch_fn_t dispatch_handler(long nr)
{
    return nr >= 0 && nr < DISPATCH_MAX ? table[nr] : NULL;
}

/* Decimal digits of n into buf (at least 21 bytes), NUL-terminated. */
static const char *decimal(long n, char *buf, size_t size)
{
    char *p = buf + size - 1;
    unsigned long u = n < 0 ? 0UL - (unsigned long)n : (unsigned long)n;
    *p = '\0';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (n < 0) {
        *--p = '-';
    }
    return p;
}

/* printf may not be up yet (musl starts after the first registration): dbg_puts only. */
static int refuse(const struct dispatch_syscall *row, const char *why)
{
    char buf[24];
    microkit_dbg_puts("beam_server: ERROR: syscall ");
    microkit_dbg_puts(decimal(row->nr, buf, sizeof(buf)));
    microkit_dbg_puts(" (");
    microkit_dbg_puts(row->file);
    microkit_dbg_puts("): ");
    microkit_dbg_puts(why);
    microkit_dbg_puts("\n");
    return -1;
}

int dispatch_register(const struct dispatch_syscall *row)
{
    if (row->nr < 0 || row->nr >= DISPATCH_MAX) {
        return refuse(row, "out of range of the dispatch table (DISPATCH_MAX)");
    }
    if (row->handler == NULL) {
        return refuse(row, "no handler");
    }
    if (table[row->nr] != NULL) {
        return refuse(row, "registered twice");
    }
    table[row->nr] = row->handler;
    return 0;
}

long sys_set_tid_address(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    return 1; /* one thread id for the whole PD */
}

/*
 * The syscalls every image answers, the POSIX adapter or not (docs/syscalls.md). The
 * adapter's are in runtime/posix/syscalls.c; a number appears in one of the two only.
 */
static const struct dispatch_syscall PD_SYSCALLS[] = {
    {SYS_set_tid_address, sys_set_tid_address, "dispatch.c"},
};

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

void dispatch_init(void)
{
    lions_dispatch = (lions_dispatch_t)__sysinfo;
    __sysinfo = (size_t)dispatch;
    for (size_t i = 0; i < sizeof(PD_SYSCALLS) / sizeof(PD_SYSCALLS[0]); i++) {
        if (dispatch_register(&PD_SYSCALLS[i]) != 0) {
            pd_halt();
        }
    }
    __init_libc(start_env, "beam_server");
}
