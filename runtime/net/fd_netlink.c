/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Route netlink sockets, just enough for getifaddrs (docs/syscalls.md, "Sockets").
 *
 * musl's getifaddrs and if_nameindex open socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE),
 * send an RTM_GETLINK then an RTM_GETADDR dump request, and recv (MSG_DONTWAIT) until
 * NLMSG_DONE; ERTS's inet:getifaddrs and net:getifaddrs both go that way. A request is
 * answered when it is sent, from lwIP's interface list, as Linux's kernel does: the
 * replies wait in the socket, one message a datagram, DONE last. Anything else is an
 * NLMSG_ERROR with EOPNOTSUPP. No multicast groups: nothing ever arrives unasked, so an
 * empty socket answers EAGAIN even when blocking (Linux would block for good).
 *
 * The SIOCGIF* ioctls (musl's if_nametoindex, ERTS's inet:getif and socket:ioctl) read the
 * same list; they are here so that interface names and flags have one definition.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "lwip/ip4_addr.h"
#include "lwip/netif.h"

#include <chrysopolis/fd_netlink.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/waitq.h>

/* The Linux netlink ABI (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h,
 * linux/if_addr.h): musl ships none of these headers. */
#define NL_ROUTE 0
#define NLF_REQUEST 0x1
#define NLF_MULTI 0x2
#define NLF_DUMP 0x300
#define NLT_ERROR 0x2
#define NLT_DONE 0x3
#define RT_NEWLINK 16
#define RT_GETLINK 18
#define RT_NEWADDR 20
#define RT_GETADDR 22
#define LINK_ADDRESS 1
#define LINK_BROADCAST 2
#define LINK_IFNAME 3
#define LINK_MTU 4
#define ADDR_ADDRESS 1
#define ADDR_LOCAL 2
#define ADDR_LABEL 3
#define ADDR_BROADCAST 4
#define ADDR_F_PERMANENT 0x80
#define SCOPE_UNIVERSE 0
#define SCOPE_HOST 254

struct nl_hdr {
    uint32_t len;
    uint16_t type, flags;
    uint32_t seq, pid;
};
struct nl_link {
    uint8_t family, pad;
    uint16_t type;
    int32_t index;
    uint32_t flags, change;
};
struct nl_addr {
    uint8_t family, prefixlen, flags, scope;
    uint32_t index;
};
struct nl_attr {
    uint16_t len, type;
};
struct nl_sockaddr {
    sa_family_t family;
    uint16_t pad;
    uint32_t pid, groups;
};

#define NL_ALIGN(n) (((n) + 3u) & ~3u)
#define QUEUE_MAX 64 /* datagrams a socket holds; a request beyond: ENOBUFS */
#define MSG_MAX 256 /* one reply message (a link or an address, with its attributes) */

struct dgram {
    struct dgram *next;
    size_t len;
    unsigned char data[];
};

struct nl {
    unsigned refs;
    struct dgram *head, *tail;
    unsigned queued;
};

static const struct fd_ops nl_ops;

static bool is_loop(const struct netif *n)
{
    return !(n->flags & NETIF_FLAG_ETHARP);
}

void fd_netlink_ifname(const void *netif, char *out, unsigned size)
{
    const struct netif *n = netif;
    if (is_loop(n)) {
        snprintf(out, size, "lo");
        return;
    }
    unsigned eth = 0; /* Ethernet interfaces are eth0, eth1... in lwIP's order */
    struct netif *m;
    NETIF_FOREACH(m)
    {
        if (m == n) {
            break;
        }
        eth += !is_loop(m);
    }
    snprintf(out, size, "eth%u", eth);
}

/* Linux's IFF_* of an interface: up as lwIP says, running with its link; an Ethernet link
 * carries broadcast and multicast (Linux sets both for every Ethernet device). */
static unsigned if_flags(const struct netif *n)
{
    unsigned f = 0;
    if (netif_is_up(n)) {
        f |= IFF_UP;
        if (netif_is_link_up(n)) {
            f |= IFF_RUNNING;
        }
    }
    if (is_loop(n)) {
        f |= IFF_LOOPBACK;
    } else {
        f |= IFF_MULTICAST | (n->flags & NETIF_FLAG_BROADCAST ? IFF_BROADCAST : 0);
    }
    return f;
}

