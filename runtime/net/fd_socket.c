/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * AF_INET sockets over lwIP's raw API: TCP (listeners and connections) and UDP, an fd
 * kind of their own (docs/syscalls.md, "Sockets"; docs/threads.md, "netd").
 *
 * lwIP runs in the calling cothread (never the root) and is never entered twice at once:
 * we are cooperative, and nothing here parks inside an lwIP call. lwIP's callbacks (from
 * netd's RX or timers, or from our own calls through the loopback queue) only record:
 * they queue pbufs, set state and wake the I/O wait queue (waitq_io_changed, deferred).
 * A blocking call parks on waitq_io between lwIP calls and looks again. Every call that
 * entered lwIP ends with netstack_after_call(): the loopback queue, the TX kick.
 *
 * Received TCP data stays in lwIP's pbufs until read (the window opens as it is read,
 * tcp_recved); an accepted connection gets its socket at once (data may come before
 * accept). After the peer's FIN, reads drain what is queued, then answer 0. A reset or an
 * error frees the pcb inside lwIP (err callback): the socket keeps the errno for SO_ERROR
 * or the next call.
 */
#define _GNU_SOURCE /* struct mmsghdr */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <sys/uio.h>

#include "lwip/ip4_addr.h"
#include "lwip/memp.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/stats.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
#include "lwip/udp.h"

#include <chrysopolis/clocks.h>
#include <chrysopolis/dispatch.h>
#include <chrysopolis/fd_netlink.h>
#include <chrysopolis/fd_proc.h>
#include <chrysopolis/fd_socket.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/netstack.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/waitq.h>

#define ACCEPT_MAX 128 /* queued connections per listener, whatever the backlog */
#define DGRAM_MAX 64 /* queued datagrams per UDP socket */
#define UDP_MAX_PAYLOAD 65507
#define UP_WAIT_MS 5000 /* a socket call before netd initialised lwIP waits this long */

enum sock_state { ST_NEW, ST_LISTEN, ST_CONNECTING, ST_CONNECTED, ST_CLOSED };

struct dgram {
    struct dgram *next;
    struct pbuf *p;
    ip_addr_t addr;
    u16_t port;
};

struct sock {
    unsigned refs;
    int type; /* SOCK_STREAM or SOCK_DGRAM */
    enum sock_state state;
    struct tcp_pcb *tcp; /* a listener's is a struct tcp_pcb_listen */
    struct udp_pcb *udp;
    int err; /* pending error: SO_ERROR, or the next call's */
    bool rd_shut, wr_shut, peer_fin, reset;
    /* TCP: received data, rx_off bytes of the first pbuf already read */
    struct pbuf *rx;
    u16_t rx_off;
    size_t rx_len;
    /* listener: connections not yet accepted */
    struct sock *accq_head, *accq_tail, *acc_next;
    unsigned accq_len;
    /* UDP */
    struct dgram *dg_head, *dg_tail;
    unsigned dg_len;
    /* options read back as they were set */
    bool reuseaddr, keepalive, nodelay, broadcast, linger_on;
    int linger_s, rcvbuf, sndbuf, priority, tos, ttl;
};

static const struct fd_ops sock_ops;
/* struct socks alive (held by an fd, or queued on a listener): /proc/net/sockstat */
static unsigned socks_alive;

/* lwIP's err_t as an errno (ERR_CLSD: the connection is gone). */
static int lwip_errno(err_t err)
{
    switch (err) {
    case ERR_OK:
        return 0;
    case ERR_MEM:
        return ENOMEM;
    case ERR_BUF:
        return ENOBUFS;
    case ERR_TIMEOUT:
        return ETIMEDOUT;
    case ERR_RTE:
        return EHOSTUNREACH;
    case ERR_INPROGRESS:
        return EINPROGRESS;
    case ERR_WOULDBLOCK:
        return EAGAIN;
    case ERR_USE:
        return EADDRINUSE;
    case ERR_ALREADY:
        return EALREADY;
    case ERR_ISCONN:
        return EISCONN;
    case ERR_CONN:
    case ERR_CLSD:
        return ENOTCONN;
    case ERR_IF:
        return ENETDOWN;
    case ERR_ABRT:
        return ECONNABORTED;
    case ERR_RST:
        return ECONNRESET;
    default:
        return EINVAL;
    }
}

/* lwIP may only be entered once netd initialised it (it does so at its first run). */
static int wait_up(void)
{
    uint64_t until = clocks_now_ns() + (uint64_t)UP_WAIT_MS * NS_IN_MS;
    while (!netstack_up()) {
        if (clocks_now_ns() >= until) {
            return -ENETDOWN;
        }
        waitq_sleep_until(clocks_now_ns() + NS_IN_MS);
    }
    return 0;
}

static long done(long r)
{
    netstack_after_call();
    return r;
}

/* The socket of `fd`: NULL with *err = EBADF (no such fd) or ENOTSOCK. */
static struct sock *sock_of(long fd, long *err)
{
    const struct fd_ops *ops = fds_ops((int)fd);
    if (ops == &sock_ops) {
        return fds_obj((int)fd);
    }
    *err = fd_netlink_is(fd) ? -EOPNOTSUPP : fds_ready((int)fd, false) & POLLNVAL ? -EBADF : -ENOTSOCK;
    return NULL;
}

static void *sock_base(struct sock *s)
{
    return s->type == SOCK_STREAM ? (void *)s->tcp : (void *)s->udp;
}

/* ---- addresses ---- */

static long addr_in(long addr, long len, ip_addr_t *ip, u16_t *port)
{
    if (addr == 0) {
        return -EFAULT;
    }
    const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
    if (len < (long)sizeof(sa_family_t)) {
        return -EINVAL;
    }
    if (sin->sin_family == AF_UNSPEC) {
        return -EAFNOSUPPORT;
    }
    if (sin->sin_family != AF_INET) {
        return -EAFNOSUPPORT;
    }
    if (len < (long)sizeof(*sin)) {
        return -EINVAL;
    }
    ip_addr_set_ip4_u32(ip, sin->sin_addr.s_addr);
    *port = ntohs(sin->sin_port);
    return 0;
}

