/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * console.c: stdin over the sDDF serial RX queue, through a line discipline kept by a
 * termios state (canonical with echo at boot; raw for OTP's line editor), and the
 * console's window size.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <termios.h>

void console_init(void);
/* Move received bytes through the line discipline (echo, erase, CR->LF) into what a read
 * returns; reads and polls call it. */
void console_pump(void);
/* Input a read would return now; with `arm`, ask to be notified of the next byte first. */
bool console_input_ready(bool arm);
/* How many bytes a read may return now (FIONREAD). */
size_t console_input_pending(void);
void console_get_termios(struct termios *t);
/* A new termios state; `flush` discards input received and not yet read (TCSETSF). */
void console_set_termios(const struct termios *t, bool flush);
void console_flush_input(void);
/* The terminal's size (TIOCGWINSZ); 80x24 until the image sets the host's. */
void console_get_winsize(struct winsize *ws);
void console_set_winsize(const struct winsize *ws);
