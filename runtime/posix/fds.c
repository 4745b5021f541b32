/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * File descriptors the adapter implements itself, in LionsOS's fd table. LionsOS keeps
 * the table (allocation, flags, dup3, the entry's read/write/close/fstat); we keep, per
 * fd, the ops of its kind and its object. Every kind is its own fd_<kind>.c behind
 * `struct fd_ops` (chrysopolis/fds.h): this file knows none of them, so that poll(2),
 * close and dup work the same on each and a new kind is a new file. dup and F_DUPFD
 * are here too: LionsOS has dup3 only.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>

#include <lions/posix/fd.h>

#include <chrysopolis/dispatch.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/waitq.h>

#define BLKSIZE 4096 /* a pipe's size */

struct fd_slot {
    const struct fd_ops *ops; /* NULL: not ours (a LionsOS file, or unused) */
    void *obj;
};

static struct fd_slot slots[MAX_FDS];
static void (*close_hook)(int fd);

static bool valid(int fd)
{
    return fd >= 0 && fd < MAX_FDS;
}

const struct fd_ops *fds_ops(int fd)
{
    return valid(fd) && posix_fd_entry(fd) != NULL ? slots[fd].ops : NULL;
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

void fds_on_close(void (*hook)(int fd))
{
    close_hook = hook;
}

unsigned fds_ready(int fd, bool arm)
{
    if (!valid(fd) || posix_fd_entry(fd) == NULL) {
        return POLLNVAL;
    }
    const struct fd_ops *ops = slots[fd].ops;
    if (ops == NULL || ops->ready == NULL) {
        return POLLIN | POLLOUT; /* a LionsOS file never blocks */
    }
    return ops->ready(fd, slots[fd].obj, arm);
}

uint64_t fds_deadline(int fd, unsigned events)
{
    const struct fd_ops *ops = fds_ops(fd);
    if (!(events & POLLIN) || ops == NULL || ops->deadline == NULL) {
        return 0;
    }
    return ops->deadline(slots[fd].obj);
}

static int our_close(int fd)
{
    const struct fd_ops *ops = slots[fd].ops;
    void *obj = slots[fd].obj;
    if (close_hook != NULL) {
        close_hook(fd);
    }
    slots[fd] = (struct fd_slot){0};
    posix_fd_deallocate(fd);
    if (ops != NULL && ops->release != NULL) {
        ops->release(obj);
    }
    waitq_io_changed();
    return 0;
}

static int our_dup3(int oldfd, int newfd)
{
    const struct fd_ops *ops = slots[oldfd].ops;
    slots[newfd] = slots[oldfd];
    if (ops != NULL && ops->retain != NULL) {
        ops->retain(slots[newfd].obj);
    }
    return 0;
}

int fds_open(const struct fd_ops *ops, void *obj, int flags)
{
    int fd = posix_fd_allocate();
    if (fd < 0) {
        return -EMFILE;
    }
    fd_entry_t *e = posix_fd_entry(fd);
    *e = (fd_entry_t){.read = ops->read ? ops->read : fds_no_read,
                      .write = ops->write ? ops->write : fds_no_write,
                      .close = our_close,
                      .dup3 = our_dup3,
                      .fstat = ops->fstat,
                      .flags = flags};
    slots[fd] = (struct fd_slot){.ops = ops, .obj = obj};
    return fd;
}

void fds_adopt(int fd, const struct fd_ops *ops)
{
    fd_entry_t *e = posix_fd_entry(fd);
    e->close = our_close;
    e->dup3 = our_dup3;
    e->fstat = ops->fstat;
    slots[fd] = (struct fd_slot){.ops = ops};
}

ssize_t fds_no_read(void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EBADF;
}

ssize_t fds_no_write(const void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EBADF;
}

int fds_stat_mode(struct stat *st, mode_t mode)
{
    memset(st, 0, sizeof(*st));
    st->st_mode = mode;
    st->st_nlink = 1;
    st->st_blksize = BLKSIZE;
    return 0;
}

int fds_open_flags(long flags)
{
    return ((flags & O_NONBLOCK) ? O_NONBLOCK : 0) | ((flags & O_CLOEXEC) ? O_CLOEXEC : 0);
}

/* dup and F_DUPFD: the lowest free fd from `min`, then LionsOS's dup3. */
static long dup_from(long oldfd, long min, bool cloexec)
{
    if (posix_fd_entry((int)oldfd) == NULL) {
        return -EBADF;
    }
    for (int fd = (int)min; fd < MAX_FDS; fd++) {
        if (posix_fd_entry(fd) == NULL) {
            return dispatch_lions(SYS_dup3, oldfd, fd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
        }
    }
    return -EMFILE;
}

long sys_dup(long oldfd, long b, long c, long d, long e, long f)
{
    (void)b, (void)c, (void)d, (void)e, (void)f;
    return dup_from(oldfd, 0, false);
}

long sys_fcntl(long fd, long cmd, long arg, long d, long e, long f)
{
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
        return arg < 0 ? -EINVAL : dup_from(fd, arg, cmd == F_DUPFD_CLOEXEC);
    }
    return dispatch_lions(SYS_fcntl, fd, cmd, arg, d, e, f);
}
