/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fd_netlink.c: AF_NETLINK/NETLINK_ROUTE sockets answering the link and address dumps
 * musl's getifaddrs and if_nameindex send, from lwIP's interfaces; and the SIOCGIF*
 * ioctls on any socket (docs/syscalls.md, "Sockets"). Images with runtime/net only.
 */
#pragma once

#include <stdbool.h>

/* socket(AF_NETLINK, type, protocol): the fd or -errno. */
long fd_netlink_socket(long type, long protocol);
/* `fd` is a netlink socket. */
bool fd_netlink_is(long fd);
/* sendto/recvfrom on a netlink fd (the address, if any, must be the kernel's). */
long fd_netlink_sendto(long fd, const void *buf, long len, long flags, long addr, long alen);
long fd_netlink_recvfrom(long fd, void *buf, long len, long flags, long addr, long lenp);
/* bind, getsockname: the socket's own address (port id 0 stays 0: one process). */
long fd_netlink_bind(long fd, long addr, long len);
long fd_netlink_getsockname(long fd, long addr, long lenp);
/* An interface ioctl (SIOCGIFCONF, SIOCGIFFLAGS, ...): its answer, or -ENOTTY if `req`
 * is none of them. */
long fd_netlink_ifioctl(unsigned long req, void *arg);
/* The interfaces' names as the dumps give them: "lo", "eth0". */
void fd_netlink_ifname(const void *netif, char *out, unsigned size);
