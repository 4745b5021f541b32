/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The PD's clock. The sDDF timer driver (drivers/timer/arm) counts the ARM generic timer:
 * it answers SDDF_TIMER_GET_TIME with CNTPCT_EL0 in ns. seL4 exports that counter to user
 * mode (CONFIG_EXPORT_PCNT_USER, which the driver needs too), so time_now_ns reads it here
 * with the driver's own arithmetic: the same clock, without a protected call (kernel, the
 * driver's address space, back) for each of ERTS's many clock reads. Timeouts still go to
 * the driver (sddf_timer_set_timeout), relative to now, as before.
 */
#include <autoconf.h> /* CONFIG_EXPORT_PCNT_USER */
#include <sddf/timer/client.h>

#include <chrysopolis/pd.h>
#include <chrysopolis/time.h>

uint64_t time_driver_ns(void)
{
    return sddf_timer_time_now(timer_config.driver_id);
}

#if defined(__aarch64__) && defined(CONFIG_EXPORT_PCNT_USER)
uint64_t time_now_ns(void)
{
    static uint64_t hz;
    if (hz == 0) {
        __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(hz));
    }
    uint64_t ticks;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(ticks));
    /* freq_cycles_and_hz_to_ns of sDDF's drivers/timer/arm/timer.c, branch for branch */
    if (hz % 1000000000 == 0) {
        return ticks / (hz / 1000000000);
    } else if (hz % 1000000 == 0) {
        return ticks * 1000 / (hz / 1000000);
    } else if (hz % 1000 == 0) {
        return ticks * 1000000 / (hz / 1000);
    }
    return time_driver_ns(); /* another rate: whatever the driver makes of it */
}
#else
uint64_t time_now_ns(void)
{
    return time_driver_ns();
}
#endif
