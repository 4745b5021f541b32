/* SPDX-License-Identifier: BSD-2-Clause */
/* fd_console.c: fds 0-2, the sDDF serial console, as fds of ours (close, dup, poll) and a
 * terminal (ioctl: termios and the window size). */
#pragma once

#include <stdbool.h>

void fd_console_init(void);
/* Whether `fd` is a console fd (0-2 or a dup of one). */
bool fd_console_is(int fd);
long sys_ioctl(long fd, long req, long arg, long d, long e, long f);