static void addr_out(long addr, long lenp, const ip_addr_t *ip, u16_t port)
{
    if (addr == 0 || lenp == 0) {
        return;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = ip == NULL ? 0 : ip_2_ip4(ip)->addr;
    socklen_t *len = (socklen_t *)lenp;
    size_t n = *len < sizeof(sin) ? *len : sizeof(sin);
    memcpy((void *)addr, &sin, n);
    *len = sizeof(sin);
}

/* Ours to bind to: any, loopback, or an interface's address. */
static bool addr_local(const ip_addr_t *ip)
{
    if (ip_addr_isany(ip) || ip4_addr_isloopback(ip_2_ip4(ip))) {
        return true;
    }
    struct netif *n;
    NETIF_FOREACH(n)
    {
        if (ip4_addr_eq(netif_ip4_addr(n), ip_2_ip4(ip))) {
            return true;
        }
    }
    return false;
}

/* Linux refuses a second listener on a port even with SO_REUSEADDR; lwIP allows it. */
static bool port_listened(const ip_addr_t *ip, u16_t port, const struct tcp_pcb *self)
{
    for (struct tcp_pcb_listen *l = tcp_listen_pcbs.listen_pcbs; l != NULL; l = l->next) {
        if ((const void *)l != (const void *)self && l->local_port == port &&
            (ip_addr_isany(&l->local_ip) || ip_addr_isany(ip) || ip_addr_eq(&l->local_ip, ip))) {
            return true;
        }
    }
    return false;
}

/* ---- the object ---- */

static struct sock *sock_new(int type)
{
    struct sock *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    socks_alive++;
    s->refs = 1;
    s->type = type;
    s->rcvbuf = type == SOCK_STREAM ? TCP_WND : 212992;
    s->sndbuf = type == SOCK_STREAM ? TCP_SND_BUF : 212992;
    s->ttl = TCP_TTL;
    return s;
}

static void rx_free(struct sock *s)
{
    if (s->rx != NULL) {
        pbuf_free(s->rx);
    }
    s->rx = NULL;
    s->rx_off = 0;
    s->rx_len = 0;
    while (s->dg_head != NULL) {
        struct dgram *d = s->dg_head;
        s->dg_head = d->next;
        pbuf_free(d->p);
        free(d);
    }
    s->dg_tail = NULL;
    s->dg_len = 0;
}

static void tcp_detach(struct tcp_pcb *pcb)
{
    tcp_arg(pcb, NULL);
    if (pcb->state != LISTEN) {
        tcp_recv(pcb, NULL);
        tcp_sent(pcb, NULL);
        tcp_err(pcb, NULL);
    } else {
        tcp_accept(pcb, NULL);
    }
}

static void sock_free(struct sock *s)
{
    socks_alive--;
    free(s);
}

static void conn_free(struct sock *s, bool abort);

/* Close a connection the application no longer holds. */
static void conn_free(struct sock *s, bool abort)
{
    struct tcp_pcb *pcb = s->tcp;
    s->tcp = NULL;
    if (pcb != NULL) {
        tcp_detach(pcb);
        /* Unread data: a reset, as on Linux; so does linger {on, 0}. */
        if (abort || s->rx_len > 0 || (s->linger_on && s->linger_s == 0)) {
            tcp_abort(pcb);
        } else if (tcp_close(pcb) != ERR_OK) {
            tcp_abort(pcb); /* out of memory for the FIN: no better choice here */
        }
    }
    rx_free(s);
    sock_free(s);
}

/* ---- lwIP callbacks: record, queue, wake ---- */

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    struct sock *s = arg;
    (void)pcb;
    if (s == NULL) {
        if (p != NULL) {
            pbuf_free(p);
        }
        return ERR_OK;
    }
    if (p == NULL) {
        s->peer_fin = true;
    } else if (err != ERR_OK || s->rd_shut) {
        tcp_recved(pcb, p->tot_len);
        pbuf_free(p);
    } else {
        if (s->rx == NULL) {
            s->rx = p;
        } else {
            pbuf_cat(s->rx, p);
        }
        s->rx_len += p->tot_len;
    }
    waitq_io_changed();
    return ERR_OK;
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
    (void)arg, (void)pcb, (void)len;
    waitq_io_changed();
    return ERR_OK;
}

/* The pcb is already freed. */
static void on_err(void *arg, err_t err)
{
    struct sock *s = arg;
    if (s == NULL) {
        return;
    }
    s->tcp = NULL;
    if (s->state == ST_CONNECTING) {
        s->err = err == ERR_RST ? ECONNREFUSED : err == ERR_ABRT ? ETIMEDOUT : lwip_errno(err);
    } else {
        s->err = err == ERR_ABRT ? ETIMEDOUT : lwip_errno(err);
        s->reset = true;
    }
    s->state = ST_CLOSED;
    waitq_io_changed();
}

static void conn_callbacks(struct sock *s, struct tcp_pcb *pcb)
{
    tcp_arg(pcb, s);
    tcp_recv(pcb, on_recv);
    tcp_sent(pcb, on_sent);
    tcp_err(pcb, on_err);
}

static err_t on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
    struct sock *s = arg;
    (void)pcb;
    if (s != NULL) {
        s->state = err == ERR_OK ? ST_CONNECTED : ST_CLOSED;
        s->err = lwip_errno(err);
        waitq_io_changed();
    }
    return ERR_OK;
}

/* A new connection on a listener: its socket now, queued until accept. */
static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
    struct sock *l = arg;
    if (err != ERR_OK || pcb == NULL) {
        return ERR_VAL;
    }
    struct sock *s = l == NULL || l->accq_len >= ACCEPT_MAX ? NULL : sock_new(SOCK_STREAM);
    if (s == NULL) {
        tcp_abort(pcb);
        return ERR_ABRT;
    }
    s->state = ST_CONNECTED;
    s->tcp = pcb;
    s->keepalive = l->keepalive;
    s->reuseaddr = l->reuseaddr;
    conn_callbacks(s, pcb);
    if (l->accq_tail != NULL) {
        l->accq_tail->acc_next = s;
    } else {
        l->accq_head = s;
    }
    l->accq_tail = s;
    l->accq_len++;
    waitq_io_changed();
    return ERR_OK;
}

static void on_udp_recv(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr, u16_t port)
{
    struct sock *s = arg;
    (void)pcb;
    struct dgram *d = s == NULL || s->dg_len >= DGRAM_MAX || s->rd_shut ? NULL : malloc(sizeof(*d));
    if (d == NULL) {
        pbuf_free(p);
        return;
    }
    *d = (struct dgram){.p = p, .port = port};
    ip_addr_copy(d->addr, *addr);
    if (s->dg_tail != NULL) {
        s->dg_tail->next = d;
    } else {
        s->dg_head = d;
    }
    s->dg_tail = d;
    s->dg_len++;
    waitq_io_changed();
}

/* ---- data ---- */

