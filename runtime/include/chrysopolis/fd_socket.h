/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fd_socket.c: AF_INET sockets (TCP and UDP) over lwIP's raw API, an fd kind of its own
 * (docs/syscalls.md, "Sockets"). Only images that compile runtime/net have it; the others
 * answer the socket calls from syscalls.c's NO_NET_SYSCALLS.
 */
#pragma once

/* Register NET_SYSCALLS (syscalls_init calls it when runtime/net is linked). */
void fd_socket_init(void);

long sys_socket(long domain, long type, long protocol, long d, long e, long f);
long sys_bind(long fd, long addr, long len, long d, long e, long f);
long sys_listen(long fd, long backlog, long c, long d, long e, long f);
long sys_accept(long fd, long addr, long lenp, long d, long e, long f);
long sys_accept4(long fd, long addr, long lenp, long flags, long e, long f);
long sys_connect(long fd, long addr, long len, long d, long e, long f);
long sys_getsockname(long fd, long addr, long lenp, long d, long e, long f);
long sys_getpeername(long fd, long addr, long lenp, long d, long e, long f);
long sys_sendto(long fd, long buf, long len, long flags, long addr, long alen);
long sys_recvfrom(long fd, long buf, long len, long flags, long addr, long lenp);
long sys_setsockopt(long fd, long level, long name, long val, long len, long f);
long sys_getsockopt(long fd, long level, long name, long val, long lenp, long f);
long sys_shutdown(long fd, long how, long c, long d, long e, long f);
long sys_sendmsg(long fd, long msg, long flags, long d, long e, long f);
long sys_recvmsg(long fd, long msg, long flags, long d, long e, long f);
long sys_sendmmsg(long fd, long vec, long vlen, long flags, long e, long f);
long sys_recvmmsg(long fd, long vec, long vlen, long flags, long timeout, long f);
