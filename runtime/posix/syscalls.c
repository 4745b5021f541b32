/*
 * Process-level system calls ERTS makes beyond LionsOS's, and the adapter's entry point.
 *
 * What ERTS reads back is real: one CPU (one scheduler), a dotted hostname (without a
 * domain `kernel` would spawn the inet_gethost port program, and there are no
 * processes), "/" as the working directory, resource limits matching the fd table.
 * Signals do not exist in a PD: installing handlers, masks and alternate stacks succeeds
 * and does nothing, and so does signalling ourselves. Anything else still reaches
 * LionsOS's dispatcher, which prints `POSIX|ERROR: Unimplemented syscall number: N`
 * and answers ENOSYS: ERTS takes its fallback (clone, faccessat, membarrier...).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#include <lions/posix/fd.h>

#include "adapter.h"
#include "chrysopolis.h"

#ifndef RUNTIME_HOSTNAME
#define RUNTIME_HOSTNAME "beam.chrysopolis.local"
#endif
#define UID 501 /* LionsOS's getuid/getgid */
#define NS_PER_S 1000000000ULL

#define UNUSED6 (void)a, (void)b, (void)c, (void)d, (void)e, (void)f

static long zero(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return 0;
}

static long sys_uid(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return UID;
}

static long sys_uname(long a, long b, long c, long d, long e, long f)
{
    (void)b, (void)c, (void)d, (void)e, (void)f;
    struct utsname *u = (struct utsname *)a;
    if (u == NULL) {
        return -EFAULT;
    }
    memset(u, 0, sizeof(*u));
    strcpy(u->sysname, "seL4");
    strcpy(u->nodename, RUNTIME_HOSTNAME);
    strcpy(u->release, "Microkit-2.0.1");
    strcpy(u->version, "Chrysopolis LionsOS");
    strcpy(u->machine, "aarch64");
    strcpy(u->domainname, "(none)");
    return 0;
}

/* Linux's getcwd returns the length including the NUL. */
static long sys_getcwd(long a, long b, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (a == 0) {
        return -EFAULT;
    }
    if (b < 2) {
        return -ERANGE;
    }
    strcpy((char *)a, "/");
    return 2;
}

static void limit_of(int resource, struct rlimit *r)
{
    switch (resource) {
    case RLIMIT_NOFILE:
        r->rlim_cur = r->rlim_max = MAX_FDS;
        break;
    case RLIMIT_STACK:
        r->rlim_cur = r->rlim_max = 8 << 20;
        break;
    case RLIMIT_CORE:
        r->rlim_cur = r->rlim_max = 0;
        break;
    default:
        r->rlim_cur = r->rlim_max = RLIM_INFINITY;
        break;
    }
}

/* Limits are reported, never changed (a new limit is accepted and ignored). */
static long sys_prlimit64(long pid, long resource, long newp, long oldp, long e, long f)
{
    (void)pid, (void)newp, (void)e, (void)f;
    if (resource < 0 || resource >= RLIM_NLIMITS) {
        return -EINVAL;
    }
    if (oldp != 0) {
        limit_of((int)resource, (struct rlimit *)oldp);
    }
    return 0;
}

static long sys_getrlimit(long resource, long oldp, long c, long d, long e, long f)
{
    (void)c, (void)d;
    return sys_prlimit64(0, resource, 0, oldp, e, f);
}

/* One CPU: ERTS starts one scheduler. Returns the mask's size, as Linux does. */
static long sys_sched_getaffinity(long pid, long size, long maskp, long d, long e, long f)
{
    (void)pid, (void)d, (void)e, (void)f;
    if (size < (long)sizeof(unsigned long)) {
        return -EINVAL;
    }
    memset((void *)maskp, 0, sizeof(unsigned long));
    *(unsigned long *)maskp = 1;
    return sizeof(unsigned long);
}

/* Elapsed time is CPU time: the PD has the one CPU it runs on. */
static long sys_getrusage(long who, long usagep, long c, long d, long e, long f)
{
    (void)who, (void)c, (void)d, (void)e, (void)f;
    struct rusage *ru = (struct rusage *)usagep;
    memset(ru, 0, sizeof(*ru));
    uint64_t ns = runtime_now_ns();
    ru->ru_utime.tv_sec = (time_t)(ns / NS_PER_S);
    ru->ru_utime.tv_usec = (suseconds_t)(ns % NS_PER_S / 1000);
    return 0;
}

/* The old action or mask asked for is "none": zero it, as Linux would for a fresh process. */
static long sys_rt_sigaction(long sig, long act, long oldact, long size, long e, long f)
{
    (void)sig, (void)act, (void)e, (void)f;
    if (oldact != 0) {
        memset((void *)oldact, 0, 3 * sizeof(long) + (size_t)size); /* handler, flags, restorer, mask */
    }
    return 0;
}

static long sys_rt_sigprocmask(long how, long set, long oldset, long size, long e, long f)
{
    (void)how, (void)set, (void)e, (void)f;
    if (oldset != 0) {
        memset((void *)oldset, 0, (size_t)size);
    }
    return 0;
}

static long sys_sigaltstack(long ss, long old, long c, long d, long e, long f)
{
    (void)ss, (void)c, (void)d, (void)e, (void)f;
    if (old != 0) {
        stack_t *o = (stack_t *)old;
        memset(o, 0, sizeof(*o));
        o->ss_flags = SS_DISABLE;
    }
    return 0;
}

/* A PD has no child processes: fork (clone with SIGCHLD) fails; ERTS's forker copes. */
static long sys_clone(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return -ENOSYS;
}

/* Socket options: only socketpair fds exist here, and they have none to report. */
static long sys_getsockopt(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return -ENOPROTOOPT;
}

void runtime_adapter_init(void)
{
    threads_init_syscalls();
    clocks_init();
    memory_init();
    fds_init();
    poll_init();
    fsops_init();
    entropy_init();

    runtime_define_syscall(SYS_uname, sys_uname);
    runtime_define_syscall(SYS_getcwd, sys_getcwd);
    runtime_define_syscall(SYS_prlimit64, sys_prlimit64);
    runtime_define_syscall(SYS_getrlimit, sys_getrlimit);
    runtime_define_syscall(SYS_setrlimit, zero);
    runtime_define_syscall(SYS_sched_getaffinity, sys_sched_getaffinity);
    runtime_define_syscall(SYS_sched_setaffinity, zero);
    runtime_define_syscall(SYS_getrusage, sys_getrusage);
    runtime_define_syscall(SYS_geteuid, sys_uid);
    runtime_define_syscall(SYS_getegid, sys_uid);
    runtime_define_syscall(SYS_getppid, zero);
    runtime_define_syscall(SYS_rt_sigaction, sys_rt_sigaction);
    runtime_define_syscall(SYS_rt_sigprocmask, sys_rt_sigprocmask);
    runtime_define_syscall(SYS_sigaltstack, sys_sigaltstack);
    runtime_define_syscall(SYS_prctl, zero);
    runtime_define_syscall(SYS_kill, zero);
    runtime_define_syscall(SYS_tkill, zero);
    runtime_define_syscall(SYS_tgkill, zero);
    runtime_define_syscall(SYS_setsid, zero);
    runtime_define_syscall(SYS_clone, sys_clone);
    runtime_define_syscall(SYS_getsockopt, sys_getsockopt);
}