/* Up to len bytes of TCP data; `peek` leaves them queued. 0 after the peer's FIN. */
static long tcp_take(struct sock *s, char *buf, size_t len, int flags, bool nonblock)
{
    for (;;) {
        if (s->rx_len > 0) {
            break;
        }
        if (s->err != 0) {
            long e = -s->err;
            s->err = 0;
            return e;
        }
        if (s->peer_fin || s->rd_shut || s->reset || len == 0) {
            return 0;
        }
        if (s->state != ST_CONNECTED) {
            return -ENOTCONN;
        }
        if (nonblock || (flags & MSG_DONTWAIT)) {
            return -EAGAIN;
        }
        waitq_wait(&waitq_io, NULL, 0);
    }
    size_t n = len < s->rx_len ? len : s->rx_len;
    n = n < 0xffff ? n : 0xffff; /* pbuf offsets and tcp_recved are 16-bit */
    pbuf_copy_partial(s->rx, buf, (u16_t)n, s->rx_off);
    if (flags & MSG_PEEK) {
        return (long)n;
    }
    s->rx_len -= n;
    size_t off = s->rx_off + n;
    while (s->rx != NULL && off >= s->rx->len && (off > 0 || s->rx->len == 0)) {
        struct pbuf *first = s->rx, *rest = first->next;
        off -= first->len;
        if (rest != NULL) {
            rest->tot_len = first->tot_len - first->len;
        }
        first->next = NULL;
        first->tot_len = first->len;
        pbuf_free(first);
        s->rx = rest;
    }
    s->rx_off = (u16_t)off;
    if (s->tcp != NULL) {
        tcp_recved(s->tcp, (u16_t)n);
    }
    return (long)n;
}

static bool tcp_writable(const struct sock *s)
{
    return s->tcp != NULL && tcp_sndbuf(s->tcp) >= TCP_SNDLOWAT &&
           tcp_sndqueuelen(s->tcp) < TCP_SNDQUEUELOWAT;
}

static long tcp_put(struct sock *s, const char *buf, size_t len, int flags, bool nonblock)
{
    size_t sent = 0;
    while (sent < len || len == 0) {
        if (s->err != 0 && s->reset) {
            long e = sent ? (long)sent : -s->err;
            s->err = 0;
            return e;
        }
        if (s->wr_shut || s->reset) {
            return sent ? (long)sent : -EPIPE;
        }
        if (s->state != ST_CONNECTED || s->tcp == NULL) {
            return sent ? (long)sent : s->state == ST_CLOSED ? -EPIPE : -ENOTCONN;
        }
        if (len == 0) {
            return 0;
        }
        size_t room = tcp_sndbuf(s->tcp);
        size_t n = len - sent;
        n = n < room ? n : room;
        n = n < 0xffff ? n : 0xffff;
        err_t err = n > 0 && tcp_sndqueuelen(s->tcp) < TCP_SND_QUEUELEN
                        ? tcp_write(s->tcp, buf + sent, (u16_t)n, TCP_WRITE_FLAG_COPY)
                        : ERR_MEM;
        if (err == ERR_OK) {
            sent += n;
            if (sent < len || !(flags & MSG_MORE)) {
                tcp_output(s->tcp);
            }
            continue;
        }
        if (err != ERR_MEM) {
            return sent ? (long)sent : -lwip_errno(err);
        }
        tcp_output(s->tcp);
        if (sent > 0 && (nonblock || (flags & MSG_DONTWAIT))) {
            return (long)sent;
        }
        if (nonblock || (flags & MSG_DONTWAIT)) {
            return -EAGAIN;
        }
        netstack_after_call();
        waitq_wait(&waitq_io, NULL, 0);
    }
    return (long)sent;
}

static long udp_take(struct sock *s, char *buf, size_t len, int flags, bool nonblock, ip_addr_t *from,
                     u16_t *port, bool *trunc)
{
    while (s->dg_head == NULL) {
        if (s->err != 0) {
            long e = -s->err;
            s->err = 0;
            return e;
        }
        if (s->rd_shut) {
            return 0;
        }
        if (nonblock || (flags & MSG_DONTWAIT)) {
            return -EAGAIN;
        }
        waitq_wait(&waitq_io, NULL, 0);
    }
    struct dgram *d = s->dg_head;
    size_t total = d->p->tot_len;
    size_t n = len < total ? len : total;
    pbuf_copy_partial(d->p, buf, (u16_t)n, 0);
    if (from != NULL) {
        ip_addr_copy(*from, d->addr);
        *port = d->port;
    }
    *trunc = n < total;
    if (!(flags & MSG_PEEK)) {
        s->dg_head = d->next;
        if (s->dg_head == NULL) {
            s->dg_tail = NULL;
        }
        s->dg_len--;
        pbuf_free(d->p);
        free(d);
    }
    return (flags & MSG_TRUNC) ? (long)total : (long)n;
}

/* A datagram to a local address and port no UDP socket holds: Linux's ICMP port unreachable
 * gives a connected sender ECONNREFUSED on its next call. lwIP sends the ICMP but hands no
 * socket the error, so a local destination is looked up here. */
static bool udp_unreachable(const struct sock *s, const ip_addr_t *to, u16_t port)
{
    if (!(s->udp->flags & UDP_FLAGS_CONNECTED) || !addr_local(to) || ip_addr_isany(to)) {
        return false;
    }
    if (port != s->udp->remote_port || !ip_addr_eq(to, &s->udp->remote_ip)) {
        return false;
    }
    for (struct udp_pcb *u = udp_pcbs; u != NULL; u = u->next) {
        if (u->local_port == port && (ip_addr_isany(&u->local_ip) || ip_addr_eq(&u->local_ip, to))) {
            return false;
        }
    }
    return true;
}

static long udp_put(struct sock *s, const char *buf, size_t len, const ip_addr_t *to, u16_t port)
{
    if (s->udp == NULL) {
        return -EBADF;
    }
    if (len > UDP_MAX_PAYLOAD) {
        return -EMSGSIZE;
    }
    if (to == NULL && !(s->udp->flags & UDP_FLAGS_CONNECTED)) {
        return -EDESTADDRREQ;
    }
    struct pbuf *p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)len, PBUF_RAM);
    if (p == NULL) {
        return -ENOBUFS;
    }
    pbuf_take(p, buf, (u16_t)len);
    if (to != NULL && ip_addr_isbroadcast(to, netif_default) && !s->broadcast) {
        pbuf_free(p);
        return -EACCES;
    }
    err_t err = to != NULL ? udp_sendto(s->udp, p, to, port) : udp_send(s->udp, p);
    pbuf_free(p);
    if (err != ERR_OK) {
        return err == ERR_RTE ? -ENETUNREACH : -lwip_errno(err);
    }
    if (udp_unreachable(s, to != NULL ? to : &s->udp->remote_ip, to != NULL ? port : s->udp->remote_port)) {
        s->err = ECONNREFUSED;
        waitq_io_changed();
    }
    return (long)len;
}

/* ---- fd_ops ---- */

static ssize_t sock_read(void *buf, size_t len, int fd)
{
    struct sock *s = fds_obj(fd);
    bool trunc;
    long r = s->type == SOCK_STREAM ? tcp_take(s, buf, len, 0, fds_nonblocking(fd))
                                    : udp_take(s, buf, len, 0, fds_nonblocking(fd), NULL, NULL, &trunc);
    return done(r);
}

static ssize_t sock_write(const void *buf, size_t len, int fd)
{
    struct sock *s = fds_obj(fd);
    long r =
        s->type == SOCK_STREAM ? tcp_put(s, buf, len, 0, fds_nonblocking(fd)) : udp_put(s, buf, len, NULL, 0);
    return done(r);
}

