/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Pipes (ERTS's wake-up pipe, the signal pipe) and socketpairs (the forker's; each end
 * reads one pipe and writes the other), in memory. A blocking read or write parks on
 * the I/O wait queue; every transfer wakes it, since it can make another fd ready.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrysopolis/fd_pipe.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/waitq.h>

#define PIPE_SIZE 4096 /* also PIPE_BUF: writes up to this size are atomic */

struct pipe {
    unsigned readers, writers;
    size_t head, count;
    char buf[PIPE_SIZE];
};

/* A socketpair end: reads from `in`, writes to `out` (the peer's `in`). */
struct sock {
    unsigned refs;
    struct pipe *in, *out;
};

static ssize_t pipe_read_from(struct pipe *p, char *buf, size_t len, int fd)
{
    while (p->count == 0) {
        if (p->writers == 0) {
            return 0;
        }
        if (fds_nonblocking(fd)) {
            return -EAGAIN;
        }
        waitq_wait(&waitq_io, NULL, 0);
    }
    size_t n = len < p->count ? len : p->count;
    for (size_t i = 0; i < n; i++) {
        buf[i] = p->buf[(p->head + i) % PIPE_SIZE];
    }
    p->head = (p->head + n) % PIPE_SIZE;
    p->count -= n;
    waitq_io_changed();
    return (ssize_t)n;
}

static ssize_t pipe_write_to(struct pipe *p, const char *buf, size_t len, int fd)
{
    size_t done = 0;
    while (done < len) {
        if (p->readers == 0) {
            return done ? (ssize_t)done : -EPIPE;
        }
        size_t space = PIPE_SIZE - p->count;
        size_t left = len - done;
        /* up to PIPE_SIZE bytes go in at once or not at all */
        if (space == 0 || (len <= PIPE_SIZE && space < left)) {
            if (fds_nonblocking(fd)) {
                return done ? (ssize_t)done : -EAGAIN;
            }
            waitq_wait(&waitq_io, NULL, 0);
            continue;
        }
        size_t n = left < space ? left : space;
        for (size_t i = 0; i < n; i++) {
            p->buf[(p->head + p->count + i) % PIPE_SIZE] = buf[done + i];
        }
        p->count += n;
        done += n;
        waitq_io_changed();
    }
    return (ssize_t)done;
}

static unsigned pipe_in_ready(const struct pipe *p)
{
    return (p->count > 0 ? POLLIN : 0) | (p->writers == 0 ? POLLHUP : 0);
}

static unsigned pipe_out_ready(const struct pipe *p)
{
    return p->readers == 0 ? POLLERR : (p->count < PIPE_SIZE ? POLLOUT : 0);
}

static void pipe_free_if_unused(struct pipe *p)
{
    if (p->readers == 0 && p->writers == 0) {
        free(p);
    }
}

static ssize_t pipe_read(void *buf, size_t len, int fd)
{
    return pipe_read_from(fds_obj(fd), buf, len, fd);
}

static ssize_t pipe_write(const void *buf, size_t len, int fd)
{
    return pipe_write_to(fds_obj(fd), buf, len, fd);
}

static int pipe_fstat(int fd, struct stat *st)
{
    (void)fd;
    return fds_stat_mode(st, S_IFIFO | 0600);
}

static unsigned pipe_read_ready(int fd, void *obj, bool arm)
{
    (void)fd, (void)arm;
    return pipe_in_ready(obj);
}

static unsigned pipe_write_ready(int fd, void *obj, bool arm)
{
    (void)fd, (void)arm;
    return pipe_out_ready(obj);
}

static void pipe_release_reader(void *obj)
{
    struct pipe *p = obj;
    p->readers--;
    pipe_free_if_unused(p);
}

static void pipe_release_writer(void *obj)
{
    struct pipe *p = obj;
    p->writers--;
    pipe_free_if_unused(p);
}

static void pipe_retain_reader(void *obj)
{
    ((struct pipe *)obj)->readers++;
}

