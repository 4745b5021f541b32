/* SPDX-License-Identifier: BSD-2-Clause */
/* fd_console.c: fds 0-2, the sDDF serial console, as fds of ours (close, dup, poll). */
#pragma once

void fd_console_init(void);
