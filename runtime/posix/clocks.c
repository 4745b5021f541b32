/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Clocks and sleeps. Every clock reads the sDDF timer (time.c): the monotonic ones as
 * they are, CLOCK_REALTIME offset by a wall-clock epoch. The PD sees no RTC, so the epoch
 * is the image's build time (REALTIME_EPOCH_S, set by the build). LionsOS aliases
 * REALTIME to MONOTONIC (1970 at boot) and sleeps on the raw timer channel; both are
 * replaced here. Absolute REALTIME deadlines are rebased onto the monotonic clock.
 * The timespec helpers here are the only ones: every module validates and converts with
 * them.
 */
#include <errno.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include <chrysopolis/clocks.h>
#include <chrysopolis/time.h>
#include <chrysopolis/waitq.h>

#ifndef REALTIME_EPOCH_S
#define REALTIME_EPOCH_S 1795564800ULL /* 2026-11-25 00:00 UTC */
#endif

uint64_t clocks_realtime_offset_ns = REALTIME_EPOCH_S * NS_IN_S;

uint64_t clocks_now_ns(void)
{
    return time_now_ns();
}

bool clocks_timespec_valid(const struct timespec *ts)
{
    return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && (uint64_t)ts->tv_nsec < NS_IN_S;
}

uint64_t clocks_timespec_ns(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * NS_IN_S + (uint64_t)ts->tv_nsec;
}

void clocks_ns_timespec(uint64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / NS_IN_S);
    ts->tv_nsec = (long)(ns % NS_IN_S);
}

static bool is_realtime(long clk)
{
    return clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE || clk == CLOCK_TAI;
}

static bool known_clock(long clk)
{
    switch (clk) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_TAI:
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_BOOTTIME:
    case CLOCK_PROCESS_CPUTIME_ID: /* one CPU, always ours: CPU time is elapsed time */
    case CLOCK_THREAD_CPUTIME_ID:
        return true;
    default:
        return false;
    }
}

long sys_clock_gettime(long clk, long tsp, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (!known_clock(clk)) {
        return -EINVAL;
    }
    if (tsp == 0) {
        return -EFAULT;
    }
    uint64_t ns = clocks_now_ns();
    clocks_ns_timespec(is_realtime(clk) ? ns + clocks_realtime_offset_ns : ns, (struct timespec *)tsp);
    return 0;
}

/* The ARM generic timer's tick (CNTFRQ_EL0 is readable at EL0). */
long sys_clock_getres(long clk, long tsp, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (!known_clock(clk)) {
        return -EINVAL;
    }
    if (tsp != 0) {
        uint64_t freq;
        __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(freq));
        uint64_t res = freq ? (NS_IN_S + freq - 1) / freq : 1000;
        clocks_ns_timespec(res, (struct timespec *)tsp);
    }
    return 0;
}

static long sleep_until(uint64_t deadline, struct timespec *rem)
{
    long r = waitq_sleep_until(deadline);
    if (rem != NULL) {
        rem->tv_sec = 0;
        rem->tv_nsec = 0;
    }
    return r == -EAGAIN ? -EINVAL : 0;
}

long sys_nanosleep(long req, long rem, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    const struct timespec *ts = (const struct timespec *)req;
    if (ts == NULL) {
        return -EFAULT;
    }
    if (!clocks_timespec_valid(ts)) {
        return -EINVAL;
    }
    uint64_t ns = clocks_timespec_ns(ts);
    return sleep_until(clocks_now_ns() + ns, (struct timespec *)rem);
}

long sys_clock_nanosleep(long clk, long flags, long req, long rem, long e, long f)
{
    (void)e, (void)f;
    const struct timespec *ts = (const struct timespec *)req;
    if (!known_clock(clk)) {
        return -EINVAL;
    }
    if (ts == NULL) {
        return -EFAULT;
    }
    if (!clocks_timespec_valid(ts)) {
        return -EINVAL;
    }
    uint64_t ns = clocks_timespec_ns(ts);
    uint64_t deadline;
    if (flags & TIMER_ABSTIME) {
        uint64_t offset = is_realtime(clk) ? clocks_realtime_offset_ns : 0;
        deadline = ns > offset ? ns - offset : 0;
    } else {
        deadline = clocks_now_ns() + ns;
    }
    return sleep_until(deadline, (flags & TIMER_ABSTIME) ? NULL : (struct timespec *)rem);
}

long sys_gettimeofday(long tvp, long tzp, long c, long d, long e, long f)
{
    (void)tzp, (void)c, (void)d, (void)e, (void)f;
    if (tvp != 0) {
        uint64_t ns = clocks_now_ns() + clocks_realtime_offset_ns;
        struct timeval *tv = (struct timeval *)tvp;
        tv->tv_sec = (time_t)(ns / NS_IN_S);
        tv->tv_usec = (suseconds_t)(ns % NS_IN_S / 1000);
    }
    return 0;
}
