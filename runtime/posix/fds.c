/*
 * File descriptors the adapter implements itself, in LionsOS's fd table: the console
 * (fds 0-2, which LionsOS leaves without close/dup3/fstat), pipes (ERTS's wake-up pipe,
 * the signal pipe), socketpairs (the forker's), /dev/null and /dev/urandom. epoll,
 * timerfd (poll.c) and directory fds (fsops.c) register here too, so poll(2) can ask any
 * fd what is ready. A blocking read or write parks on the I/O wait queue; every change
 * that can make another fd ready wakes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <lions/posix/fd.h>
#include <sddf/serial/queue.h>

#include "adapter.h"
#include "chrysopolis.h"

#define PIPE_SIZE 4096 /* also PIPE_BUF: writes up to this size are atomic */

struct fd_slot {
    enum fd_kind kind;
    void *obj;
};

static struct fd_slot slots[MAX_FDS];
static const struct fd_ops *kind_ops[FD_DIR + 1];

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

static bool valid(int fd)
{
    return fd >= 0 && fd < MAX_FDS;
}

enum fd_kind fds_kind(int fd)
{
    return valid(fd) && posix_fd_entry(fd) != NULL ? slots[fd].kind : FD_NONE;
}

void *fds_obj(int fd)
{
    return valid(fd) ? slots[fd].obj : NULL;
}

bool fds_nonblocking(int fd)
{
    fd_entry_t *e = posix_fd_entry(fd);
    return e != NULL && (e->flags & O_NONBLOCK);
}

void fds_register_kind(enum fd_kind kind, const struct fd_ops *ops)
{
    kind_ops[kind] = ops;
}

unsigned fds_ready(int fd, bool arm)
{
    if (!valid(fd) || posix_fd_entry(fd) == NULL) {
        return POLLNVAL;
    }
    const struct fd_ops *ops = kind_ops[slots[fd].kind];
    if (slots[fd].kind == FD_NONE || ops == NULL || ops->ready == NULL) {
        return POLLIN | POLLOUT; /* a LionsOS file never blocks */
    }
    return ops->ready(fd, slots[fd].obj, arm);
}

static int our_close(int fd)
{
    const struct fd_ops *ops = kind_ops[slots[fd].kind];
    void *obj = slots[fd].obj;
    poll_forget_fd(fd);
    slots[fd] = (struct fd_slot){0};
    posix_fd_deallocate(fd);
    if (ops != NULL && ops->release != NULL) {
        ops->release(obj);
    }
    runtime_io_changed();
    return 0;
}

static int our_dup3(int oldfd, int newfd)
{
    const struct fd_ops *ops = kind_ops[slots[oldfd].kind];
    slots[newfd] = slots[oldfd];
    if (ops != NULL && ops->retain != NULL) {
        ops->retain(slots[newfd].obj);
    }
    return 0;
}

int fds_open(enum fd_kind kind, void *obj, int flags, ssize_t (*read)(void *, size_t, int),
             ssize_t (*write)(const void *, size_t, int), int (*fstat)(int, struct stat *))
{
    int fd = posix_fd_allocate();
    if (fd < 0) {
        return -EMFILE;
    }
    fd_entry_t *e = posix_fd_entry(fd);
    *e = (fd_entry_t){
        .read = read, .write = write, .close = our_close, .dup3 = our_dup3, .fstat = fstat, .flags = flags};
    slots[fd] = (struct fd_slot){.kind = kind, .obj = obj};
    return fd;
}

ssize_t fd_no_read(void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EBADF;
}

ssize_t fd_no_write(const void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EBADF;
}

static int stat_mode(struct stat *st, mode_t mode)
{
    memset(st, 0, sizeof(*st));
    st->st_mode = mode;
    st->st_nlink = 1;
    st->st_blksize = PIPE_SIZE;
    return 0;
}

/* ---- the console ---- */

static int console_fstat(int fd, struct stat *st)
{
    (void)fd;
    stat_mode(st, S_IFCHR | 0620);
    st->st_rdev = 0x8800; /* a pty-like device number: a character device, not a file */
    return 0;
}

static unsigned console_ready(int fd, void *obj, bool arm)
{
    (void)obj;
    fd_entry_t *e = posix_fd_entry(fd);
    unsigned ev = (e->write != fd_no_write) ? POLLOUT : 0;
    if (e->read == fd_no_read || serial_config.rx.queue.vaddr == NULL) {
        return ev;
    }
    serial_queue_handle_t *rx = &serial_rx_queue_handle;
    if (!serial_queue_empty(rx, rx->queue->head)) {
        return ev | POLLIN;
    }
    if (arm) {
        /* the RX virtualiser only notifies a consumer that asked; re-check after asking */
        serial_request_consumer_signal(rx);
        if (!serial_queue_empty(rx, rx->queue->head)) {
            serial_cancel_consumer_signal(rx);
            return ev | POLLIN;
        }
    }
    return ev;
}

static const struct fd_ops console_ops = {.ready = console_ready};

