/* SPDX-License-Identifier: BSD-2-Clause */
/* fd_timerfd.c: timerfds on the monotonic clock (ERTS's poll thread times out on one). */
#pragma once

#include <sys/stat.h>

/* The stat of an anonymous fd (a timerfd, an epoll set). */
int fd_timerfd_fstat(int fd, struct stat *st);

long sys_timerfd_create(long clock, long flags, long c, long d, long e, long f);
long sys_timerfd_settime(long fd, long flags, long newp, long oldp, long e, long f);
long sys_timerfd_gettime(long fd, long curp, long c, long d, long e, long f);