static int prefix_len(uint32_t mask_be)
{
    uint32_t m = lwip_ntohl(mask_be);
    int n = 0;
    while (m & 0x80000000u) {
        n++;
        m <<= 1;
    }
    return n;
}

static struct netif *netif_named(const char *name)
{
    struct netif *n;
    NETIF_FOREACH(n)
    {
        char own[IFNAMSIZ];
        fd_netlink_ifname(n, own, sizeof(own));
        if (strncmp(own, name, IFNAMSIZ) == 0) {
            return n;
        }
    }
    return NULL;
}

/* ---- building replies ---- */

struct msg {
    unsigned char buf[MSG_MAX];
    size_t len;
};

static void msg_start(struct msg *m, uint16_t type, uint32_t seq, const void *body, size_t blen)
{
    struct nl_hdr h = {.type = type, .flags = NLF_MULTI, .seq = seq};
    memset(m->buf, 0, sizeof(m->buf));
    memcpy(m->buf, &h, sizeof(h));
    memcpy(m->buf + sizeof(h), body, blen);
    m->len = sizeof(h) + NL_ALIGN(blen);
}

static void msg_attr(struct msg *m, uint16_t type, const void *data, size_t dlen)
{
    struct nl_attr a = {.len = (uint16_t)(sizeof(a) + dlen), .type = type};
    if (m->len + NL_ALIGN(a.len) > sizeof(m->buf)) {
        return; /* cannot happen with our attributes; MSG_MAX bounds it anyway */
    }
    memcpy(m->buf + m->len, &a, sizeof(a));
    memcpy(m->buf + m->len + sizeof(a), data, dlen);
    m->len += NL_ALIGN(a.len);
}

static int queue(struct nl *s, const void *data, size_t len)
{
    if (s->queued >= QUEUE_MAX) {
        return -ENOBUFS;
    }
    struct dgram *d = malloc(sizeof(*d) + len);
    if (d == NULL) {
        return -ENOBUFS;
    }
    d->next = NULL;
    d->len = len;
    memcpy(d->data, data, len);
    ((struct nl_hdr *)d->data)->len = (uint32_t)len;
    if (s->tail != NULL) {
        s->tail->next = d;
    } else {
        s->head = d;
    }
    s->tail = d;
    s->queued++;
    return 0;
}

static int queue_msg(struct nl *s, struct msg *m)
{
    return queue(s, m->buf, m->len);
}

/* lwIP lists the newest interface first; Linux dumps by index (lo is 1). */
#define FOREACH_BY_INDEX(n)                                                                                  \
    for (unsigned i_ = 1; i_ < 256; i_++)                                                                    \
        if (((n) = netif_get_by_index((u8_t)i_)) != NULL)