static int sock_fstat(int fd, struct stat *st)
{
    (void)fd;
    return fds_stat_mode(st, S_IFSOCK | 0777);
}

static unsigned sock_ready(int fd, void *obj, bool arm)
{
    (void)fd, (void)arm;
    struct sock *s = obj;
    if (s->type == SOCK_DGRAM) {
        return (s->dg_head != NULL ? POLLIN : 0) | POLLOUT | (s->err ? POLLERR : 0);
    }
    switch (s->state) {
    case ST_NEW:
        return POLLOUT | POLLHUP;
    case ST_LISTEN:
        return s->accq_head != NULL ? POLLIN : 0;
    case ST_CONNECTING:
        return 0;
    case ST_CONNECTED:
        break;
    case ST_CLOSED:
        return POLLIN | POLLOUT | POLLHUP | (s->err ? POLLERR : 0);
    }
    unsigned ev = 0;
    if (s->rx_len > 0 || s->peer_fin || s->rd_shut) {
        ev |= POLLIN;
    }
    if (s->peer_fin) {
        ev |= POLLRDHUP;
    }
    if (tcp_writable(s) || s->wr_shut) {
        ev |= POLLOUT;
    }
    if (s->peer_fin && s->wr_shut) {
        ev |= POLLHUP;
    }
    return ev | (s->err ? POLLERR : 0);
}

static void sock_retain(void *obj)
{
    ((struct sock *)obj)->refs++;
}

static void sock_release(void *obj)
{
    struct sock *s = obj;
    if (--s->refs > 0) {
        return;
    }
    if (s->type == SOCK_DGRAM) {
        if (s->udp != NULL) {
            udp_recv(s->udp, NULL, NULL);
            udp_remove(s->udp);
        }
        rx_free(s);
        sock_free(s);
    } else if (s->state == ST_LISTEN) {
        if (s->tcp != NULL) {
            tcp_detach(s->tcp);
            tcp_close(s->tcp);
        }
        while (s->accq_head != NULL) {
            struct sock *c = s->accq_head;
            s->accq_head = c->acc_next;
            conn_free(c, true);
        }
        sock_free(s);
    } else {
        conn_free(s, false);
    }
    netstack_after_call();
}

/* FIONREAD (SIOCINQ): TCP bytes queued, or the next datagram's size (Linux); TIOCOUTQ (SIOCOUTQ):
 * bytes lwIP has not had acknowledged; interface requests: fd_netlink.c. */
static long sock_ioctl(int fd, void *obj, unsigned long req, long arg)
{
    (void)fd;
    struct sock *s = obj;
    int *v = (int *)arg;
    switch (req) {
    case FIONREAD:
    case TIOCOUTQ:
        if (v == NULL) {
            return -EFAULT;
        }
        if (s->type == SOCK_STREAM && s->state == ST_LISTEN) {
            return -EINVAL;
        }
        if (req == TIOCOUTQ) {
            *v = s->type == SOCK_STREAM && s->tcp != NULL ? (int)(TCP_SND_BUF - tcp_sndbuf(s->tcp)) : 0;
        } else {
            *v = s->type == SOCK_STREAM ? (int)s->rx_len : s->dg_head ? (int)s->dg_head->p->tot_len : 0;
        }
        return 0;
    default:
        return fd_netlink_ifioctl(req, (void *)arg);
    }
}

/* writev as sendmsg: the iovecs leave together (see sys_sendmsg). */
static long sock_writev(int fd, const struct iovec *iov, int cnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = cnt};
    return sys_sendmsg(fd, (long)&m, 0, 0, 0, 0);
}

static const struct fd_ops sock_ops = {.name = "socket",
                                       .read = sock_read,
                                       .write = sock_write,
                                       .writev = sock_writev,
                                       .fstat = sock_fstat,
                                       .ready = sock_ready,
                                       .release = sock_release,
                                       .retain = sock_retain,
                                       .ioctl = sock_ioctl,
                                       .stream = true};

/* ---- the calls ---- */

