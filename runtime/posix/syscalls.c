/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The POSIX adapter's entry point and its syscall map: SYSCALLS below is every syscall
 * the adapter answers, with its handler and the file defining it, registered in one
 * loop (docs/syscalls.md). Then the process-level calls no other module owns.
 *
 * What ERTS reads back is real: one CPU (one scheduler), a dotted hostname (without a
 * domain `kernel` would spawn the inet_gethost port program, and there are no
 * processes), "/" as the working directory, resource limits matching the fd table.
 * Signals do not exist in a PD: installing handlers, masks and alternate stacks succeeds
 * and does nothing, and so does signalling ourselves. A PD has no child processes:
 * clone answers ENOSYS and ERTS's forker copes. A number in no table reaches LionsOS's
 * dispatcher, which prints `POSIX|ERROR: Unimplemented syscall number: N` and answers
 * ENOSYS (the checks fail on that line unless the number is listed, with its reason, in
 * UNANSWERED_SYSCALLS of chrysopolis/build/beam.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#include <lions/posix/fd.h>

#include <chrysopolis/clocks.h>
#include <chrysopolis/dispatch.h>
#include <chrysopolis/entropy.h>
#include <chrysopolis/fd_console.h>
#include <chrysopolis/fd_dir.h>
#include <chrysopolis/fd_epoll.h>
#include <chrysopolis/fd_pipe.h>
#include <chrysopolis/fd_proc.h>
#include <chrysopolis/fd_socket.h>
#include <chrysopolis/fd_timerfd.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/fsops.h>
#include <chrysopolis/fwcfg.h>
#include <chrysopolis/memory.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/poll.h>
#include <chrysopolis/supervision.h>
#include <chrysopolis/syscalls.h>
#include <chrysopolis/threads.h>

#ifndef RUNTIME_HOSTNAME
#define RUNTIME_HOSTNAME "beam.chrysopolis.local"
#endif
#define UID 501 /* LionsOS's getuid/getgid */

#define UNUSED6 (void)a, (void)b, (void)c, (void)d, (void)e, (void)f

/* Succeeds and does nothing. */
long sys_nothing(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return 0;
}

/* geteuid, getegid: LionsOS's uid. */
long sys_getid(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return UID;
}

/* The run's hostname (`chrysopolis run --hostname`, fw_cfg), read once; else the default.
 * Letters, digits, '-' and '.' only: the tool refuses anything else, so this never should. */
static const char *hostname(void)
{
    static char name[65];
    static bool read;
    if (!read) {
        read = true;
        ssize_t n = fwcfg_read_file(FWCFG_HOSTNAME, name, sizeof(name));
        bool ok = n > 0;
        for (ssize_t i = 0; ok && i < n; i++) {
            char ch = name[i];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '.';
        }
        if (!ok) {
            strcpy(name, RUNTIME_HOSTNAME);
        }
    }
    return name;
}

long sys_uname(long a, long b, long c, long d, long e, long f)
{
    (void)b, (void)c, (void)d, (void)e, (void)f;
    struct utsname *u = (struct utsname *)a;
    if (u == NULL) {
        return -EFAULT;
    }
    memset(u, 0, sizeof(*u));
    strcpy(u->sysname, "seL4");
    strcpy(u->nodename, hostname());
    strcpy(u->release, "2.0.1-microkit"); /* numbers first: inet_drv sscanfs "%u.%u" */
    strcpy(u->version, "Chrysopolis LionsOS");
    strcpy(u->machine, "aarch64");
    strcpy(u->domainname, "(none)");
    return 0;
}

/* Linux's getcwd returns the length including the NUL. */
long sys_getcwd(long a, long b, long c, long d, long e, long f)
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
long sys_prlimit64(long pid, long resource, long newp, long oldp, long e, long f)
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

long sys_getrlimit(long resource, long oldp, long c, long d, long e, long f)
{
    (void)c, (void)d;
    return sys_prlimit64(0, resource, 0, oldp, e, f);
}

/* One CPU: ERTS starts one scheduler. Returns the mask's size, as Linux does. */
long sys_sched_getaffinity(long pid, long size, long maskp, long d, long e, long f)
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
long sys_getrusage(long who, long usagep, long c, long d, long e, long f)
{
    (void)who, (void)c, (void)d, (void)e, (void)f;
    struct rusage *ru = (struct rusage *)usagep;
    memset(ru, 0, sizeof(*ru));
    uint64_t ns = clocks_now_ns();
    ru->ru_utime.tv_sec = (time_t)(ns / NS_IN_S);
    ru->ru_utime.tv_usec = (suseconds_t)(ns % NS_IN_S / 1000);
    return 0;
}

/* The old action or mask asked for is "none": zero it, as Linux would for a fresh process. */
long sys_rt_sigaction(long sig, long act, long oldact, long size, long e, long f)
{
    (void)sig, (void)act, (void)e, (void)f;
    if (oldact != 0) {
        memset((void *)oldact, 0, 3 * sizeof(long) + (size_t)size); /* handler, flags, restorer, mask */
    }
    return 0;
}

long sys_rt_sigprocmask(long how, long set, long oldset, long size, long e, long f)
{
    (void)how, (void)set, (void)e, (void)f;
    if (oldset != 0) {
        memset((void *)oldset, 0, (size_t)size);
    }
    return 0;
}

long sys_sigaltstack(long ss, long old, long c, long d, long e, long f)
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
long sys_clone(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return -ENOSYS;
}

/* An image without runtime/net: no network sockets; ERTS probes and falls back. */
long sys_no_socket(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return -EAFNOSUPPORT;
}

/* Socket options there: only socketpair fds exist, and they have none to report. */
long sys_no_sockopt(long a, long b, long c, long d, long e, long f)
{
    UNUSED6;
    return -ENOPROTOOPT;
}

/*
 * The syscall map: every number the POSIX adapter answers, its handler, and the file
 * that defines the handler (docs/syscalls.md explains it). One row per number; the PD
 * base answers a few more in runtime/pd/dispatch.c (PD_SYSCALLS). A number in neither
 * goes to LionsOS. tests/test_syscall_map.py checks the rows against the sources.
 */
static const struct dispatch_syscall SYSCALLS[] = {
    /* threads and the futex */
    {SYS_futex, sys_futex, "threads.c"},
    {SYS_sched_yield, sys_sched_yield, "threads.c"},
    {SYS_gettid, sys_gettid, "threads.c"},
    {SYS_exit, sys_exit, "threads.c"},
    {SYS_exit_group, sys_exit_group, "threads.c"},
    /* clocks and sleeps */
    {SYS_clock_gettime, sys_clock_gettime, "clocks.c"},
    {SYS_clock_getres, sys_clock_getres, "clocks.c"},
    {SYS_nanosleep, sys_nanosleep, "clocks.c"},
    {SYS_clock_nanosleep, sys_clock_nanosleep, "clocks.c"},
    {SYS_gettimeofday, sys_gettimeofday, "clocks.c"},
    /* memory */
    {SYS_mmap, sys_mmap, "memory.c"},
    {SYS_munmap, sys_munmap, "memory.c"},
    {SYS_mremap, sys_mremap, "memory.c"},
    {SYS_brk, sys_brk, "memory.c"},
    {SYS_madvise, sys_madvise, "memory.c"},
    {SYS_mprotect, sys_mprotect, "memory.c"},
    /* file descriptors of every kind */
    {SYS_dup, sys_dup, "fds.c"},
    {SYS_fcntl, sys_fcntl, "fds.c"},
    {SYS_pipe2, sys_pipe2, "fd_pipe.c"},
    {SYS_socketpair, sys_socketpair, "fd_pipe.c"},
    {SYS_timerfd_create, sys_timerfd_create, "fd_timerfd.c"},
    {SYS_timerfd_settime, sys_timerfd_settime, "fd_timerfd.c"},
    {SYS_timerfd_gettime, sys_timerfd_gettime, "fd_timerfd.c"},
    {SYS_epoll_create1, sys_epoll_create1, "fd_epoll.c"},
    {SYS_epoll_ctl, sys_epoll_ctl, "fd_epoll.c"},
    {SYS_epoll_pwait, sys_epoll_pwait, "fd_epoll.c"},
    {SYS_getdents64, sys_getdents64, "fd_dir.c"},
    {SYS_ioctl, sys_ioctl, "fd_console.c"},
    {SYS_ppoll, sys_ppoll, "poll.c"},
    {SYS_pselect6, sys_pselect6, "poll.c"},
    /* the file system and fd I/O */
    {SYS_openat, sys_openat, "fsops.c"},
    {SYS_newfstatat, sys_newfstatat, "fsops.c"},
    {SYS_faccessat, sys_faccessat, "fsops.c"},
    {SYS_mkdirat, sys_mkdirat, "fsops.c"},
    {SYS_unlinkat, sys_unlinkat, "fsops.c"},
    {SYS_read, sys_read, "fsops.c"},
    {SYS_write, sys_write, "fsops.c"},
    {SYS_readv, sys_readv, "fsops.c"},
    {SYS_writev, sys_writev, "fsops.c"},
    {SYS_fstat, sys_fstat, "fsops.c"},
    {SYS_close, sys_close, "fsops.c"},
    {SYS_dup3, sys_dup3, "fsops.c"},
    {SYS_lseek, sys_lseek, "fsops.c"},
    {SYS_pread64, sys_pread64, "fsops.c"},
    {SYS_pwrite64, sys_pwrite64, "fsops.c"},
    {SYS_fsync, sys_fsync, "fsops.c"},
    {SYS_fdatasync, sys_fsync, "fsops.c"},
    /* entropy */
    {SYS_getrandom, sys_getrandom, "entropy.c"},
    /* the process */
    {SYS_uname, sys_uname, "syscalls.c"},
    {SYS_getcwd, sys_getcwd, "syscalls.c"},
    {SYS_prlimit64, sys_prlimit64, "syscalls.c"},
    {SYS_getrlimit, sys_getrlimit, "syscalls.c"},
    {SYS_setrlimit, sys_nothing, "syscalls.c"},
    {SYS_sched_getaffinity, sys_sched_getaffinity, "syscalls.c"},
    {SYS_sched_setaffinity, sys_nothing, "syscalls.c"},
    {SYS_getrusage, sys_getrusage, "syscalls.c"},
    {SYS_geteuid, sys_getid, "syscalls.c"},
    {SYS_getegid, sys_getid, "syscalls.c"},
    {SYS_getppid, sys_nothing, "syscalls.c"},
    {SYS_rt_sigaction, sys_rt_sigaction, "syscalls.c"},
    {SYS_rt_sigprocmask, sys_rt_sigprocmask, "syscalls.c"},
    {SYS_sigaltstack, sys_sigaltstack, "syscalls.c"},
    {SYS_prctl, sys_nothing, "syscalls.c"},
    {SYS_kill, sys_kill, "threads.c"},
    {SYS_tkill, sys_tkill, "threads.c"},
    {SYS_tgkill, sys_tgkill, "threads.c"},
    {SYS_setsid, sys_nothing, "syscalls.c"},
    {SYS_clone, sys_clone, "syscalls.c"},
};

/* Images without runtime/net (no fd_socket.c): the socket calls ERTS probes, refused.
 * Images with it register fd_socket.c's NET_SYSCALLS instead. */
static const struct dispatch_syscall NO_NET_SYSCALLS[] = {
    {SYS_socket, sys_no_socket, "syscalls.c"},
    {SYS_getsockopt, sys_no_sockopt, "syscalls.c"},
};

/* Defined by runtime/net/fd_socket.c when the image links it; NULL otherwise. */
#pragma weak fd_socket_init

void syscalls_init(void)
{
    memory_init();
    fd_proc_register("/proc/meminfo", memory_meminfo);
    supervision_init();
    fd_console_init();
    fd_epoll_init();
    for (size_t i = 0; i < sizeof(SYSCALLS) / sizeof(SYSCALLS[0]); i++) {
        if (dispatch_register(&SYSCALLS[i]) != 0) {
            pd_halt();
        }
    }
    if (fd_socket_init != NULL) {
        fd_socket_init();
        return;
    }
    for (size_t i = 0; i < sizeof(NO_NET_SYSCALLS) / sizeof(NO_NET_SYSCALLS[0]); i++) {
        if (dispatch_register(&NO_NET_SYSCALLS[i]) != 0) {
            pd_halt();
        }
    }
}
