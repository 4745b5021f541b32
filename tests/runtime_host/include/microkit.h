/* SPDX-License-Identifier: BSD-2-Clause */
/* Host stand-in for Microkit's microkit.h: the debug console only (the harness prints it). */
#pragma once

void microkit_dbg_puts(const char *s);
