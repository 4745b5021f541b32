/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * clocks.c: the clocks ERTS reads and the sleeps it takes, over the sDDF timer, and the
 * timespec helpers every other module uses (docs/threads.md).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <sddf/timer/protocol.h> /* NS_IN_S, NS_IN_MS, NS_IN_US */

/* Wall-clock time of monotonic 0, in ns since the Unix epoch. */
extern uint64_t clocks_realtime_offset_ns;

/* The monotonic clock every deadline is measured on, in ns since boot. */
uint64_t clocks_now_ns(void);
/* tv_sec >= 0 and 0 <= tv_nsec < 1e9. */
bool clocks_timespec_valid(const struct timespec *ts);
/* A valid timespec in ns. */
uint64_t clocks_timespec_ns(const struct timespec *ts);
void clocks_ns_timespec(uint64_t ns, struct timespec *ts);

long sys_clock_gettime(long clk, long tsp, long c, long d, long e, long f);
long sys_clock_getres(long clk, long tsp, long c, long d, long e, long f);
long sys_nanosleep(long req, long rem, long c, long d, long e, long f);
long sys_clock_nanosleep(long clk, long flags, long req, long rem, long e, long f);
long sys_gettimeofday(long tvp, long tzp, long c, long d, long e, long f);
