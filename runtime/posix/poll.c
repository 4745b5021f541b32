/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Waiting for file descriptors: ppoll (ERTS's fallback set, for regular files that epoll
 * refuses) and pselect6 (the main thread parks in select(0, ...) for good), and the
 * parking every poll shares (epoll is fd_epoll.c).
 *
 * All are level-triggered scans over fds_ready(): a waiter that finds nothing parks on
 * the I/O wait queue until an fd changes, a notification arrives, its timeout passes or
 * the earliest timer it watches expires (fds_deadline). A zero-timeout poll yields once,
 * so a scheduler polling between reductions lets other cothreads (and notifications) in.
 */
#include <errno.h>
#include <poll.h>
#include <sys/select.h>
#include <time.h>

#include <libmicrokitco.h>

#include <chrysopolis/clocks.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/poll.h>
#include <chrysopolis/waitq.h>

uint64_t poll_earliest(uint64_t a, uint64_t b)
{
    if (a == 0) {
        return b;
    }
    return (b == 0 || a < b) ? a : b;
}

bool poll_park(long timeout_ms, uint64_t deadline, uint64_t tfd_deadline)
{
    if (timeout_ms == 0) {
        microkit_cothread_yield();
        return false;
    }
    int r = waitq_wait(&waitq_io, NULL, poll_earliest(deadline, tfd_deadline));
    if (r == -EAGAIN) {
        return false; /* the root cannot wait */
    }
    return !(r == -ETIMEDOUT && deadline != 0 && clocks_now_ns() >= deadline);
}

uint64_t poll_deadline_ms(long timeout_ms)
{
    return timeout_ms > 0 ? clocks_now_ns() + (uint64_t)timeout_ms * NS_IN_MS : 0;
}

static long timeout_of(const struct timespec *ts)
{
    if (ts == NULL) {
        return -1;
    }
    uint64_t ns = clocks_timespec_ns(ts);
    if (ns == 0) {
        return 0;
    }
    return (long)((ns + NS_IN_MS - 1) / NS_IN_MS);
}

long sys_ppoll(long fdsp, long nfds, long tsp, long sigmask, long sigsetsize, long f)
{
    (void)sigmask, (void)sigsetsize, (void)f;
    struct pollfd *fds = (struct pollfd *)fdsp;
    const struct timespec *ts = (const struct timespec *)tsp;
    if (ts != NULL && !clocks_timespec_valid(ts)) {
        return -EINVAL;
    }
    long timeout_ms = timeout_of(ts);
    uint64_t deadline = (ts != NULL && timeout_ms != 0) ? clocks_now_ns() + clocks_timespec_ns(ts) : 0;
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
                tfd = poll_earliest(tfd, fds_deadline(fds[i].fd, (unsigned)fds[i].events));
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

long sys_pselect6(long nfds, long rdp, long wrp, long exp, long tsp, long sigp)
{
    (void)sigp;
    fd_set *rd = (fd_set *)rdp, *wr = (fd_set *)wrp, *ex = (fd_set *)exp;
    const struct timespec *ts = (const struct timespec *)tsp;
    if (nfds < 0 || nfds > FD_SETSIZE) {
        return -EINVAL;
    }
    if (ts != NULL && !clocks_timespec_valid(ts)) {
        return -EINVAL;
    }
    long timeout_ms = timeout_of(ts);
    if (nfds == 0 && ts == NULL) {
        struct waitq never = {0};
        for (;;) {
            if (waitq_wait(&never, NULL, 0) == -EAGAIN) {
                return -EINTR;
            }
        }
    }
    uint64_t deadline = (ts != NULL && timeout_ms != 0) ? clocks_now_ns() + clocks_timespec_ns(ts) : 0;
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
                tfd = poll_earliest(tfd, fds_deadline(fd, POLLIN));
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