static void console_fds_init(void)
{
    for (int fd = STDIN_FD; fd <= STDERR_FD; fd++) {
        fd_entry_t *e = posix_fd_entry(fd);
        if (e == NULL) {
            continue;
        }
        if (e->read == NULL) {
            e->read = fd_no_read;
        }
        if (e->write == NULL) {
            e->write = fd_no_write;
        }
        e->close = our_close;
        e->dup3 = our_dup3;
        e->fstat = console_fstat;
        slots[fd].kind = FD_CONSOLE;
    }
    fds_register_kind(FD_CONSOLE, &console_ops);
}

/* ---- pipes and socketpairs ---- */

static ssize_t pipe_read_from(struct pipe *p, char *buf, size_t len, int fd)
{
    while (p->count == 0) {
        if (p->writers == 0) {
            return 0;
        }
        if (fds_nonblocking(fd)) {
            return -EAGAIN;
        }
        threads_wait(&runtime_io_waitq, NULL, 0);
    }
    size_t n = len < p->count ? len : p->count;
    for (size_t i = 0; i < n; i++) {
        buf[i] = p->buf[(p->head + i) % PIPE_SIZE];
    }
    p->head = (p->head + n) % PIPE_SIZE;
    p->count -= n;
    runtime_io_changed();
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
            threads_wait(&runtime_io_waitq, NULL, 0);
            continue;
        }
        size_t n = left < space ? left : space;
        for (size_t i = 0; i < n; i++) {
            p->buf[(p->head + p->count + i) % PIPE_SIZE] = buf[done + i];
        }
        p->count += n;
        done += n;
        runtime_io_changed();
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
    return stat_mode(st, S_IFIFO | 0600);
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

static const struct fd_ops pipe_read_ops = {
    .ready = pipe_read_ready, .release = pipe_release_reader, .retain = pipe_retain_reader};
static const struct fd_ops pipe_write_ops = {
    .ready = pipe_write_ready, .release = pipe_release_writer, .retain = pipe_retain_writer};

static int open_flags(long flags)
{
    return ((flags & O_NONBLOCK) ? O_NONBLOCK : 0) | ((flags & O_CLOEXEC) ? O_CLOEXEC : 0);
}

static long sys_pipe2(long fdsp, long flags, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (flags & ~(O_NONBLOCK | O_CLOEXEC)) {
        return -EINVAL;
    }
    struct pipe *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    int rd = fds_open(FD_PIPE_READ, p, O_RDONLY | open_flags(flags), pipe_read, fd_no_write, pipe_fstat);
    if (rd < 0) {
        free(p);
        return rd;
    }
    p->readers = 1;
    int wr = fds_open(FD_PIPE_WRITE, p, O_WRONLY | open_flags(flags), fd_no_read, pipe_write, pipe_fstat);
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
    return stat_mode(st, S_IFSOCK | 0777);
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

static const struct fd_ops sock_ops = {.ready = sock_ready, .release = sock_release, .retain = sock_retain};

static long sys_socketpair(long domain, long type, long protocol, long svp, long e, long f)
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
    int fa = fds_open(FD_SOCKET, a, flags, sock_read, sock_write, sock_fstat);
    if (fa < 0) {
        free(ab), free(ba), free(a), free(b);
        return fa;
    }
    int fb = fds_open(FD_SOCKET, b, flags, sock_read, sock_write, sock_fstat);
    if (fb < 0) {
        sock_release(b);
        close(fa);
        return fb;
    }
    ((int *)svp)[0] = fa;
    ((int *)svp)[1] = fb;
    return 0;
}

/* dup and F_DUPFD: LionsOS has dup3 only. The lowest free fd, then LionsOS's dup3. */
static long dup_from(long oldfd, long min, bool cloexec)
{
    if (posix_fd_entry((int)oldfd) == NULL) {
        return -EBADF;
    }
    for (int fd = (int)min; fd < MAX_FDS; fd++) {
        if (posix_fd_entry(fd) == NULL) {
            return runtime_lions_syscall(SYS_dup3, oldfd, fd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
        }
    }
    return -EMFILE;
}

static long sys_dup(long oldfd, long b, long c, long d, long e, long f)
{
    (void)b, (void)c, (void)d, (void)e, (void)f;
    return dup_from(oldfd, 0, false);
}

static long sys_fcntl(long fd, long cmd, long arg, long d, long e, long f)
{
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
        return arg < 0 ? -EINVAL : dup_from(fd, arg, cmd == F_DUPFD_CLOEXEC);
    }
    return runtime_lions_syscall(SYS_fcntl, fd, cmd, arg, d, e, f);
}

/* No networking: ERTS probes and falls back. */
static long sys_socket(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    return -EAFNOSUPPORT;
}

void fds_init(void)
{
    console_fds_init();
    fds_register_kind(FD_PIPE_READ, &pipe_read_ops);
    fds_register_kind(FD_PIPE_WRITE, &pipe_write_ops);
    fds_register_kind(FD_SOCKET, &sock_ops);
    runtime_define_syscall(SYS_pipe2, sys_pipe2);
    runtime_define_syscall(SYS_socketpair, sys_socketpair);
    runtime_define_syscall(SYS_socket, sys_socket);
    runtime_define_syscall(SYS_dup, sys_dup);
    runtime_define_syscall(SYS_fcntl, sys_fcntl);
}