static int dump_links(struct nl *s, uint32_t seq)
{
    struct netif *n;
    FOREACH_BY_INDEX(n)
    {
        struct nl_link body = {.family = AF_UNSPEC,
                               .type = is_loop(n) ? ARPHRD_LOOPBACK : ARPHRD_ETHER,
                               .index = netif_get_index(n),
                               .flags = if_flags(n)};
        struct msg m;
        msg_start(&m, RT_NEWLINK, seq, &body, sizeof(body));
        char name[IFNAMSIZ];
        fd_netlink_ifname(n, name, sizeof(name));
        msg_attr(&m, LINK_IFNAME, name, strlen(name) + 1);
        uint32_t mtu = is_loop(n) ? 65536 : n->mtu;
        msg_attr(&m, LINK_MTU, &mtu, sizeof(mtu));
        static const uint8_t zero[6], ones[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        /* Linux gives lo an all-zero 6-byte address; lwIP gives it none */
        msg_attr(&m, LINK_ADDRESS, is_loop(n) ? zero : n->hwaddr, is_loop(n) ? 6 : n->hwaddr_len);
        msg_attr(&m, LINK_BROADCAST, is_loop(n) ? zero : ones, 6);
        int r = queue_msg(s, &m);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static int dump_addrs(struct nl *s, uint32_t seq)
{
    struct netif *n;
    FOREACH_BY_INDEX(n)
    {
        uint32_t ip = ip4_addr_get_u32(netif_ip4_addr(n));
        uint32_t mask = ip4_addr_get_u32(netif_ip4_netmask(n));
        if (ip == 0) {
            continue; /* eth0 before DHCP: no address yet */
        }
        struct nl_addr body = {.family = AF_INET,
                               .prefixlen = (uint8_t)prefix_len(mask),
                               .flags = ADDR_F_PERMANENT,
                               .scope = is_loop(n) ? SCOPE_HOST : SCOPE_UNIVERSE,
                               .index = (uint32_t)netif_get_index(n)};
        struct msg m;
        msg_start(&m, RT_NEWADDR, seq, &body, sizeof(body));
        msg_attr(&m, ADDR_ADDRESS, &ip, 4);
        msg_attr(&m, ADDR_LOCAL, &ip, 4);
        if (!is_loop(n)) {
            uint32_t bcast = ip | ~mask;
            msg_attr(&m, ADDR_BROADCAST, &bcast, 4);
        }
        char name[IFNAMSIZ];
        fd_netlink_ifname(n, name, sizeof(name));
        msg_attr(&m, ADDR_LABEL, name, strlen(name) + 1);
        int r = queue_msg(s, &m);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static int reply_done(struct nl *s, uint32_t seq)
{
    struct msg m;
    int32_t status = 0;
    msg_start(&m, NLT_DONE, seq, &status, sizeof(status));
    return queue_msg(s, &m);
}

static int reply_error(struct nl *s, const struct nl_hdr *req, int err)
{
    struct {
        struct nl_hdr h;
        int32_t error;
        struct nl_hdr req;
    } e = {.h = {.type = NLT_ERROR, .seq = req->seq}, .error = -err, .req = *req};
    return queue(s, &e, sizeof(e));
}

/* One request: its replies queued, or an error reply. */
static int answer(struct nl *s, const struct nl_hdr *req)
{
    if (!(req->flags & NLF_REQUEST)) {
        return 0; /* Linux ignores what is no request */
    }
    if ((req->flags & NLF_DUMP) != NLF_DUMP || (req->type != RT_GETLINK && req->type != RT_GETADDR)) {
        return reply_error(s, req, EOPNOTSUPP);
    }
    /* the request's family (rtgenmsg) picks addresses: AF_UNSPEC and AF_INET have ours */
    uint8_t family = req->len > sizeof(*req) ? *((const uint8_t *)(req + 1)) : AF_UNSPEC;
    int r = 0;
    if (req->type == RT_GETLINK && (family == AF_UNSPEC || family == AF_PACKET)) {
        r = dump_links(s, req->seq);
    } else if (req->type == RT_GETADDR && (family == AF_UNSPEC || family == AF_INET)) {
        r = dump_addrs(s, req->seq);
    }
    return r < 0 ? r : reply_done(s, req->seq);
}

/* ---- the fd ---- */

static void nl_drop(struct nl *s)
{
    while (s->head != NULL) {
        struct dgram *d = s->head;
        s->head = d->next;
        free(d);
    }
    s->tail = NULL;
    s->queued = 0;
}

static long nl_send(struct nl *s, const unsigned char *buf, size_t len)
{
    size_t at = 0;
    while (len - at >= sizeof(struct nl_hdr)) {
        struct nl_hdr h;
        memcpy(&h, buf + at, sizeof(h));
        if (h.len < sizeof(h) || h.len > len - at) {
            return -EINVAL;
        }
        union {
            struct nl_hdr h;
            unsigned char b[sizeof(struct nl_hdr) + 16]; /* the header and its rtgenmsg */
        } req = {0};
        memcpy(req.b, buf + at, h.len < sizeof(req.b) ? h.len : sizeof(req.b));
        int r = answer(s, &req.h);
        if (r < 0) {
            return r;
        }
        at += NL_ALIGN(h.len);
    }
    waitq_io_changed();
    return (long)len;
}

static long nl_recv(struct nl *s, void *buf, size_t len, int flags)
{
    struct dgram *d = s->head;
    if (d == NULL) {
        return -EAGAIN;
    }
    size_t total = d->len, n = len < total ? len : total;
    memcpy(buf, d->data, n);
    if (!(flags & MSG_PEEK)) {
        s->head = d->next;
        if (s->head == NULL) {
            s->tail = NULL;
        }
        s->queued--;
        free(d);
    }
    return (flags & MSG_TRUNC) ? (long)total : (long)n;
}

static ssize_t nl_read(void *buf, size_t len, int fd)
{
    return nl_recv(fds_obj(fd), buf, len, 0);
}

static ssize_t nl_write(const void *buf, size_t len, int fd)
{
    return nl_send(fds_obj(fd), buf, len);
}

static int nl_fstat(int fd, struct stat *st)
{
    (void)fd;
    return fds_stat_mode(st, S_IFSOCK | 0777);
}

static unsigned nl_ready(int fd, void *obj, bool arm)
{
    (void)fd, (void)arm;
    return (((struct nl *)obj)->head != NULL ? POLLIN : 0) | POLLOUT;
}

static void nl_retain(void *obj)
{
    ((struct nl *)obj)->refs++;
}

static void nl_release(void *obj)
{
    struct nl *s = obj;
    if (--s->refs == 0) {
        nl_drop(s);
        free(s);
    }
}

static const struct fd_ops nl_ops = {.name = "netlink",
                                     .read = nl_read,
                                     .write = nl_write,
                                     .fstat = nl_fstat,
                                     .ready = nl_ready,
                                     .release = nl_release,
                                     .retain = nl_retain,
                                     .stream = true};

bool fd_netlink_is(long fd)
{
    return fds_ops((int)fd) == &nl_ops;
}

long fd_netlink_socket(long type, long protocol)
{
    int kind = (int)(type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (kind != SOCK_RAW && kind != SOCK_DGRAM) {
        return -ESOCKTNOSUPPORT;
    }
    if (protocol != NL_ROUTE) {
        return -EPROTONOSUPPORT;
    }
    struct nl *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->refs = 1;
    int fd = fds_open(
        &nl_ops, s, O_RDWR | (type & SOCK_NONBLOCK ? O_NONBLOCK : 0) | (type & SOCK_CLOEXEC ? O_CLOEXEC : 0));
    if (fd < 0) {
        free(s);
    }
    return fd;
}

static long kernel_addr(long addr, long alen)
{
    if (addr == 0) {
        return 0;
    }
    const struct nl_sockaddr *a = (const struct nl_sockaddr *)addr;
    if (alen < (long)sizeof(*a) || a->family != AF_NETLINK) {
        return -EINVAL;
    }
    return a->pid == 0 ? 0 : -ECONNREFUSED; /* only the kernel answers */
}

static void own_addr(long addr, long lenp)
{
    if (addr == 0 || lenp == 0) {
        return;
    }
    struct nl_sockaddr a = {.family = AF_NETLINK};
    socklen_t *len = (socklen_t *)lenp;
    memcpy((void *)addr, &a, *len < sizeof(a) ? *len : sizeof(a));
    *len = sizeof(a);
}

long fd_netlink_sendto(long fd, const void *buf, long len, long flags, long addr, long alen)
{
    (void)flags;
    long r = kernel_addr(addr, alen);
    if (r < 0) {
        return r;
    }
    return buf == NULL && len > 0 ? -EFAULT : nl_send(fds_obj((int)fd), buf, (size_t)len);
}

long fd_netlink_recvfrom(long fd, void *buf, long len, long flags, long addr, long lenp)
{
    long r = nl_recv(fds_obj((int)fd), buf, (size_t)len, (int)flags);
    if (r >= 0) {
        own_addr(addr, lenp); /* replies come from the kernel: port id 0 */
    }
    return r;
}

long fd_netlink_bind(long fd, long addr, long len)
{
    (void)fd;
    const struct nl_sockaddr *a = (const struct nl_sockaddr *)addr;
    if (a == NULL || len < (long)sizeof(*a) || a->family != AF_NETLINK) {
        return -EINVAL;
    }
    return a->groups != 0 ? -EPERM : 0; /* no multicast groups to join */
}

long fd_netlink_getsockname(long fd, long addr, long lenp)
{
    (void)fd;
    if (addr == 0 || lenp == 0) {
        return -EFAULT;
    }
    own_addr(addr, lenp);
    return 0;
}

/* ---- SIOCGIF* ---- */

static void sin_of(struct sockaddr *sa, uint32_t addr_be)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = addr_be;
    memcpy(sa, &sin, sizeof(sin));
}

static long ifconf(struct ifconf *c)
{
    if (c == NULL) {
        return -EFAULT;
    }
    int used = 0;
    struct netif *n;
    NETIF_FOREACH(n)
    {
        if (ip4_addr_get_u32(netif_ip4_addr(n)) == 0) {
            continue; /* Linux lists interfaces with an IPv4 address */
        }
        if (c->ifc_req != NULL) {
            if (used + (int)sizeof(struct ifreq) > c->ifc_len) {
                break;
            }
            struct ifreq *r = (struct ifreq *)(c->ifc_buf + used);
            memset(r, 0, sizeof(*r));
            fd_netlink_ifname(n, r->ifr_name, IFNAMSIZ);
            sin_of(&r->ifr_addr, ip4_addr_get_u32(netif_ip4_addr(n)));
        }
        used += (int)sizeof(struct ifreq);
    }
    c->ifc_len = used;
    return 0;
}

long fd_netlink_ifioctl(unsigned long req, void *arg)
{
    switch (req) {
    case SIOCGIFCONF:
        return ifconf(arg);
    case SIOCGIFNAME:
    case SIOCGIFINDEX:
    case SIOCGIFFLAGS:
    case SIOCGIFADDR:
    case SIOCGIFNETMASK:
    case SIOCGIFBRDADDR:
    case SIOCGIFDSTADDR:
    case SIOCGIFHWADDR:
    case SIOCGIFMTU:
        break;
    default:
        return -ENOTTY;
    }
    struct ifreq *r = arg;
    if (r == NULL) {
        return -EFAULT;
    }
    struct netif *n = NULL;
    if (req == SIOCGIFNAME) {
        NETIF_FOREACH(n)
        {
            if (netif_get_index(n) == r->ifr_ifindex) {
                break;
            }
        }
        if (n == NULL) {
            return -ENODEV;
        }
        fd_netlink_ifname(n, r->ifr_name, IFNAMSIZ);
        return 0;
    }
    char name[IFNAMSIZ + 1] = {0};
    memcpy(name, r->ifr_name, IFNAMSIZ);
    n = netif_named(name);
    if (n == NULL) {
        return -ENODEV;
    }
    uint32_t ip = ip4_addr_get_u32(netif_ip4_addr(n));
    uint32_t mask = ip4_addr_get_u32(netif_ip4_netmask(n));
    switch (req) {
    case SIOCGIFINDEX:
        r->ifr_ifindex = netif_get_index(n);
        return 0;
    case SIOCGIFFLAGS:
        r->ifr_flags = (short)if_flags(n);
        return 0;
    case SIOCGIFMTU:
        r->ifr_mtu = is_loop(n) ? 65536 : n->mtu;
        return 0;
    case SIOCGIFHWADDR:
        memset(&r->ifr_hwaddr, 0, sizeof(r->ifr_hwaddr));
        r->ifr_hwaddr.sa_family = is_loop(n) ? ARPHRD_LOOPBACK : ARPHRD_ETHER;
        if (!is_loop(n)) {
            memcpy(r->ifr_hwaddr.sa_data, n->hwaddr, n->hwaddr_len);
        }
        return 0;
    default:
        break;
    }
    if (ip == 0) {
        return -EADDRNOTAVAIL; /* as Linux for an interface without an IPv4 address */
    }
    switch (req) {
    case SIOCGIFADDR:
        sin_of(&r->ifr_addr, ip);
        return 0;
    case SIOCGIFNETMASK:
        sin_of(&r->ifr_netmask, mask);
        return 0;
    case SIOCGIFBRDADDR:
        sin_of(&r->ifr_broadaddr, is_loop(n) ? 0 : ip | ~mask);
        return 0;
    default: /* SIOCGIFDSTADDR: no point-to-point links */
        sin_of(&r->ifr_dstaddr, 0);
        return 0;
    }
}
