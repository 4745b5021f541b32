/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * threads.c: POSIX threads as libmicrokitco cothreads (musl's __clone and __unmapself),
 * the --wrap'ed libmicrokitco calls that keep each cothread's thread pointer, the futex
 * and the thread syscalls (docs/threads.md).
 */
#pragma once

long sys_futex(long uaddr, long op, long val, long timeout, long uaddr2, long val3);
long sys_sched_yield(long a, long b, long c, long d, long e, long f);
long sys_gettid(long a, long b, long c, long d, long e, long f);
long sys_exit(long a, long b, long c, long d, long e, long f);
long sys_exit_group(long status, long b, long c, long d, long e, long f);
long sys_kill(long pid, long sig, long c, long d, long e, long f);
long sys_tkill(long tid, long sig, long c, long d, long e, long f);
long sys_tgkill(long tgid, long tid, long sig, long d, long e, long f);
