/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Fault injection images only (build option fault_inject): the supervisor's clock tick.
 * The supervisor runs above every child and has no timer of its own (the timer driver is
 * one of the PDs it crashes), so this PD, at the lowest priority, watches the generic
 * counter and notifies the supervisor every SUP_TICK_MS; it runs only when all else idles.
 */
#include <stdint.h>

#include <microkit.h>

#define SUP_TICK_MS 20
#define SUPERVISOR_CHANNEL 0

static uint64_t ticks(void)
{
    uint64_t t;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(t));
    return t;
}

void init(void)
{
    uint64_t hz;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(hz));
    uint64_t step = hz / 1000 * SUP_TICK_MS;
    for (uint64_t next = ticks() + step;; next += step) {
        while (ticks() < next) {
        }
        microkit_notify(SUPERVISOR_CHANNEL);
    }
}

void notified(microkit_channel ch)
{
    (void)ch;
}
