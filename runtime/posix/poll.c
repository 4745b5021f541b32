/*
 * Waiting for file descriptors: epoll (ERTS's poll set, EPOLLONESHOT), ppoll (its
 * fallback set, for regular files that epoll refuses), pselect6 (the main thread parks
 * in select(0, ...) for good) and timerfd (how ERTS's poll thread times out).
 *
 * All are level-triggered scans over fds_ready(): a waiter that finds nothing parks on
 * the I/O wait queue until an fd changes, a notification arrives, its timeout passes or
 * the earliest timerfd it watches expires. A zero-timeout poll yields once, so a
 * scheduler polling between reductions lets other cothreads (and notifications) in.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>

#include <libmicrokitco.h>
#include <lions/posix/fd.h>

#include "adapter.h"
#include "chrysopolis.h"

#define NS_PER_S 1000000000ULL
#define NS_PER_MS 1000000ULL
#define MAX_EPOLLS 16
#define EPOLL_MODES (EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP)

/* ---- timerfd ---- */

struct timerfd {
    unsigned refs;
    long clock;
    uint64_t next; /* monotonic ns of the next expiry; 0: disarmed */
    uint64_t interval;
};

/* Expirations due by `now`, moving the timer past them. */
static uint64_t timerfd_take(struct timerfd *t, uint64_t now)
{
    if (t->next == 0 || now < t->next) {
        return 0;
    }
    uint64_t n = 1 + (t->interval ? (now - t->next) / t->interval : 0);
    t->next = t->interval ? t->next + n * t->interval : 0;
    return n;
}

static ssize_t timerfd_read(void *buf, size_t len, int fd)
{
    struct timerfd *t = fds_obj(fd);
    if (len < sizeof(uint64_t)) {
        return -EINVAL;
    }
    for (;;) {
        uint64_t n = timerfd_take(t, runtime_now_ns());
        if (n > 0) {
            memcpy(buf, &n, sizeof(n));
            return sizeof(n);
        }
        if (fds_nonblocking(fd)) {
            return -EAGAIN;
        }
        if (threads_wait(&runtime_io_waitq, NULL, t->next) == -EAGAIN) {
            return -EAGAIN;
        }
    }
}

static ssize_t timerfd_write(const void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EINVAL;
}

static int timerfd_fstat(int fd, struct stat *st)
{
    (void)fd;
    memset(st, 0, sizeof(*st));
    st->st_mode = 0600;
    st->st_nlink = 1;
    return 0;
}

static unsigned timerfd_ready(int fd, void *obj, bool arm)
{
    (void)fd, (void)arm;
    struct timerfd *t = obj;
    return (t->next != 0 && runtime_now_ns() >= t->next) ? POLLIN : 0;
}

static void timerfd_release(void *obj)
{
    struct timerfd *t = obj;
    if (--t->refs == 0) {
        free(t);
    }
}

static void timerfd_retain(void *obj)
{
    ((struct timerfd *)obj)->refs++;
}

static const struct fd_ops timerfd_ops = {
    .ready = timerfd_ready, .release = timerfd_release, .retain = timerfd_retain};

/* The deadline a poller must wake at for `fd`, if it is a timerfd it reads; else 0. */
static uint64_t timerfd_deadline(int fd, unsigned events)
{
    if (!(events & POLLIN) || fds_kind(fd) != FD_TIMERFD) {
        return 0;
    }
    return ((struct timerfd *)fds_obj(fd))->next;
}

static uint64_t earliest(uint64_t a, uint64_t b)
{
    if (a == 0) {
        return b;
    }
    return (b == 0 || a < b) ? a : b;
}

static long sys_timerfd_create(long clock, long flags, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (clock != CLOCK_MONOTONIC && clock != CLOCK_REALTIME && clock != CLOCK_BOOTTIME) {
        return -EINVAL;
    }
    if (flags & ~(TFD_NONBLOCK | TFD_CLOEXEC)) {
        return -EINVAL;
    }
    struct timerfd *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return -ENOMEM;
    }
    *t = (struct timerfd){.refs = 1, .clock = clock};
    int fd = fds_open(FD_TIMERFD, t, O_RDONLY | (int)(flags & (O_NONBLOCK | O_CLOEXEC)), timerfd_read,
                      timerfd_write, timerfd_fstat);
    if (fd < 0) {
        free(t);
    }
    return fd;
}

static uint64_t ts_ns(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * NS_PER_S + (uint64_t)ts->tv_nsec;
}

static void ns_ts(uint64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / NS_PER_S);
    ts->tv_nsec = (long)(ns % NS_PER_S);
}

static void timerfd_current(const struct timerfd *t, struct itimerspec *cur)
{
    uint64_t now = runtime_now_ns();
    ns_ts(t->next > now ? t->next - now : (t->next ? 1 : 0), &cur->it_value);
    ns_ts(t->interval, &cur->it_interval);
}