static void pipe_retain_writer(void *obj)
{
    ((struct pipe *)obj)->writers++;
}

static const struct fd_ops pipe_read_ops = {.name = "pipe (read end)",
                                            .read = pipe_read,
                                            .fstat = pipe_fstat,
                                            .ready = pipe_read_ready,
                                            .release = pipe_release_reader,
                                            .retain = pipe_retain_reader,
                                            .stream = true};
static const struct fd_ops pipe_write_ops = {.name = "pipe (write end)",
                                             .write = pipe_write,
                                             .fstat = pipe_fstat,
                                             .ready = pipe_write_ready,
                                             .release = pipe_release_writer,
                                             .retain = pipe_retain_writer,
                                             .stream = true};

long sys_pipe2(long fdsp, long flags, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (flags & ~(O_NONBLOCK | O_CLOEXEC)) {
        return -EINVAL;
    }
    struct pipe *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    int rd = fds_open(&pipe_read_ops, p, O_RDONLY | fds_open_flags(flags));
    if (rd < 0) {
        free(p);
        return rd;
    }
    p->readers = 1;
    int wr = fds_open(&pipe_write_ops, p, O_WRONLY | fds_open_flags(flags));
    if (wr < 0) {
        close(rd);
        return wr;
    }
    p->writers = 1;
    ((int *)fdsp)[0] = rd;
    ((int *)fdsp)[1] = wr;
    return 0;
}

static ssize_t sock_read(void *buf, size_t len, int fd)
{
    return pipe_read_from(((struct sock *)fds_obj(fd))->in, buf, len, fd);
}

static ssize_t sock_write(const void *buf, size_t len, int fd)
{
    return pipe_write_to(((struct sock *)fds_obj(fd))->out, buf, len, fd);
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
    return pipe_in_ready(s->in) | pipe_out_ready(s->out);
}

static void sock_release(void *obj)
{
    struct sock *s = obj;
    if (--s->refs > 0) {
        return;
    }
    s->in->readers--;
    s->out->writers--;
    pipe_free_if_unused(s->in);
    pipe_free_if_unused(s->out);
    free(s);
}

static void sock_retain(void *obj)
{
    ((struct sock *)obj)->refs++;
}

static const struct fd_ops sock_ops = {.name = "socketpair",
                                       .read = sock_read,
                                       .write = sock_write,
                                       .fstat = sock_fstat,
                                       .ready = sock_ready,
                                       .release = sock_release,
                                       .retain = sock_retain,
                                       .stream = true};

long sys_socketpair(long domain, long type, long protocol, long svp, long e, long f)
{
    (void)protocol, (void)e, (void)f;
    if (domain != AF_UNIX) {
        return -EAFNOSUPPORT;
    }
    if ((type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) != SOCK_STREAM) {
        return -EPROTONOSUPPORT;
    }
    int flags = O_RDWR | ((type & SOCK_NONBLOCK) ? O_NONBLOCK : 0) | ((type & SOCK_CLOEXEC) ? O_CLOEXEC : 0);
    struct pipe *ab = calloc(1, sizeof(*ab)), *ba = calloc(1, sizeof(*ba));
    struct sock *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    if (!ab || !ba || !a || !b) {
        free(ab), free(ba), free(a), free(b);
        return -ENOMEM;
    }
    *a = (struct sock){.refs = 1, .in = ba, .out = ab};
    *b = (struct sock){.refs = 1, .in = ab, .out = ba};
    ab->readers = ab->writers = ba->readers = ba->writers = 1;
    int fa = fds_open(&sock_ops, a, flags);
    if (fa < 0) {
        free(ab), free(ba), free(a), free(b);
        return fa;
    }
    int fb = fds_open(&sock_ops, b, flags);
    if (fb < 0) {
        sock_release(b);
        close(fa);
        return fb;
    }
    ((int *)svp)[0] = fa;
    ((int *)svp)[1] = fb;
    return 0;
}
