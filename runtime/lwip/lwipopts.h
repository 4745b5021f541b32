/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lwIP's options for beam_server (docs/architecture.md, "The network"). The `lwip` stage
 * compiles lib_sddf_lwip.a with this file, and our runtime includes the very same one:
 * struct pbuf, tcp_pcb and netif layouts depend on it. Options not set here keep lwIP's
 * defaults (src/include/lwip/opt.h).
 *
 * Step 1 of the network: IPv4, TCP, UDP, DHCP, loopback, with fixed pools (a leak shows as
 * exhaustion, and LWIP_STATS counts it). Window scaling and larger pools come with the
 * socket fd kind and its benchmark.
 */
#pragma once

/* No OS: lwIP runs in beam_server's cothreads, which never preempt each other (netd and,
 * later, socket syscalls), so there is nothing to lock. */
#define NO_SYS 1
#define SYS_LIGHTWEIGHT_PROT 0
#define LWIP_NETCONN 0
#define LWIP_SOCKET 0

/* musl provides htons & co.; lwIP's own would be macros over musl's declarations. */
#define LWIP_DONT_PROVIDE_BYTEORDER_FUNCTIONS 1

/* Heap memory (PBUF_RAM, loopback copies) from our malloc: lwIP only runs in cothreads that
 * have a thread pointer. Fixed pools for everything else. */
#define MEM_LIBC_MALLOC 1
#define MEM_ALIGNMENT 8
#define MEMP_MEM_MALLOC 0

#define LWIP_IPV4 1
#define LWIP_IPV6 0
#define LWIP_ARP 1
#define LWIP_ICMP 1
/* IGMP's 100 ms timer would wake netd ten times a second for good: off until multicast. */
#define LWIP_IGMP 0
#define LWIP_UDP 1
#define LWIP_TCP 1
#define LWIP_RAW 0
/* ERTS resolves names itself (inet_db, inet_res over UDP). */
#define LWIP_DNS 0

/* DHCP, without address conflict detection: QEMU's user network is a private one, and the
 * ACD probe would add seconds to every boot. */
#define LWIP_DHCP 1
#define LWIP_DHCP_DOES_ACD_CHECK 0
#define LWIP_NETIF_STATUS_CALLBACK 1

/* 127.0.0.1 on `lo`, and our own address looped back. With NO_SYS, netd drains the loop
 * queue (netif_poll_all). */
#define LWIP_NETIF_LOOPBACK 1
#define LWIP_HAVE_LOOPIF 1

/* Pools: net-many's 50 concurrent connections over 127.0.0.1 hold 100 pcbs, and
 * TIME_WAIT keeps closed ones for 2 MSL until the pool is full (tcp_alloc then recycles
 * the oldest: /proc/net/memp's err counts it). */
#define MEMP_NUM_TCP_PCB 256
#define MEMP_NUM_TCP_PCB_LISTEN 32
#define MEMP_NUM_UDP_PCB 32
#define MEMP_NUM_TCP_SEG 256
#define MEMP_NUM_PBUF 64
/* RX uses lib_sddf_lwip's own pbufs over the sDDF buffers; this pool only has to cover
 * the TCP window (lwIP's sanity check). */
#define PBUF_POOL_SIZE 48

#define TCP_MSS 1460
#define TCP_WND (44 * TCP_MSS)
#define TCP_SND_BUF (44 * TCP_MSS)
#define TCP_SND_QUEUELEN (2 * TCP_SND_BUF / TCP_MSS + 8)
#define TCP_SNDLOWAT TCP_MSS
/* Out-of-order segments pin sDDF RX buffers: bound them. */
#define TCP_OOSEQ_MAX_PBUFS 16
#define IP_REASS_MAX_PBUFS 48
#define LWIP_TCP_SACK_OUT 1
#define LWIP_TCP_TIMESTAMPS 1
#define LWIP_TCP_KEEPALIVE 1
#define TCP_LISTEN_BACKLOG 1
#define SO_REUSE 1
#define SO_REUSE_RXTOALL 1

/* QEMU's virtio-net offers no checksum offload we negotiate: generate them; QEMU's user
 * network delivers correct ones, so do not check them (as LionsOS on QEMU). */
#define CHECKSUM_GEN_IP 1
#define CHECKSUM_GEN_UDP 1
#define CHECKSUM_GEN_TCP 1
#define CHECKSUM_GEN_ICMP 1
#define CHECKSUM_CHECK_IP 0
#define CHECKSUM_CHECK_UDP 0
#define CHECKSUM_CHECK_TCP 0
#define CHECKSUM_CHECK_ICMP 0

/* Counters for the leak checks to come (net-many); nothing is printed. */
#define LWIP_STATS 1
#define MEMP_STATS 1
#define LWIP_STATS_DISPLAY 0