static long sys_timerfd_settime(long fd, long flags, long newp, long oldp, long e, long f)
{
    (void)e, (void)f;
    if (fds_kind((int)fd) != FD_TIMERFD) {
        return -EINVAL;
    }
    struct timerfd *t = fds_obj((int)fd);
    const struct itimerspec *nv = (const struct itimerspec *)newp;
    if (nv == NULL) {
        return -EFAULT;
    }
    if (nv->it_value.tv_nsec < 0 || nv->it_value.tv_nsec >= (long)NS_PER_S || nv->it_value.tv_sec < 0 ||
        nv->it_interval.tv_nsec < 0 || nv->it_interval.tv_nsec >= (long)NS_PER_S ||
        nv->it_interval.tv_sec < 0) {
        return -EINVAL;
    }
    if (oldp != 0) {
        timerfd_current(t, (struct itimerspec *)oldp);
    }
    uint64_t value = ts_ns(&nv->it_value);
    t->interval = ts_ns(&nv->it_interval);
    if (value == 0) {
        t->next = 0;
    } else if (flags & TFD_TIMER_ABSTIME) {
        uint64_t offset = t->clock == CLOCK_REALTIME ? runtime_realtime_offset_ns : 0;
        t->next = value > offset ? value - offset : 1;
    } else {
        t->next = runtime_now_ns() + value;
    }
    runtime_io_changed(); /* pollers watching it recompute their deadline */
    return 0;
}

static long sys_timerfd_gettime(long fd, long curp, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (fds_kind((int)fd) != FD_TIMERFD) {
        return -EINVAL;
    }
    timerfd_current(fds_obj((int)fd), (struct itimerspec *)curp);
    return 0;
}

/* ---- epoll ---- */

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
                *deadline = earliest(*deadline, timerfd_deadline(fd, it->events));
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

static int epoll_fstat(int fd, struct stat *st)
{
    return timerfd_fstat(fd, st);
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

static const struct fd_ops epoll_ops = {
    .ready = epoll_ready, .release = epoll_release, .retain = epoll_retain};

void poll_forget_fd(int fd)
{
    for (int i = 0; i < MAX_EPOLLS; i++) {
        if (epolls[i] != NULL && fd >= 0 && fd < MAX_FDS) {
            epolls[i]->items[fd].used = false;
        }
    }
}

static long sys_epoll_create1(long flags, long b, long c, long d, long e, long f)
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
    int fd =
        fds_open(FD_EPOLL, ep, O_RDONLY | (int)(flags & O_CLOEXEC), epoll_read, epoll_write, epoll_fstat);
    if (fd < 0) {
        free(ep);
        return fd;
    }
    epolls[slot] = ep;
    return fd;
}

static long sys_epoll_ctl(long epfd, long op, long fd, long evp, long e, long f)
{
    (void)e, (void)f;
    if (fds_kind((int)epfd) != FD_EPOLL || fd == epfd) {
        return -EINVAL;
    }
    if (fd < 0 || fd >= MAX_FDS || posix_fd_entry((int)fd) == NULL) {
        return -EBADF;
    }
    if (fds_kind((int)fd) == FD_NONE || fds_kind((int)fd) == FD_DIR) {
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
    runtime_io_changed(); /* a poller parked on this set must look again */
    return 0;
}

/* Common tail of every poll: nothing ready yet. Returns false when the caller must stop. */
static bool poll_park(long timeout_ms, uint64_t deadline, uint64_t tfd_deadline)
{
    if (timeout_ms == 0) {
        microkit_cothread_yield();
        return false;
    }
    int r = threads_wait(&runtime_io_waitq, NULL, earliest(deadline, tfd_deadline));
    if (r == -EAGAIN) {
        return false; /* the root cannot wait */
    }
    return !(r == -ETIMEDOUT && deadline != 0 && runtime_now_ns() >= deadline);
}

static uint64_t deadline_ms(long timeout_ms)
{
    return timeout_ms > 0 ? runtime_now_ns() + (uint64_t)timeout_ms * NS_PER_MS : 0;
}

static long sys_epoll_pwait(long epfd, long eventsp, long max, long timeout_ms, long sigmask, long f)
{
    (void)sigmask, (void)f;
    if (fds_kind((int)epfd) != FD_EPOLL) {
        return -EINVAL;
    }
    if (max <= 0) {
        return -EINVAL;
    }
    struct epoll *ep = fds_obj((int)epfd);
    struct epoll_event *out = (struct epoll_event *)eventsp;
    uint64_t deadline = deadline_ms(timeout_ms);
    for (;;) {
        uint64_t tfd = 0;
        int n = epoll_scan(ep, out, (int)max, timeout_ms != 0, &tfd);
        if (n > 0 || !poll_park(timeout_ms, deadline, tfd)) {
            return n > 0 ? n : epoll_scan(ep, out, (int)max, false, NULL);
        }
        if (fds_kind((int)epfd) != FD_EPOLL || fds_obj((int)epfd) != ep) {
            return -EBADF; /* closed while we waited */
        }
    }
}

/* ---- ppoll and pselect6 ---- */

static long timeout_of(const struct timespec *ts)
{
    if (ts == NULL) {
        return -1;
    }
    uint64_t ns = ts_ns(ts);
    if (ns == 0) {
        return 0;
    }
    return (long)((ns + NS_PER_MS - 1) / NS_PER_MS);
}

static long sys_ppoll(long fdsp, long nfds, long tsp, long sigmask, long sigsetsize, long f)
{
    (void)sigmask, (void)sigsetsize, (void)f;
    struct pollfd *fds = (struct pollfd *)fdsp;
    const struct timespec *ts = (const struct timespec *)tsp;
    if (ts != NULL && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= (long)NS_PER_S)) {
        return -EINVAL;
    }
    long timeout_ms = timeout_of(ts);
    uint64_t deadline = (ts != NULL && timeout_ms != 0) ? runtime_now_ns() + ts_ns(ts) : 0;
    for (;;) {
        uint64_t tfd = 0;
        long n = 0;
        for (long i = 0; i < nfds; i++) {
            fds[i].revents = 0;
            if (fds[i].fd < 0) {
                continue;
            }
            unsigned r = fds_ready(fds[i].fd, timeout_ms != 0);
            fds[i].revents = (short)(r & ((unsigned)fds[i].events | POLLERR | POLLHUP | POLLNVAL));
            if (fds[i].revents) {
                n++;
            } else {
                tfd = earliest(tfd, timerfd_deadline(fds[i].fd, (unsigned)fds[i].events));
            }
        }
        if (n > 0 || !poll_park(timeout_ms, deadline, tfd)) {
            return n;
        }
    }
}

