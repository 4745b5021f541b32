/* SPDX-License-Identifier: BSD-2-Clause */
/* fd_epoll.c: epoll sets (ERTS's poll set, EPOLLONESHOT), level-triggered over fds_ready(). */
#pragma once

/* Hook epoll into fd closes (a closed fd leaves every set). */
void fd_epoll_init(void);

long sys_epoll_create1(long flags, long b, long c, long d, long e, long f);
long sys_epoll_ctl(long epfd, long op, long fd, long evp, long e, long f);
long sys_epoll_pwait(long epfd, long eventsp, long max, long timeout_ms, long sigmask, long f);