long sys_socket(long domain, long type, long protocol, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    if (domain == AF_NETLINK) {
        long r = wait_up(); /* the interface list is lwIP's */
        return r < 0 ? r : fd_netlink_socket(type, protocol);
    }
    if (domain != AF_INET) {
        return -EAFNOSUPPORT; /* AF_INET6, AF_UNIX (socketpair is fd_pipe.c's) */
    }
    int kind = (int)(type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (type & ~(long)(0xf | SOCK_NONBLOCK | SOCK_CLOEXEC)) {
        return -EINVAL;
    }
    if (kind == SOCK_STREAM  ? (protocol != 0 && protocol != IPPROTO_TCP)
        : kind == SOCK_DGRAM ? (protocol != 0 && protocol != IPPROTO_UDP)
                             : true) {
        return kind == SOCK_STREAM || kind == SOCK_DGRAM ? -EPROTONOSUPPORT : -ESOCKTNOSUPPORT;
    }
    long r = wait_up();
    if (r < 0) {
        return r;
    }
    struct sock *s = sock_new(kind);
    if (s == NULL) {
        return -ENOMEM;
    }
    if (kind == SOCK_STREAM) {
        s->tcp = tcp_new_ip_type(IPADDR_TYPE_V4);
        if (s->tcp != NULL) {
            conn_callbacks(s, s->tcp);
        }
    } else {
        s->udp = udp_new_ip_type(IPADDR_TYPE_V4);
        if (s->udp != NULL) {
            udp_recv(s->udp, on_udp_recv, s);
        }
    }
    if (sock_base(s) == NULL) {
        sock_free(s);
        return -ENOBUFS;
    }
    int fd = fds_open(&sock_ops, s,
                      O_RDWR | fds_open_flags(type & SOCK_NONBLOCK ? O_NONBLOCK : 0) |
                          fds_open_flags(type & SOCK_CLOEXEC ? O_CLOEXEC : 0));
    if (fd < 0) {
        s->refs = 1;
        sock_release(s);
    }
    return done(fd);
}

long sys_bind(long fd, long addr, long len, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    if (fd_netlink_is(fd)) {
        return fd_netlink_bind(fd, addr, len);
    }
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    ip_addr_t ip;
    u16_t port;
    if ((r = addr_in(addr, len, &ip, &port)) < 0) {
        return r;
    }
    if (!addr_local(&ip)) {
        return -EADDRNOTAVAIL;
    }
    if (s->type == SOCK_STREAM) {
        if (s->tcp == NULL || s->state != ST_NEW || s->tcp->local_port != 0) {
            return -EINVAL;
        }
        if (port != 0 && port_listened(&ip, port, NULL)) {
            return -EADDRINUSE;
        }
        r = -lwip_errno(tcp_bind(s->tcp, &ip, port));
    } else {
        if (s->udp->local_port != 0) {
            return -EINVAL;
        }
        r = -lwip_errno(udp_bind(s->udp, &ip, port));
    }
    return done(r);
}

long sys_listen(long fd, long backlog, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    if (s->type != SOCK_STREAM) {
        return -EOPNOTSUPP;
    }
    u8_t bl = backlog < 1 ? 1 : backlog > 255 ? 255 : (u8_t)backlog;
    if (s->state == ST_LISTEN) {
        tcp_backlog_set(s->tcp, bl);
        return 0;
    }
    if (s->state != ST_NEW || s->tcp == NULL) {
        return -EINVAL;
    }
    if (s->tcp->local_port == 0) {
        err_t err = tcp_bind(s->tcp, IP4_ADDR_ANY, 0);
        if (err != ERR_OK) {
            return done(-lwip_errno(err));
        }
    } else if (port_listened(&s->tcp->local_ip, s->tcp->local_port, NULL)) {
        return -EADDRINUSE;
    }
    err_t err = ERR_OK;
    tcp_arg(s->tcp, NULL); /* the old pcb is freed on success */
    struct tcp_pcb *l = tcp_listen_with_backlog_and_err(s->tcp, bl, &err);
    if (l == NULL) {
        tcp_arg(s->tcp, s);
        return done(err == ERR_USE ? -EADDRINUSE : -ENOBUFS);
    }
    s->tcp = l;
    s->state = ST_LISTEN;
    tcp_arg(l, s);
    tcp_accept(l, on_accept);
    return done(0);
}

long sys_accept4(long fd, long addr, long lenp, long flags, long e, long f)
{
    (void)e, (void)f;
    long r = 0;
    struct sock *l = sock_of(fd, &r);
    if (l == NULL) {
        return r;
    }
    if (flags & ~(long)(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
        return -EINVAL;
    }
    if (l->type != SOCK_STREAM) {
        return -EOPNOTSUPP;
    }
    if (l->state != ST_LISTEN) {
        return -EINVAL;
    }
    while (l->accq_head == NULL) {
        if (fds_nonblocking((int)fd)) {
            return -EAGAIN;
        }
        waitq_wait(&waitq_io, NULL, 0);
        if (fds_ops((int)fd) != &sock_ops || fds_obj((int)fd) != l) {
            return -EBADF;
        }
    }
    struct sock *s = l->accq_head;
    int nfd =
        fds_open(&sock_ops, s,
                 O_RDWR | (flags & SOCK_NONBLOCK ? O_NONBLOCK : 0) | (flags & SOCK_CLOEXEC ? O_CLOEXEC : 0));
    if (nfd < 0) {
        return nfd;
    }
    l->accq_head = s->acc_next;
    if (l->accq_head == NULL) {
        l->accq_tail = NULL;
    }
    l->accq_len--;
    s->acc_next = NULL;
    if (s->tcp != NULL) {
        addr_out(addr, lenp, &s->tcp->remote_ip, s->tcp->remote_port);
    } else {
        addr_out(addr, lenp, NULL, 0);
    }
    return done(nfd);
}

long sys_accept(long fd, long addr, long lenp, long d, long e, long f)
{
    (void)d;
    return sys_accept4(fd, addr, lenp, 0, e, f);
}

long sys_connect(long fd, long addr, long len, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    ip_addr_t ip;
    u16_t port;
    if (s->type == SOCK_DGRAM) {
        if (addr != 0 && len >= (long)sizeof(sa_family_t) &&
            ((struct sockaddr *)addr)->sa_family == AF_UNSPEC) {
            udp_disconnect(s->udp);
            return done(0);
        }
        if ((r = addr_in(addr, len, &ip, &port)) < 0) {
            return r;
        }
        return done(-lwip_errno(udp_connect(s->udp, &ip, port)));
    }
    switch (s->state) {
    case ST_CONNECTING:
        return -EALREADY;
    case ST_CONNECTED:
        return -EISCONN;
    case ST_LISTEN:
        return -EINVAL;
    case ST_CLOSED: {
        /* the outcome of a non-blocking connect, if SO_ERROR did not take it */
        long e2 = s->err ? -s->err : -ECONNABORTED;
        s->err = 0;
        return e2;
    }
    case ST_NEW:
        break;
    }
    if ((r = addr_in(addr, len, &ip, &port)) < 0) {
        return r;
    }
    if (s->tcp == NULL) {
        return -EBADF;
    }
    if (ip_addr_isany(&ip)) {
        ip_addr_set_loopback(false, &ip); /* Linux: connecting to 0.0.0.0 reaches ourselves */
    }
    s->state = ST_CONNECTING;
    err_t err = tcp_connect(s->tcp, &ip, port, on_connected);
    if (err != ERR_OK) {
        s->state = ST_NEW;
        return done(err == ERR_RTE ? -ENETUNREACH : -lwip_errno(err));
    }
    if (fds_nonblocking((int)fd)) {
        return done(-EINPROGRESS);
    }
    netstack_after_call();
    while (s->state == ST_CONNECTING) {
        waitq_wait(&waitq_io, NULL, 0);
    }
    if (s->state == ST_CONNECTED) {
        return 0;
    }
    long e2 = s->err ? -s->err : -ECONNREFUSED;
    s->err = 0;
    return e2;
}

long sys_getsockname(long fd, long addr, long lenp, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    if (fd_netlink_is(fd)) {
        return fd_netlink_getsockname(fd, addr, lenp);
    }
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    if (addr == 0 || lenp == 0) {
        return -EFAULT;
    }
    if (s->type == SOCK_STREAM && s->tcp != NULL) {
        addr_out(addr, lenp, &s->tcp->local_ip, s->tcp->local_port);
    } else if (s->type == SOCK_DGRAM && s->udp != NULL) {
        addr_out(addr, lenp, &s->udp->local_ip, s->udp->local_port);
    } else {
        addr_out(addr, lenp, NULL, 0);
    }
    return 0;
}

long sys_getpeername(long fd, long addr, long lenp, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    if (addr == 0 || lenp == 0) {
        return -EFAULT;
    }
    if (s->type == SOCK_STREAM) {
        if (s->state != ST_CONNECTED || s->tcp == NULL) {
            return -ENOTCONN;
        }
        addr_out(addr, lenp, &s->tcp->remote_ip, s->tcp->remote_port);
    } else {
        if (!(s->udp->flags & UDP_FLAGS_CONNECTED)) {
            return -ENOTCONN;
        }
        addr_out(addr, lenp, &s->udp->remote_ip, s->udp->remote_port);
    }
    return 0;
}

long sys_sendto(long fd, long buf, long len, long flags, long addr, long alen)
{
    if (fd_netlink_is(fd)) {
        return fd_netlink_sendto(fd, (const void *)buf, len, flags, addr, alen);
    }
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    bool nonblock = fds_nonblocking((int)fd);
    if (s->type == SOCK_STREAM) {
        if (addr != 0 && s->state != ST_CONNECTED) {
            return -EOPNOTSUPP; /* no TCP Fast Open */
        }
        return done(tcp_put(s, (const char *)buf, (size_t)len, (int)flags, nonblock));
    }
    if (addr == 0) {
        return done(udp_put(s, (const char *)buf, (size_t)len, NULL, 0));
    }
    ip_addr_t ip;
    u16_t port;
    if ((r = addr_in(addr, alen, &ip, &port)) < 0) {
        return r;
    }
    return done(udp_put(s, (const char *)buf, (size_t)len, &ip, port));
}

long sys_recvfrom(long fd, long buf, long len, long flags, long addr, long lenp)
{
    if (fd_netlink_is(fd)) {
        return fd_netlink_recvfrom(fd, (void *)buf, len, flags, addr, lenp);
    }
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    bool nonblock = fds_nonblocking((int)fd);
    if (s->type == SOCK_STREAM) {
        r = tcp_take(s, (char *)buf, (size_t)len, (int)flags, nonblock);
        if (r >= 0 && s->tcp != NULL) {
            addr_out(addr, lenp, &s->tcp->remote_ip, s->tcp->remote_port);
        }
        return done(r);
    }
    ip_addr_t from;
    u16_t port = 0;
    bool trunc = false;
    r = udp_take(s, (char *)buf, (size_t)len, (int)flags, nonblock, &from, &port, &trunc);
    if (r >= 0) {
        addr_out(addr, lenp, &from, port);
    }
    return done(r);
}

long sys_sendmsg(long fd, long msgp, long flags, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    const struct msghdr *m = (const struct msghdr *)msgp;
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    if (m == NULL) {
        return -EFAULT;
    }
    size_t total = 0;
    for (int i = 0; i < m->msg_iovlen; i++) {
        total += m->msg_iov[i].iov_len;
    }
    if (s->type == SOCK_STREAM) {
        /* All iovecs queued first, then one tcp_output: a message and its header leave
         * as one segment, not one each (a lone small segment waits out the peer's
         * delayed ACK behind Nagle at the next hop: ~40 ms a distribution message). */
        long sent = 0;
        for (int i = 0; i < m->msg_iovlen; i++) {
            if (m->msg_iov[i].iov_len == 0) {
                continue;
            }
            r = tcp_put(s, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len, (int)flags | MSG_MORE,
                        fds_nonblocking((int)fd) || sent > 0);
            if (r < 0) {
                break;
            }
            sent += r;
            if ((size_t)r < m->msg_iov[i].iov_len) {
                break;
            }
        }
        if (!(flags & MSG_MORE) && s->tcp != NULL) {
            tcp_output(s->tcp);
        }
        return done(sent > 0 || r >= 0 ? sent : r);
    }
    /* one datagram: gather it */
    if (total > UDP_MAX_PAYLOAD) {
        return -EMSGSIZE;
    }
    char *tmp = malloc(total ? total : 1);
    if (tmp == NULL) {
        return -ENOBUFS;
    }
    size_t at = 0;
    for (int i = 0; i < m->msg_iovlen; i++) {
        memcpy(tmp + at, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len);
        at += m->msg_iov[i].iov_len;
    }
    r = sys_sendto(fd, (long)tmp, (long)total, flags, (long)m->msg_name,
                   m->msg_name ? (long)m->msg_namelen : 0);
    free(tmp);
    return r;
}

long sys_recvmsg(long fd, long msgp, long flags, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    struct msghdr *m = (struct msghdr *)msgp;
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    if (m == NULL) {
        return -EFAULT;
    }
    m->msg_controllen = 0;
    m->msg_flags = 0;
    bool nonblock = fds_nonblocking((int)fd);
    if (s->type == SOCK_STREAM) {
        long got = 0;
        for (int i = 0; i < m->msg_iovlen; i++) {
            if (m->msg_iov[i].iov_len == 0) {
                continue;
            }
            if (got > 0 && !(flags & MSG_PEEK) && s->rx_len == 0) {
                break;
            }
            r = tcp_take(s, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len, (int)flags & ~MSG_PEEK, nonblock);
            if (r <= 0) {
                return done(got > 0 ? got : r);
            }
            got += r;
            if ((size_t)r < m->msg_iov[i].iov_len) {
                break;
            }
        }
        if (m->msg_name != NULL) {
            m->msg_namelen = 0;
        }
        return done(got);
    }
    size_t total = 0;
    for (int i = 0; i < m->msg_iovlen; i++) {
        total += m->msg_iov[i].iov_len;
    }
    char *tmp = malloc(total ? total : 1);
    if (tmp == NULL) {
        return -ENOBUFS;
    }
    ip_addr_t from;
    u16_t port = 0;
    bool trunc = false;
    r = udp_take(s, tmp, total, (int)flags, nonblock, &from, &port, &trunc);
    if (r >= 0) {
        size_t left = (size_t)r < total ? (size_t)r : total, at = 0;
        for (int i = 0; i < m->msg_iovlen && left > 0; i++) {
            size_t n = m->msg_iov[i].iov_len < left ? m->msg_iov[i].iov_len : left;
            memcpy(m->msg_iov[i].iov_base, tmp + at, n);
            at += n;
            left -= n;
        }
        if (m->msg_name != NULL) {
            socklen_t len = m->msg_namelen;
            addr_out((long)m->msg_name, (long)&len, &from, port);
            m->msg_namelen = len;
        }
        if (trunc) {
            m->msg_flags |= MSG_TRUNC;
        }
    }
    free(tmp);
    return done(r);
}

long sys_shutdown(long fd, long how, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) {
        return -EINVAL;
    }
    if (s->type == SOCK_STREAM && s->state != ST_CONNECTED) {
        return s->state == ST_CLOSED && !s->reset ? 0 : -ENOTCONN;
    }
    bool rd = how != SHUT_WR, wr = how != SHUT_RD;
    if (rd && !s->rd_shut) {
        s->rd_shut = true;
        if (s->type == SOCK_STREAM && s->tcp != NULL && s->rx_len > 0) {
            tcp_recved(s->tcp, (u16_t)(s->rx_len > 0xffff ? 0xffff : s->rx_len));
        }
        rx_free(s);
    }
    if (wr && !s->wr_shut && s->type == SOCK_STREAM) {
        s->wr_shut = true;
        if (s->tcp != NULL) {
            r = -lwip_errno(tcp_shutdown(s->tcp, 0, 1));
        }
    }
    waitq_io_changed();
    return done(r);
}

/* ---- options ---- */

static long opt_int(long val, long len, int *out)
{
    if (val == 0) {
        return -EFAULT;
    }
    if (len < (long)sizeof(int)) {
        return -EINVAL;
    }
    *out = *(const int *)val;
    return 0;
}

static void pcb_option(struct sock *s, u8_t opt, bool on)
{
    void *pcb = sock_base(s);
    if (pcb == NULL) {
        return;
    }
    if (s->type == SOCK_STREAM) {
        if (on) {
            ip_set_option(s->tcp, opt);
        } else {
            ip_reset_option(s->tcp, opt);
        }
    } else if (on) {
        ip_set_option(s->udp, opt);
    } else {
        ip_reset_option(s->udp, opt);
    }
}

long sys_setsockopt(long fd, long level, long name, long val, long len, long f)
{
    (void)f;
    long r = 0;
    struct sock *s = sock_of(fd, &r);
    if (s == NULL) {
        return r;
    }
    int v = 0;
    if (level == SOL_SOCKET && name == SO_LINGER) {
        if (val == 0) {
            return -EFAULT;
        }
        if (len < (long)sizeof(struct linger)) {
            return -EINVAL;
        }
        const struct linger *l = (const struct linger *)val;
        s->linger_on = l->l_onoff != 0;
        s->linger_s = l->l_linger;
        return 0;
    }
    if ((r = opt_int(val, len, &v)) < 0) {
        return r;
    }
    bool tcp = s->type == SOCK_STREAM;
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_REUSEADDR:
            s->reuseaddr = v != 0;
            pcb_option(s, SOF_REUSEADDR, s->reuseaddr);
            return 0;
        case SO_KEEPALIVE:
            s->keepalive = v != 0;
            pcb_option(s, SOF_KEEPALIVE, s->keepalive);
            return 0;
        case SO_BROADCAST:
            s->broadcast = v != 0;
            pcb_option(s, SOF_BROADCAST, s->broadcast);
            return 0;
        case SO_SNDBUF: /* Linux doubles it, from a floor */
            s->sndbuf = v < 2304 ? 4608 : 2 * v;
            return 0;
        case SO_RCVBUF:
            s->rcvbuf = v < 1152 ? 2304 : 2 * v;
            return 0;
        case SO_PRIORITY:
            if (v < 0 || v > 6) {
                return -EPERM; /* 7 and up need CAP_NET_ADMIN */
            }
            s->priority = v;
            return 0;
        case SO_OOBINLINE:
        case SO_DONTROUTE:
        case SO_RCVLOWAT:
        case SO_SNDLOWAT:
        case SO_BSDCOMPAT: /* inet_drv sets it on UDP sockets (uname's release is 2.0) */
            return 0;
        default:
            return -ENOPROTOOPT;
        }
    }
    if (level == IPPROTO_IP) {
        switch (name) {
        case IP_TOS:
            s->tos = v & 0xfc;
            if (tcp && s->tcp != NULL) {
                s->tcp->tos = (u8_t)s->tos;
            } else if (!tcp && s->udp != NULL) {
                s->udp->tos = (u8_t)s->tos;
            }
            return 0;
        case IP_TTL:
            if (v < -1 || v == 0 || v > 255) {
                return -EINVAL;
            }
            s->ttl = v == -1 ? TCP_TTL : v;
            if (tcp && s->tcp != NULL) {
                s->tcp->ttl = (u8_t)s->ttl;
            } else if (!tcp && s->udp != NULL) {
                s->udp->ttl = (u8_t)s->ttl;
            }
            return 0;
        default:
            return -ENOPROTOOPT;
        }
    }
    if (level == IPPROTO_TCP) {
        if (!tcp) {
            return -EOPNOTSUPP;
        }
        switch (name) {
        case TCP_NODELAY:
            s->nodelay = v != 0;
            if (s->tcp != NULL && s->state != ST_LISTEN) {
                if (s->nodelay) {
                    tcp_nagle_disable(s->tcp);
                } else {
                    tcp_nagle_enable(s->tcp);
                }
            }
            return 0;
        case TCP_KEEPIDLE:
        case TCP_KEEPINTVL:
        case TCP_KEEPCNT:
            return v < 1 ? -EINVAL : 0;
        default:
            return -ENOPROTOOPT;
        }
    }
    return -ENOPROTOOPT;
}

