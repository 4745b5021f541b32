/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Console input: LionsOS gives stdin no read handler, so we read the sDDF serial RX
 * queue through a small line discipline driven by a termios state, as a tty would.
 *
 * Canonical mode with ECHO (the state at boot): typed bytes are echoed, the terminal's CR
 * becomes LF (ICRNL), VERASE/^H erase and VKILL kills the line being typed, and a read
 * returns a whole line. Raw mode (what OTP's prim_tty sets: no ICANON, no ECHO, no
 * ICRNL): bytes pass through untouched and nothing is echoed here; the line editor
 * echoes. Signals do not exist in a PD: VINTR and friends are ordinary bytes.
 *
 * Input moves from the RX queue into `avail` (what a read may return) by console_pump(),
 * run by reads and by poll/epoll (console_input_ready): a tty echoes on arrival, not
 * when the program gets round to reading.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <libmicrokitco.h>
#include <lions/posix/fd.h>

#include <chrysopolis/console.h>
#include <chrysopolis/pd.h>

#define LINE_CAP 1024 /* the line being typed in canonical mode (Linux: 4096) */
#define AVAIL_CAP 4096 /* bytes a read may return: raw input or completed lines */

static bool rx_enabled;
static struct termios tio;
static struct winsize winsize = {.ws_row = 24, .ws_col = 80};

static char line[LINE_CAP];
static size_t line_len;
static char avail[AVAIL_CAP];
static size_t avail_len;

static void echo(const char *s, size_t n)
{
    if (n > 0) {
        write(STDOUT_FD, s, n);
    }
}

static bool avail_put(const char *s, size_t n)
{
    if (avail_len + n > AVAIL_CAP) {
        return false;
    }
    memcpy(avail + avail_len, s, n);
    avail_len += n;
    return true;
}

/* One input byte through the line discipline; false if there is no room for it yet. */
static bool discipline(char c)
{
    if ((tio.c_iflag & ISTRIP) != 0) {
        c &= 0x7f;
    }
    if (c == '\r') {
        if ((tio.c_iflag & IGNCR) != 0) {
            return true;
        }
        if ((tio.c_iflag & ICRNL) != 0) {
            c = '\n';
        }
    } else if (c == '\n' && (tio.c_iflag & INLCR) != 0) {
        c = '\r';
    }
    bool echoing = (tio.c_lflag & ECHO) != 0;
    if ((tio.c_lflag & ICANON) == 0) {
        if (!avail_put(&c, 1)) {
            return false;
        }
        if (echoing) {
            echo(&c, 1);
        }
        return true;
    }
    if (c == (char)tio.c_cc[VERASE] || c == '\b') {
        if (line_len > 0) {
            line_len--;
            if (echoing) {
                echo("\b \b", 3);
            }
        }
        return true;
    }
    if (c == (char)tio.c_cc[VKILL]) {
        while (echoing && line_len > 0) {
            line_len--;
            echo("\b \b", 3);
        }
        line_len = 0;
        return true;
    }
    bool eol = c == '\n' || (tio.c_cc[VEOL] != 0 && c == (char)tio.c_cc[VEOL]);
    if (eol && avail_len + line_len + 1 > AVAIL_CAP) {
        return false; /* the reader has not taken the lines before: wait */
    }
    if (!eol && line_len == LINE_CAP - 1) {
        return true; /* the line is full: drop the byte, as a tty rings its bell */
    }
    line[line_len++] = c;
    if (echoing || (eol && (tio.c_lflag & ECHONL) != 0)) {
        echo(&c, 1);
    }
    if (eol) {
        avail_put(line, line_len);
        line_len = 0;
    }
    return true;
}

void console_pump(void)
{
    if (!rx_enabled) {
        return;
    }
    serial_queue_handle_t *rx = &serial_rx_queue_handle;
    for (;;) {
        if (serial_queue_empty(rx, rx->queue->head)) {
            return;
        }
        char c = rx->data_region[rx->queue->head % rx->capacity];
        if (!discipline(c)) {
            return; /* left in the RX queue until a read makes room */
        }
        serial_dequeue(rx, &c);
    }
}

