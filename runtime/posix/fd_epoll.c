/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * epoll: ERTS's poll set (EPOLLONESHOT). A level-triggered scan over fds_ready(): a
 * waiter that finds nothing parks on the I/O wait queue (poll.c's poll_park) until an
 * fd changes, a notification arrives, its timeout passes or the earliest timer it
 * watches expires. A closed fd leaves every set through the fds close hook.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include <lions/posix/fd.h>

#include <chrysopolis/fd_epoll.h>
#include <chrysopolis/fd_timerfd.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/poll.h>
#include <chrysopolis/waitq.h>

#define MAX_EPOLLS 16

struct epoll_item {
    bool used;
    bool armed; /* false once an EPOLLONESHOT event was reported, until EPOLL_CTL_MOD */
    uint32_t events;
    uint64_t data;
};

struct epoll {
    unsigned refs;
    int start; /* where the next scan starts: no fd starves the others */
    struct epoll_item items[MAX_FDS];
};

static struct epoll *epolls[MAX_EPOLLS];

/* Report up to `max` ready items into out (if non-NULL, consuming ONESHOT arms). */
static int epoll_scan(struct epoll *ep, struct epoll_event *out, int max, bool arm, uint64_t *deadline)
{
    int n = 0;
    for (int i = 0; i < MAX_FDS && n < max; i++) {
        int fd = (ep->start + i) % MAX_FDS;
        struct epoll_item *it = &ep->items[fd];
        if (!it->used || !it->armed) {
            continue;
        }
        unsigned r = fds_ready(fd, arm);
        if (r & POLLNVAL) {
            it->used = false; /* closed behind our back */
            continue;
        }
        unsigned ev = r & (it->events | EPOLLERR | EPOLLHUP);
        if (ev == 0) {
            if (deadline != NULL) {
                *deadline = poll_earliest(*deadline, fds_deadline(fd, it->events));
            }
            continue;
        }
        if (out != NULL) {
            out[n] = (struct epoll_event){.events = ev, .data.u64 = it->data};
            if (it->events & EPOLLONESHOT) {
                it->armed = false;
            }
        }
        n++;
    }
    if (out != NULL && n > 0) {
        ep->start = (ep->start + 1) % MAX_FDS;
    }
    return n;
}

static ssize_t epoll_read(void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EINVAL;
}

static ssize_t epoll_write(const void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EINVAL;
}

static unsigned epoll_ready(int fd, void *obj, bool arm)
{
    (void)fd;
    return epoll_scan(obj, NULL, 1, arm, NULL) ? POLLIN : 0;
}

static void epoll_release(void *obj)
{
    struct epoll *ep = obj;
    if (--ep->refs > 0) {
        return;
    }
    for (int i = 0; i < MAX_EPOLLS; i++) {
        if (epolls[i] == ep) {
            epolls[i] = NULL;
        }
    }
    free(ep);
}

static void epoll_retain(void *obj)
{
    ((struct epoll *)obj)->refs++;
}

static const struct fd_ops epoll_ops = {.name = "epoll",
                                        .read = epoll_read,
                                        .write = epoll_write,
                                        .fstat = fd_timerfd_fstat,
                                        .ready = epoll_ready,
                                        .release = epoll_release,
                                        .retain = epoll_retain,
                                        .stream = true};

static bool is_epoll(long fd)
{
    return fds_ops((int)fd) == &epoll_ops;
}

/* `fd` is being closed: it leaves every epoll set. */
static void forget_fd(int fd)
{
    for (int i = 0; i < MAX_EPOLLS; i++) {
        if (epolls[i] != NULL && fd >= 0 && fd < MAX_FDS) {
            epolls[i]->items[fd].used = false;
        }
    }
}

long sys_epoll_create1(long flags, long b, long c, long d, long e, long f)
{
    (void)b, (void)c, (void)d, (void)e, (void)f;
    if (flags & ~EPOLL_CLOEXEC) {
        return -EINVAL;
    }
    int slot = 0;
    while (slot < MAX_EPOLLS && epolls[slot] != NULL) {
        slot++;
    }
    if (slot == MAX_EPOLLS) {
        return -ENOMEM;
    }
    struct epoll *ep = calloc(1, sizeof(*ep));
    if (ep == NULL) {
        return -ENOMEM;
    }
    ep->refs = 1;
    int fd = fds_open(&epoll_ops, ep, O_RDONLY | (int)(flags & O_CLOEXEC));
    if (fd < 0) {
        free(ep);
        return fd;
    }
    epolls[slot] = ep;
    return fd;
}

long sys_epoll_ctl(long epfd, long op, long fd, long evp, long e, long f)
{
    (void)e, (void)f;
    if (!is_epoll(epfd) || fd == epfd) {
        return -EINVAL;
    }
    if (fd < 0 || fd >= MAX_FDS || posix_fd_entry((int)fd) == NULL) {
        return -EBADF;
    }
    const struct fd_ops *ops = fds_ops((int)fd);
    if (ops == NULL || ops->not_pollable) {
        return -EPERM; /* regular files and directories are always ready: Linux refuses them */
    }
    struct epoll_item *it = &((struct epoll *)fds_obj((int)epfd))->items[fd];
    const struct epoll_event *ev = (const struct epoll_event *)evp;
    switch (op) {
    case EPOLL_CTL_ADD:
        if (it->used) {
            return -EEXIST;
        }
        break;
    case EPOLL_CTL_MOD:
        if (!it->used) {
            return -ENOENT;
        }
        break;
    case EPOLL_CTL_DEL:
        if (!it->used) {
            return -ENOENT;
        }
        it->used = false;
        return 0;
    default:
        return -EINVAL;
    }
    if (ev == NULL) {
        return -EFAULT;
    }
    *it = (struct epoll_item){.used = true, .armed = true, .events = ev->events, .data = ev->data.u64};
    waitq_io_changed(); /* a poller parked on this set must look again */
    return 0;
}

long sys_epoll_pwait(long epfd, long eventsp, long max, long timeout_ms, long sigmask, long f)
{
    (void)sigmask, (void)f;
    if (!is_epoll(epfd)) {
        return -EINVAL;
    }
    if (max <= 0) {
        return -EINVAL;
    }
    struct epoll *ep = fds_obj((int)epfd);
    struct epoll_event *out = (struct epoll_event *)eventsp;
    uint64_t deadline = poll_deadline_ms(timeout_ms);
    for (;;) {
        uint64_t tfd = 0;
        int n = epoll_scan(ep, out, (int)max, timeout_ms != 0, &tfd);
        if (n > 0 || !poll_park(timeout_ms, deadline, tfd)) {
            return n > 0 ? n : epoll_scan(ep, out, (int)max, false, NULL);
        }
        if (!is_epoll(epfd) || fds_obj((int)epfd) != ep) {
            return -EBADF; /* closed while we waited */
        }
    }
}

void fd_epoll_init(void)
{
    fds_on_close(forget_fd);
}
