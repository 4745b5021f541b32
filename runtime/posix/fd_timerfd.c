/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * timerfd: how ERTS's poll thread times out. A timer on the monotonic clock (REALTIME
 * deadlines are rebased onto it); pollers that watch one wake at its next expiry
 * (fd_ops.deadline), and a blocking read parks on the I/O wait queue until then.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>

#include <chrysopolis/clocks.h>
#include <chrysopolis/fd_timerfd.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/waitq.h>

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
        uint64_t n = timerfd_take(t, clocks_now_ns());
        if (n > 0) {
            memcpy(buf, &n, sizeof(n));
            return sizeof(n);
        }
        if (fds_nonblocking(fd)) {
            return -EAGAIN;
        }
        if (waitq_wait(&waitq_io, NULL, t->next) == -EAGAIN) {
            return -EAGAIN;
        }
    }
}

static ssize_t timerfd_write(const void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EINVAL;
}

int fd_timerfd_fstat(int fd, struct stat *st)
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
    return (t->next != 0 && clocks_now_ns() >= t->next) ? POLLIN : 0;
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

/* The deadline a poller reading it must wake at. */
static uint64_t timerfd_deadline(void *obj)
{
    return ((struct timerfd *)obj)->next;
}

static const struct fd_ops timerfd_ops = {.name = "timerfd",
                                          .read = timerfd_read,
                                          .write = timerfd_write,
                                          .fstat = fd_timerfd_fstat,
                                          .ready = timerfd_ready,
                                          .release = timerfd_release,
                                          .retain = timerfd_retain,
                                          .deadline = timerfd_deadline};

static bool is_timerfd(long fd)
{
    return fds_ops((int)fd) == &timerfd_ops;
}

long sys_timerfd_create(long clock, long flags, long c, long d, long e, long f)
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
    int fd = fds_open(&timerfd_ops, t, O_RDONLY | (int)(flags & (O_NONBLOCK | O_CLOEXEC)));
    if (fd < 0) {
        free(t);
    }
    return fd;
}

static void timerfd_current(const struct timerfd *t, struct itimerspec *cur)
{
    uint64_t now = clocks_now_ns();
    clocks_ns_timespec(t->next > now ? t->next - now : (t->next ? 1 : 0), &cur->it_value);
    clocks_ns_timespec(t->interval, &cur->it_interval);
}

long sys_timerfd_settime(long fd, long flags, long newp, long oldp, long e, long f)
{
    (void)e, (void)f;
    if (!is_timerfd(fd)) {
        return -EINVAL;
    }
    struct timerfd *t = fds_obj((int)fd);
    const struct itimerspec *nv = (const struct itimerspec *)newp;
    if (nv == NULL) {
        return -EFAULT;
    }
    if (!clocks_timespec_valid(&nv->it_value) || !clocks_timespec_valid(&nv->it_interval)) {
        return -EINVAL;
    }
    if (oldp != 0) {
        timerfd_current(t, (struct itimerspec *)oldp);
    }
    uint64_t value = clocks_timespec_ns(&nv->it_value);
    t->interval = clocks_timespec_ns(&nv->it_interval);
    if (value == 0) {
        t->next = 0;
    } else if (flags & TFD_TIMER_ABSTIME) {
        uint64_t offset = t->clock == CLOCK_REALTIME ? clocks_realtime_offset_ns : 0;
        t->next = value > offset ? value - offset : 1;
    } else {
        t->next = clocks_now_ns() + value;
    }
    waitq_io_changed(); /* pollers watching it recompute their deadline */
    return 0;
}

long sys_timerfd_gettime(long fd, long curp, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (!is_timerfd(fd)) {
        return -EINVAL;
    }
    timerfd_current(fds_obj((int)fd), (struct itimerspec *)curp);
    return 0;
}