long sys_getsockopt(long fd, long level, long name, long val, long lenp, long f)
{
    (void)f;
    const struct fd_ops *ops = fds_ops((int)fd);
    if (ops != &sock_ops) {
        if (fds_ready((int)fd, false) & POLLNVAL) {
            return -EBADF;
        }
        if (fd_netlink_is(fd)) {
            return -ENOPROTOOPT; /* nothing to tune on a netlink socket here */
        }
        /* a socketpair (fd_pipe.c) has no options to report; other fds are no sockets */
        return ops != NULL && ops->fstat != NULL && strcmp(ops->name, "socketpair") == 0 ? -ENOPROTOOPT
                                                                                         : -ENOTSOCK;
    }
    struct sock *s = fds_obj((int)fd);
    if (val == 0 || lenp == 0) {
        return -EFAULT;
    }
    socklen_t *len = (socklen_t *)lenp;
    bool tcp = s->type == SOCK_STREAM;
    int v;
    if (level == SOL_SOCKET && name == SO_LINGER) {
        struct linger l = {.l_onoff = s->linger_on, .l_linger = s->linger_s};
        size_t n = *len < sizeof(l) ? *len : sizeof(l);
        memcpy((void *)val, &l, n);
        *len = (socklen_t)n;
        return 0;
    }
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_ERROR:
            v = s->err;
            s->err = 0;
            break;
        case SO_TYPE:
            v = s->type;
            break;
        case SO_DOMAIN:
            v = AF_INET;
            break;
        case SO_PROTOCOL:
            v = tcp ? IPPROTO_TCP : IPPROTO_UDP;
            break;
        case SO_ACCEPTCONN:
            v = s->state == ST_LISTEN;
            break;
        case SO_REUSEADDR:
            v = s->reuseaddr;
            break;
        case SO_KEEPALIVE:
            v = s->keepalive;
            break;
        case SO_BROADCAST:
            v = s->broadcast;
            break;
        case SO_SNDBUF:
            v = s->sndbuf;
            break;
        case SO_RCVBUF:
            v = s->rcvbuf;
            break;
        case SO_PRIORITY:
            v = s->priority;
            break;
        case SO_OOBINLINE:
        case SO_DONTROUTE:
            v = 0;
            break;
        case SO_RCVLOWAT:
        case SO_SNDLOWAT:
            v = 1;
            break;
        default:
            return -ENOPROTOOPT;
        }
    } else if (level == IPPROTO_IP) {
        switch (name) {
        case IP_TOS:
            v = s->tos;
            break;
        case IP_TTL:
            v = s->ttl;
            break;
        default:
            return -ENOPROTOOPT;
        }
    } else if (level == IPPROTO_TCP && tcp) {
        switch (name) {
        case TCP_NODELAY:
            v = s->nodelay;
            break;
        case TCP_MAXSEG:
            v = TCP_MSS;
            break;
        default:
            return -ENOPROTOOPT;
        }
    } else {
        return level == IPPROTO_TCP ? -EOPNOTSUPP : -ENOPROTOOPT;
    }
    size_t n = *len < sizeof(v) ? *len : sizeof(v);
    memcpy((void *)val, &v, n);
    *len = (socklen_t)n;
    return 0;
}

