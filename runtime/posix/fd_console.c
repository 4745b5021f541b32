/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fds 0-2, the sDDF serial console, as fds of ours. LionsOS opens them with a write
 * to the serial TX queue (and console.c gives stdin its read) but without close, dup3
 * or fstat, and poll(2) must see console input arrive: we adopt them.
 *
 * The console is a terminal: ioctl answers the termios calls (TCGETS, TCSETS, TCSETSW,
 * TCSETSF: tcgetattr/tcsetattr, so isatty is true) and TIOCGWINSZ (the host terminal's
 * size the image learned at boot, else 80x24) for every console fd; the state itself is
 * console.c's line discipline. FIONBIO sets O_NONBLOCK on any fd, as Linux; a kind with
 * its own ioctl (sockets) answers the rest for its fds; other fds' go to LionsOS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <termios.h>

#include <lions/posix/fd.h>
#include <sddf/serial/queue.h>

#include <chrysopolis/console.h>
#include <chrysopolis/dispatch.h>
#include <chrysopolis/fd_console.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/pd.h>

static int console_fstat(int fd, struct stat *st)
{
    (void)fd;
    fds_stat_mode(st, S_IFCHR | 0620);
    st->st_rdev = 0x8800; /* a pty-like device number: a character device, not a file */
    return 0;
}

static unsigned console_ready(int fd, void *obj, bool arm)
{
    (void)obj;
    fd_entry_t *e = posix_fd_entry(fd);
    unsigned ev = (e->write != fds_no_write) ? POLLOUT : 0;
    if (e->read == fds_no_read) {
        return ev;
    }
    /* in canonical mode a partial line is not readable yet: the discipline decides */
    return console_input_ready(arm) ? ev | POLLIN : ev;
}

static const struct fd_ops console_ops = {
    .name = "console", .fstat = console_fstat, .ready = console_ready, .stream = true};

bool fd_console_is(int fd)
{
    return fds_ops(fd) == &console_ops;
}

/* FIONBIO: the flag fcntl(F_SETFL) sets, which our kinds and LionsOS both read. */
static long set_nonblocking(int fd, const int *on)
{
    fd_entry_t *ent = posix_fd_entry(fd);
    if (ent == NULL) {
        return -EBADF;
    }
    if (on == NULL) {
        return -EFAULT;
    }
    ent->flags = *on ? ent->flags | O_NONBLOCK : ent->flags & ~O_NONBLOCK;
    return 0;
}

long sys_ioctl(long fd, long req, long arg, long d, long e, long f)
{
    if ((unsigned long)req == FIONBIO) {
        return set_nonblocking((int)fd, (const int *)arg);
    }
    if (!fd_console_is((int)fd)) {
        const struct fd_ops *ops = fds_ops((int)fd);
        if (ops != NULL && ops->ioctl != NULL) {
            return ops->ioctl((int)fd, fds_obj((int)fd), (unsigned long)req, arg);
        }
        return dispatch_lions(SYS_ioctl, fd, req, arg, d, e, f);
    }
    void *p = (void *)arg;
    switch ((unsigned long)req) {
    case TCGETS:
        if (p == NULL) {
            return -EFAULT;
        }
        console_get_termios(p);
        return 0;
    case TCSETS:
    case TCSETSW: /* output is written synchronously: nothing to drain first */
    case TCSETSF:
        if (p == NULL) {
            return -EFAULT;
        }
        console_set_termios(p, (unsigned long)req == TCSETSF);
        return 0;
    case TIOCGWINSZ:
        if (p == NULL) {
            return -EFAULT;
        }
        console_get_winsize(p);
        return 0;
    case TIOCSWINSZ:
        if (p == NULL) {
            return -EFAULT;
        }
        console_set_winsize(p);
        return 0;
    case FIONREAD:
        if (p == NULL) {
            return -EFAULT;
        }
        *(int *)p = (int)console_input_pending();
        return 0;
    case TCFLSH: /* tcflush: TCIFLUSH and TCIOFLUSH drop unread input; output is never queued */
        if (arg == TCIFLUSH || arg == TCIOFLUSH) {
            console_flush_input();
        }
        return 0;
    case TCSBRK: /* tcdrain, tcsendbreak */
    case TCXONC: /* tcflow */
        return 0;
    default:
        return -ENOTTY;
    }
}

void fd_console_init(void)
{
    for (int fd = STDIN_FD; fd <= STDERR_FD; fd++) {
        fd_entry_t *e = posix_fd_entry(fd);
        if (e == NULL) {
            continue;
        }
        if (e->read == NULL) {
            e->read = fds_no_read;
        }
        if (e->write == NULL) {
            e->write = fds_no_write;
        }
        fds_adopt(fd, &console_ops);
    }
}
