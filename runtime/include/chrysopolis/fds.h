/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fds.c: file descriptors the adapter implements itself, in LionsOS's fd table.
 *
 * Each kind of fd (the console, pipes, timerfds, directories, devices, epoll sets) is a
 * file of its own, runtime/posix/fd_<kind>.c, with a `struct fd_ops` that fds_open()
 * stores with every fd of that kind: what it is, how it reads, writes, stats, polls and
 * is shared. Adding a kind is a new fd_<kind>.c with its ops and its syscalls in the
 * table of runtime/posix/syscalls.c; nothing here changes. A LionsOS file has no ops.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

struct fd_ops {
    const char *name;
    /* LionsOS's fd entry calls (fds_open installs them; NULL: fds_no_read/fds_no_write). */
    ssize_t (*read)(void *buf, size_t len, int fd);
    ssize_t (*write)(const void *buf, size_t len, int fd);
    int (*fstat)(int fd, struct stat *st);
    /* poll(2) events ready now (POLLIN, POLLOUT, POLLHUP, POLLERR). With `arm`, ask the
     * source to notify us before the caller parks (the serial RX queue needs it). NULL:
     * always POLLIN | POLLOUT. */
    unsigned (*ready)(int fd, void *obj, bool arm);
    /* Drop one reference to obj (the fd itself is released by the caller). */
    void (*release)(void *obj);
    /* A dup of the fd shares obj: take a reference. */
    void (*retain)(void *obj);
    /* When it becomes readable by itself (a timer): monotonic ns, or 0 for never. */
    uint64_t (*deadline)(void *obj);
    /* ioctl(fd, req, arg) (sockets: FIONREAD, SIOCGIF*); NULL: LionsOS answers. FIONBIO
     * never reaches it (fd_console.c's sys_ioctl sets O_NONBLOCK for every fd). */
    long (*ioctl)(int fd, void *obj, unsigned long req, long arg);
    /* writev(fd, iov, cnt) in one go (sockets: one segment); NULL: one write per iovec. */
    long (*writev)(int fd, const struct iovec *iov, int cnt);
    /* lseek says ESPIPE (a stream); otherwise it succeeds and does nothing. */
    bool stream;
    /* pread/pwrite read and write, ignoring the offset (devices); otherwise ESPIPE. */
    bool offsetless;
    /* epoll_ctl refuses it with EPERM (always ready: Linux refuses directories). */
    bool not_pollable;
};

/* Allocate a LionsOS fd whose calls are ops's, with `obj`; returns the fd or -EMFILE.
 * `flags` are the open flags (O_ACCMODE, O_NONBLOCK, O_CLOEXEC). */
int fds_open(const struct fd_ops *ops, void *obj, int flags);
/* Make an fd LionsOS opened (the console's 0-2) ours: ops's close/dup3/fstat, its own
 * read and write kept. */
void fds_adopt(int fd, const struct fd_ops *ops);
/* The ops of an fd of ours; NULL for a LionsOS file or an unused fd. */
const struct fd_ops *fds_ops(int fd);
void *fds_obj(int fd);
bool fds_nonblocking(int fd);
/* Events ready on any fd (ours, the console or a LionsOS file); POLLNVAL if invalid. */
unsigned fds_ready(int fd, bool arm);
/* When `fd` becomes ready for `events` by itself (fd_ops.deadline), or 0. */
uint64_t fds_deadline(int fd, unsigned events);
/* Run `hook` for every fd of ours being closed (one hook: epoll forgets the fd). */
void fds_on_close(void (*hook)(int fd));

/* read/write of descriptors that refuse the direction: -EBADF. */
ssize_t fds_no_read(void *buf, size_t len, int fd);
ssize_t fds_no_write(const void *buf, size_t len, int fd);
/* A zeroed stat of `mode`, one link, a pipe-sized block. */
int fds_stat_mode(struct stat *st, mode_t mode);
/* The open flags O_NONBLOCK and O_CLOEXEC of `flags`. */
int fds_open_flags(long flags);

long sys_dup(long oldfd, long b, long c, long d, long e, long f);
long sys_fcntl(long fd, long cmd, long arg, long d, long e, long f);