/* ---- /proc/net: what the leak check (net-many) counts ---- */

static unsigned pcbs_in(struct tcp_pcb *list, unsigned *orphans)
{
    unsigned n = 0;
    for (struct tcp_pcb *p = list; p != NULL; p = p->next) {
        n++;
        if (orphans != NULL && p->callback_arg == NULL) {
            (*orphans)++; /* closed by its socket, lwIP still finishing (FIN_WAIT, LAST_ACK) */
        }
    }
    return n;
}

/* Linux's layout (proc(5), /proc/net/sockstat) with lwIP's numbers: TCP inuse counts the
 * listening, bound and active pcbs, TIME_WAIT ones apart (tw), alloc the pcb pools' use. */
static size_t sockstat_fill(char *buf, size_t size)
{
    unsigned orphans = 0, udp = 0;
    unsigned active = pcbs_in(tcp_active_pcbs, &orphans);
    unsigned listen = pcbs_in((struct tcp_pcb *)tcp_listen_pcbs.pcbs, NULL);
    unsigned bound = pcbs_in(tcp_bound_pcbs, NULL);
    unsigned tw = pcbs_in(tcp_tw_pcbs, NULL);
    for (struct udp_pcb *u = udp_pcbs; u != NULL; u = u->next) {
        udp++;
    }
    unsigned alloc = lwip_stats.memp[MEMP_TCP_PCB]->used + lwip_stats.memp[MEMP_TCP_PCB_LISTEN]->used;
    int n = snprintf(buf, size, "sockets: used %u\nTCP: inuse %u orphan %u tw %u alloc %u\nUDP: inuse %u\n",
                     socks_alive, active + listen + bound, orphans, tw, alloc, udp);
    return n < 0 ? 0 : (size_t)n;
}

