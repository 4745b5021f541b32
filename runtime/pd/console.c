/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Console input: LionsOS gives stdin no read handler, so we read the sDDF
 * serial RX queue, echo what arrives and turn the terminal's CR into LF.
 */
#include <string.h>
#include <unistd.h>

#include <libmicrokitco.h>
#include <lions/posix/fd.h>

#include <chrysopolis/console.h>
#include <chrysopolis/pd.h>

static bool rx_enabled;

static ssize_t console_read(void *buf, size_t len, int fd)
{
    (void)fd;
    char *out = buf;
    size_t got = 0;
    for (;;) {
        char c;
        while (got < len && serial_dequeue(&serial_rx_queue_handle, &c) == 0) {
            if (c == '\r') {
                c = '\n';
            }
            out[got++] = c;
            write(1, &c, 1);
            if (c == '\n') {
                return got;
            }
        }
        if (got > 0) {
            return got;
        }
        /* Ask the RX virtualiser to notify us, re-check, then park this cothread. */
        serial_request_consumer_signal(&serial_rx_queue_handle);
        if (!serial_queue_empty(&serial_rx_queue_handle, serial_rx_queue_handle.queue->head)) {
            serial_cancel_consumer_signal(&serial_rx_queue_handle);
            continue;
        }
        microkit_cothread_wait_on_channel(serial_config.rx.id);
    }
}

void console_init(void)
{
    rx_enabled = serial_config.rx.queue.vaddr != NULL;
    if (!rx_enabled) {
        return;
    }
    serial_queue_init(&serial_rx_queue_handle, serial_config.rx.queue.vaddr, serial_config.rx.data.size,
                      serial_config.rx.data.vaddr);
    posix_fd_entry(STDIN_FD)->read = console_read;
}
