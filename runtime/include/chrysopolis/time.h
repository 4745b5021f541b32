/* SPDX-License-Identifier: BSD-2-Clause */
/* time.c: the PD's monotonic clock, the sDDF timer driver's. */
#pragma once

#include <stdint.h>

/* Nanoseconds since boot: the timer driver's clock, read in this PD where seL4 lets it
 * (the ARM generic timer's counter), else by a protected call to the driver. */
uint64_t time_now_ns(void);

/* The same clock by a protected call to the timer driver, always (entropy.c times it). */
uint64_t time_driver_ns(void);
