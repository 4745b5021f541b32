/* SPDX-License-Identifier: BSD-2-Clause */
/* power.c: the end of the PD's life: flush the console, say the status, power off. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The one line the tool reads the status from (PSCI SYSTEM_OFF carries none). */
#define POWER_STATUS_LINE "beam_server: exit status %d"

/* Wait until the serial TX virtualiser has taken every byte we queued, at most
 * timeout_ns: true if the queue drained. */
bool power_flush_console(uint64_t timeout_ns);

/* Print `beam_server: exit status N` (N = status & 0xff, as a parent process sees it),
 * flush the console and power the machine off with PSCI SYSTEM_OFF. Returns only if
 * the machine could not be powered off, after printing a `beam_server: ERROR:` line. */
void power_off(int status);
