/* SPDX-License-Identifier: BSD-2-Clause */
/* time.c: the sDDF timer driver, the PD's monotonic clock. */
#pragma once

#include <stdint.h>

/* Nanoseconds since boot (a protected call to the timer driver). */
uint64_t time_now_ns(void);