bool console_input_ready(bool arm)
{
    if (!rx_enabled) {
        return false;
    }
    console_pump();
    if (avail_len > 0) {
        return true;
    }
    if (arm) {
        /* the RX virtualiser only notifies a consumer that asked; re-check after asking */
        serial_request_consumer_signal(&serial_rx_queue_handle);
        console_pump();
        if (avail_len > 0) {
            serial_cancel_consumer_signal(&serial_rx_queue_handle);
            return true;
        }
    }
    return false;
}

size_t console_input_pending(void)
{
    console_pump();
    return avail_len;
}

/* How much of `avail` one read returns: canonical mode returns at most one line. */
static size_t take_len(size_t len)
{
    size_t n = avail_len < len ? avail_len : len;
    if ((tio.c_lflag & ICANON) != 0) {
        char *nl = memchr(avail, '\n', n);
        if (nl != NULL) {
            n = (size_t)(nl - avail) + 1;
        }
    }
    return n;
}

static ssize_t console_read(void *buf, size_t len, int fd)
{
    if (len == 0) {
        return 0;
    }
    for (;;) {
        console_pump();
        if (avail_len > 0) {
            size_t n = take_len(len);
            memcpy(buf, avail, n);
            memmove(avail, avail + n, avail_len - n);
            avail_len -= n;
            console_pump(); /* what waited for room */
            return (ssize_t)n;
        }
        fd_entry_t *e = posix_fd_entry(fd);
        if (e != NULL && (e->flags & O_NONBLOCK) != 0) {
            return -EAGAIN;
        }
        if ((tio.c_lflag & ICANON) == 0 && tio.c_cc[VMIN] == 0) {
            return 0; /* raw, VMIN 0: a read does not wait (VTIME is not kept) */
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

void console_get_termios(struct termios *t)
{
    *t = tio;
}

void console_set_termios(const struct termios *t, bool flush)
{
    bool was_canon = (tio.c_lflag & ICANON) != 0;
    tio = *t;
    if (flush) {
        line_len = 0;
        avail_len = 0;
        char c;
        while (rx_enabled && serial_dequeue(&serial_rx_queue_handle, &c) == 0) {
        }
    } else if (was_canon && (tio.c_lflag & ICANON) == 0 && line_len > 0) {
        /* the line being typed becomes readable as it is, as on Linux */
        if (avail_put(line, line_len)) {
            line_len = 0;
        }
    }
}

void console_flush_input(void)
{
    struct termios t = tio;
    console_set_termios(&t, true);
}

void console_get_winsize(struct winsize *ws)
{
    *ws = winsize;
}

void console_set_winsize(const struct winsize *ws)
{
    winsize = *ws;
}

void console_init(void)
{
    /* Linux's defaults for a new tty (drivers/tty/tty_io.c tty_std_termios), 115200 baud. */
    memset(&tio, 0, sizeof(tio));
    tio.c_iflag = ICRNL | IXON;
    tio.c_oflag = OPOST | ONLCR;
    tio.c_cflag = B115200 | CS8 | CREAD | HUPCL;
    tio.c_lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN;
    static const cc_t cc[] = {
        [VINTR] = 003,    [VQUIT] = 034,   [VERASE] = 0177, [VKILL] = 025, [VEOF] = 004, [VTIME] = 0,
        [VMIN] = 1,       [VSTART] = 021,  [VSTOP] = 023,   [VSUSP] = 032, [VEOL] = 0,   [VREPRINT] = 022,
        [VDISCARD] = 017, [VWERASE] = 027, [VLNEXT] = 026,  [VEOL2] = 0,
    };
    memcpy(tio.c_cc, cc, sizeof(cc));
    tio.__c_ispeed = tio.__c_ospeed = B115200;

    rx_enabled = serial_config.rx.queue.vaddr != NULL;
    if (!rx_enabled) {
        return;
    }
    serial_queue_init(&serial_rx_queue_handle, serial_config.rx.queue.vaddr, serial_config.rx.data.size,
                      serial_config.rx.data.vaddr);
    posix_fd_entry(STDIN_FD)->read = console_read;
}
