/* SPDX-License-Identifier: BSD-2-Clause */
/* The PD's clock: the sDDF timer driver is the monotonic source (a protected call). */
#include <sddf/timer/client.h>

#include <chrysopolis/pd.h>
#include <chrysopolis/time.h>

uint64_t time_now_ns(void)
{
    return sddf_timer_time_now(timer_config.driver_id);
}
