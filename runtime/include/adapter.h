/*
 * The ERTS runtime adapter: what its files (threads.c, memory.c, clocks.c, fds.c,
 * poll.c, fsops.c, entropy.c, syscalls.c) share. chrysopolis.h is the PD-level API.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* libc.c: LionsOS's own handler for syscall `n` (for interposers that chain to it). */
long runtime_lions_syscall(long n, long a, long b, long c, long d, long e, long f);

/* syscalls.c: claim every syscall slot of the adapter; call once after runtime_libc_init(). */
void runtime_adapter_init(void);

/* ---- threads.c: cothread waits ---- */

struct waiter;
/* Cothreads parked on something; zero-initialised is empty. */
struct waitq {
    struct waiter *head;
    struct waiter *tail;
};

/*
 * Park the calling cothread on `q` until threads_wake() reaches it (returns 0) or the
 * monotonic `deadline_ns` passes (-ETIMEDOUT); 0 means no deadline. `key` is what
 * threads_wake() matches (NULL matches any wake). The root thread never parks: there it
 * returns -EAGAIN at once. Callers re-check their condition: a wake can be early.
 */
int threads_wait(struct waitq *q, const volatile void *key, uint64_t deadline_ns);
/* Wake up to `max` cothreads parked on `q` with `key` (NULL: any key); returns how many. */
int threads_wake(struct waitq *q, const volatile void *key, int max);
/* Waiters for "some file descriptor may have changed": every poll/epoll/select and every
 * blocking pipe or timerfd read parks here; fd state changes and notifications wake it. */
extern struct waitq runtime_io_waitq;
void runtime_io_changed(void);
/* Park the calling cothread until the monotonic deadline (0; -EAGAIN from the root). */
int threads_sleep_until(uint64_t deadline_ns);
/* The monotonic clock every deadline is measured on, in ns since boot. */
uint64_t runtime_now_ns(void);
void threads_init_syscalls(void);

/* ---- clocks.c ---- */

/* Wall-clock time of monotonic 0, in ns since the Unix epoch. */
extern uint64_t runtime_realtime_offset_ns;
void clocks_init(void);

/* ---- memory.c ---- */
void memory_init(void);

/* ---- fds.c: descriptors the adapter implements itself ---- */

enum fd_kind {
    FD_NONE = 0, /* not ours: a LionsOS file, or unused */
    FD_CONSOLE, /* fds 0-2: the sDDF serial console */
    FD_PIPE_READ, /* also each end of a socketpair (a pipe pair) */
    FD_PIPE_WRITE,
    FD_SOCKET, /* one end of a socketpair */
    FD_DEVNULL,
    FD_URANDOM,
    FD_EPOLL,
    FD_TIMERFD,
    FD_DIR, /* a directory opened for getdents64 */
};

struct fd_ops {
    /* poll(2) events ready now (POLLIN, POLLOUT, POLLHUP, POLLERR). With `arm`, ask the
     * source to notify us before the caller parks (the serial RX queue needs it). */
    unsigned (*ready)(int fd, void *obj, bool arm);
    /* Drop one reference to obj (the fd itself is released by the caller). */
    void (*release)(void *obj);
    /* A dup of the fd shares obj: take a reference. */
    void (*retain)(void *obj);
};

/* read/write handlers of descriptors that refuse the direction: -EBADF. */
ssize_t fd_no_read(void *buf, size_t len, int fd);
ssize_t fd_no_write(const void *buf, size_t len, int fd);
/* Allocate a LionsOS fd whose read/write/close/dup3/fstat are ours and whose kind is
 * `kind`; returns the fd or -EMFILE. `flags` are the open flags (O_NONBLOCK, O_CLOEXEC). */
int fds_open(enum fd_kind kind, void *obj, int flags, ssize_t (*read)(void *, size_t, int),
             ssize_t (*write)(const void *, size_t, int), int (*fstat)(int, struct stat *));
enum fd_kind fds_kind(int fd);
void *fds_obj(int fd);
bool fds_nonblocking(int fd);
/* Events ready on any fd (ours, the console or a LionsOS file); POLLNVAL if invalid. */
unsigned fds_ready(int fd, bool arm);
void fds_register_kind(enum fd_kind kind, const struct fd_ops *ops);
void fds_init(void);

/* ---- poll.c ---- */
void poll_init(void);
/* Forget `fd` in every epoll set (it is being closed). */
void poll_forget_fd(int fd);

/* ---- paths.c ---- */
/* Join `rel` to the absolute `base` (ignored if rel is absolute) into out, folding `//`,
 * `.` and `..`: 0, or -ENAMETOOLONG if it does not fit in `size` bytes. */
int runtime_path_join(const char *base, const char *rel, char *out, size_t size);

/* ---- fsops.c ---- */
void fsops_init(void);

/* ---- entropy.c ---- */
/* Fill buf with DRBG output (seeded from timer jitter on first use). */
void entropy_fill(void *buf, size_t len);
void entropy_init(void);
