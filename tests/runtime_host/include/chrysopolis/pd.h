/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Host stand-in for runtime/include/chrysopolis/pd.h: the few PD-level names the
 * adapter's pure files (memory.c, entropy.c, paths.c) and pd/dispatch.c use, without
 * the Microkit, sDDF and LionsOS headers, so the host harness can link them.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

extern uint64_t beam_heap_base;
extern uint64_t beam_heap_size;
extern uint64_t pd_heap_limit;

_Noreturn void pd_halt(void);
