/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * syscalls.c: the POSIX adapter's entry point and its syscall map (docs/syscalls.md),
 * plus the process-level calls no other module owns (uname, limits, signals, ids).
 */
#pragma once

/* Set the adapter up and register every syscall of its table; call once, first thing in
 * chrysopolis_main (after dispatch_init(), which pd.c runs). */
void syscalls_init(void);

long sys_nothing(long a, long b, long c, long d, long e, long f);
long sys_getid(long a, long b, long c, long d, long e, long f);
long sys_uname(long a, long b, long c, long d, long e, long f);
long sys_getcwd(long a, long b, long c, long d, long e, long f);
long sys_prlimit64(long pid, long resource, long newp, long oldp, long e, long f);
long sys_getrlimit(long resource, long oldp, long c, long d, long e, long f);
long sys_sched_getaffinity(long pid, long size, long maskp, long d, long e, long f);
long sys_getrusage(long who, long usagep, long c, long d, long e, long f);
long sys_rt_sigaction(long sig, long act, long oldact, long size, long e, long f);
long sys_rt_sigprocmask(long how, long set, long oldset, long size, long e, long f);
long sys_sigaltstack(long ss, long old, long c, long d, long e, long f);
long sys_clone(long a, long b, long c, long d, long e, long f);
long sys_no_socket(long a, long b, long c, long d, long e, long f);
long sys_no_sockopt(long a, long b, long c, long d, long e, long f);