/* lwIP's fixed pools: in use, most ever, size, failed allocations (a full pool; for
 * TCP_PCB each one recycled the oldest TIME_WAIT pcb). */
static size_t memp_fill(char *buf, size_t size)
{
    static const struct {
        const char *name;
        memp_t pool;
    } pools[] = {{"TCP_PCB", MEMP_TCP_PCB},
                 {"TCP_PCB_LISTEN", MEMP_TCP_PCB_LISTEN},
                 {"TCP_SEG", MEMP_TCP_SEG},
                 {"UDP_PCB", MEMP_UDP_PCB},
                 {"PBUF", MEMP_PBUF},
                 {"PBUF_POOL", MEMP_PBUF_POOL},
                 {"SYS_TIMEOUT", MEMP_SYS_TIMEOUT}};
    size_t at = 0;
    int n = snprintf(buf, size, "pool used max avail err\n");
    at = n < 0 ? 0 : (size_t)n;
    for (size_t i = 0; i < sizeof(pools) / sizeof(pools[0]) && at < size; i++) {
        const struct stats_mem *m = lwip_stats.memp[pools[i].pool];
        n = snprintf(buf + at, size - at, "%s %u %u %u %u\n", pools[i].name, (unsigned)m->used,
                     (unsigned)m->max, (unsigned)m->avail, (unsigned)m->err);
        at += n < 0 ? 0 : (size_t)n;
    }
    return at;
}

/* OTP 29's socket:sendmmsg/recvmmsg: the messages in turn through sendmsg/recvmsg. As
 * Linux: each msg_len set, the count returned, an error only when the first fails. */
long sys_sendmmsg(long fd, long vec, long vlen, long flags, long e, long f)
{
    (void)e, (void)f;
    struct mmsghdr *v = (struct mmsghdr *)vec;
    if (v == NULL) {
        return -EFAULT;
    }
    long n = 0;
    for (; n < vlen && n < UIO_MAXIOV; n++) {
        long r = sys_sendmsg(fd, (long)&v[n].msg_hdr, flags, 0, 0, 0);
        if (r < 0) {
            return n > 0 ? n : r;
        }
        v[n].msg_len = (unsigned int)r;
    }
    return n;
}

/* MSG_WAITFORONE: only the first may wait. A timeout (Linux checks it only between
 * datagrams) makes the later ones take what is queued, without waiting. */
long sys_recvmmsg(long fd, long vec, long vlen, long flags, long timeout, long f)
{
    (void)f;
    struct mmsghdr *v = (struct mmsghdr *)vec;
    if (v == NULL) {
        return -EFAULT;
    }
    long n = 0;
    for (; n < vlen && n < UIO_MAXIOV; n++) {
        long fl = flags & ~MSG_WAITFORONE;
        if (n > 0 && ((flags & MSG_WAITFORONE) || timeout != 0)) {
            fl |= MSG_DONTWAIT;
        }
        long r = sys_recvmsg(fd, (long)&v[n].msg_hdr, fl, 0, 0, 0);
        if (r < 0) {
            return n > 0 ? n : r;
        }
        v[n].msg_len = (unsigned int)r;
    }
    return n;
}

/*
 * The socket calls of images with the network (docs/syscalls.md); images without it
 * answer socket and getsockopt from syscalls.c's NO_NET_SYSCALLS instead.
 */
static const struct dispatch_syscall NET_SYSCALLS[] = {
    {SYS_socket, sys_socket, "fd_socket.c"},           {SYS_bind, sys_bind, "fd_socket.c"},
    {SYS_listen, sys_listen, "fd_socket.c"},           {SYS_accept, sys_accept, "fd_socket.c"},
    {SYS_accept4, sys_accept4, "fd_socket.c"},         {SYS_connect, sys_connect, "fd_socket.c"},
    {SYS_getsockname, sys_getsockname, "fd_socket.c"}, {SYS_getpeername, sys_getpeername, "fd_socket.c"},
    {SYS_sendto, sys_sendto, "fd_socket.c"},           {SYS_recvfrom, sys_recvfrom, "fd_socket.c"},
    {SYS_setsockopt, sys_setsockopt, "fd_socket.c"},   {SYS_getsockopt, sys_getsockopt, "fd_socket.c"},
    {SYS_shutdown, sys_shutdown, "fd_socket.c"},       {SYS_sendmsg, sys_sendmsg, "fd_socket.c"},
    {SYS_recvmsg, sys_recvmsg, "fd_socket.c"},         {SYS_sendmmsg, sys_sendmmsg, "fd_socket.c"},
    {SYS_recvmmsg, sys_recvmmsg, "fd_socket.c"},
};

void fd_socket_init(void)
{
    fd_proc_register("/proc/net/sockstat", sockstat_fill);
    fd_proc_register("/proc/net/memp", memp_fill);
    for (size_t i = 0; i < sizeof(NET_SYSCALLS) / sizeof(NET_SYSCALLS[0]); i++) {
        if (dispatch_register(&NET_SYSCALLS[i]) != 0) {
            pd_halt();
        }
    }
}
