/* Clocks: the sDDF timer driver is the monotonic source (a protected call). */
#include <sddf/timer/client.h>

#include "chrysopolis.h"

uint64_t time_now_ns(void)
{
    return sddf_timer_time_now(timer_config.driver_id);
}
