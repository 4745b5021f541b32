/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fds 0-2, the sDDF serial console, as fds of ours. LionsOS opens them with a write
 * to the serial TX queue (and console.c gives stdin its read) but without close, dup3
 * or fstat, and poll(2) must see console input arrive: we adopt them.
 */
#include <poll.h>

#include <lions/posix/fd.h>
#include <sddf/serial/queue.h>

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
    if (e->read == fds_no_read || serial_config.rx.queue.vaddr == NULL) {
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

static const struct fd_ops console_ops = {
    .name = "console", .fstat = console_fstat, .ready = console_ready, .stream = true};

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