struct sigset_arg {
    const void *set;
    size_t size;
};

static long sys_pselect6(long nfds, long rdp, long wrp, long exp, long tsp, long sigp)
{
    (void)sigp;
    fd_set *rd = (fd_set *)rdp, *wr = (fd_set *)wrp, *ex = (fd_set *)exp;
    const struct timespec *ts = (const struct timespec *)tsp;
    if (nfds < 0 || nfds > FD_SETSIZE) {
        return -EINVAL;
    }
    if (ts != NULL && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= (long)NS_PER_S)) {
        return -EINVAL;
    }
    long timeout_ms = timeout_of(ts);
    if (nfds == 0 && ts == NULL) {
        struct waitq never = {0};
        for (;;) {
            if (threads_wait(&never, NULL, 0) == -EAGAIN) {
                return -EINTR;
            }
        }
    }
    uint64_t deadline = (ts != NULL && timeout_ms != 0) ? runtime_now_ns() + ts_ns(ts) : 0;
    for (;;) {
        fd_set ord, owr, oex;
        FD_ZERO(&ord);
        FD_ZERO(&owr);
        FD_ZERO(&oex);
        uint64_t tfd = 0;
        long n = 0;
        for (int fd = 0; fd < nfds; fd++) {
            bool want_rd = rd && FD_ISSET(fd, rd), want_wr = wr && FD_ISSET(fd, wr);
            bool want_ex = ex && FD_ISSET(fd, ex);
            if (!want_rd && !want_wr && !want_ex) {
                continue;
            }
            unsigned r = fds_ready(fd, timeout_ms != 0);
            if (r & POLLNVAL) {
                return -EBADF;
            }
            if (want_rd && (r & (POLLIN | POLLHUP | POLLERR))) {
                FD_SET(fd, &ord);
                n++;
            } else if (want_rd) {
                tfd = earliest(tfd, timerfd_deadline(fd, POLLIN));
            }
            if (want_wr && (r & (POLLOUT | POLLERR))) {
                FD_SET(fd, &owr);
                n++;
            }
            if (want_ex && (r & POLLPRI)) {
                FD_SET(fd, &oex);
                n++;
            }
        }
        if (n > 0 || !poll_park(timeout_ms, deadline, tfd)) {
            if (rd) {
                *rd = ord;
            }
            if (wr) {
                *wr = owr;
            }
            if (ex) {
                *ex = oex;
            }
            return n;
        }
    }
}

void poll_init(void)
{
    fds_register_kind(FD_TIMERFD, &timerfd_ops);
    fds_register_kind(FD_EPOLL, &epoll_ops);
    runtime_define_syscall(SYS_timerfd_create, sys_timerfd_create);
    runtime_define_syscall(SYS_timerfd_settime, sys_timerfd_settime);
    runtime_define_syscall(SYS_timerfd_gettime, sys_timerfd_gettime);
    runtime_define_syscall(SYS_epoll_create1, sys_epoll_create1);
    runtime_define_syscall(SYS_epoll_ctl, sys_epoll_ctl);
    runtime_define_syscall(SYS_epoll_pwait, sys_epoll_pwait);
    runtime_define_syscall(SYS_ppoll, sys_ppoll);
    runtime_define_syscall(SYS_pselect6, sys_pselect6);
}
