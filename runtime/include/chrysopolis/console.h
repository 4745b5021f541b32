/* SPDX-License-Identifier: BSD-2-Clause */
/* console.c: stdin over the sDDF serial RX queue, with echo. */
#pragma once

void console_init(void);
