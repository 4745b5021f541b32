/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pd.c: the protection domain every LionsOS image of ours is (docs/architecture.md).
 * The configs sdfgen writes, the heap region, the serial queues, init() and notified().
 * The names of the globals below are fixed by sdfgen, the Microkit tool (setvar) and
 * LionsOS's libc, which refer to them: they keep those names rather than a pd_ prefix.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <microkit.h>
#include <sddf/network/config.h>
#include <sddf/network/lib_sddf_lwip.h>
#include <sddf/serial/config.h>
#include <sddf/serial/queue.h>
#include <sddf/timer/config.h>
#include <lions/fs/config.h>

extern serial_client_config_t serial_config;
extern timer_client_config_t timer_config;
extern fs_client_config_t fs_config;
extern net_client_config_t net_config;
extern lib_sddf_lwip_config_t lib_sddf_lwip_config;
/* The heap memory region: base and size patched in by the Microkit tool. */
extern uint64_t beam_heap_base;
extern uint64_t beam_heap_size;
extern serial_queue_handle_t serial_rx_queue_handle;
extern serial_queue_handle_t serial_tx_queue_handle;

/* The cothread stacks sit at the top of the heap region: memory for mmap/brk ends here. */
extern uint64_t pd_heap_limit;
/* Each cothread stack's size: COTHREAD_STACK_SIZE, or COTHREAD_STACK_SIZE_SMALL when the
 * heap is below PD_SMALL_HEAP (a small RAM: docs/threads.md). */
extern uint64_t pd_cothread_stack;
#define PD_SMALL_HEAP (256ULL << 20)

/* The image's entry point, run in the main cothread once libc is up. */
void chrysopolis_main(void);

/* After a fatal error line (`beam_server: ERROR: ...`): the calling cothread parks for
 * good and the PD idles, as when init() gives up. */
_Noreturn void pd_halt(void);
