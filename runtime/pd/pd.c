/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The beam_server protection domain: the configs sdfgen writes into our ELF
 * sections, init() and notified(). The image's own work runs in a cothread so
 * that init() returns and notifications reach us (docs/threads.md).
 */
#include <assert.h>
#include <stdio.h>

#include <libmicrokitco.h>
#include <lions/fs/helpers.h>
#include <lions/posix/posix.h>
#include <sddf/network/config.h>
#include <sddf/network/lib_sddf_lwip.h>

#include <chrysopolis/console.h>
#include <chrysopolis/costack.h>
#include <chrysopolis/dispatch.h>
#include <chrysopolis/files.h>
#include <chrysopolis/netstack.h>
#include <chrysopolis/pd.h>

__attribute__((__section__(".serial_client_config"))) serial_client_config_t serial_config;
__attribute__((__section__(".timer_client_config"))) timer_client_config_t timer_config;
__attribute__((__section__(".fs_client_config"))) fs_client_config_t fs_config;
/* Every LionsOS-stack beam_server is a net client (one topology for all); only images that
 * link runtime/net (beam) run lwIP on it. */
__attribute__((__section__(".net_client_config"))) net_client_config_t net_config;
__attribute__((__section__(".lib_sddf_lwip_config"))) lib_sddf_lwip_config_t lib_sddf_lwip_config;

/* Patched by the Microkit tool (setvar_vaddr/setvar_size on the heap map). */
uint64_t beam_heap_base;
uint64_t beam_heap_size;

serial_queue_handle_t serial_rx_queue_handle;
serial_queue_handle_t serial_tx_queue_handle;

/* Cothread stacks (costack.c) come from the top of the heap region; the rest of the region
 * below them is what mmap/brk hand out. */
#ifndef COTHREAD_STACK_SIZE
#define COTHREAD_STACK_SIZE 0x100000
#endif
/* A small heap (PD_SMALL_HEAP) gets these: ERTS's threads were seen using at most 34 KiB. */
#ifndef COTHREAD_STACK_SIZE_SMALL
#define COTHREAD_STACK_SIZE_SMALL COTHREAD_STACK_SIZE
#endif
#define NUM_STACKS (LIBMICROKITCO_MAX_COTHREADS - 1)

uint64_t pd_heap_limit;
uint64_t pd_cothread_stack;
static co_control_t co_controller;

static void main_cothread(void)
{
    libc_init(NULL);
    dispatch_init();
    chrysopolis_main();
}

_Noreturn void pd_halt(void)
{
    microkit_cothread_sem_t never;
    microkit_cothread_semaphore_init(&never);
    for (;;) {
        microkit_cothread_semaphore_wait(&never);
    }
}

void init(void)
{
    assert(serial_config_check_magic(&serial_config));
    assert(timer_config_check_magic(&timer_config));

    serial_queue_init(&serial_tx_queue_handle, serial_config.tx.queue.vaddr, serial_config.tx.data.size,
                      serial_config.tx.data.vaddr);
    console_init();
    files_init();

    pd_cothread_stack = beam_heap_size < PD_SMALL_HEAP ? COTHREAD_STACK_SIZE_SMALL : COTHREAD_STACK_SIZE;
    uint64_t stacks_bytes = (uint64_t)NUM_STACKS * (pd_cothread_stack + costack_red_zone(pd_cothread_stack));
    if (beam_heap_size < stacks_bytes) {
        microkit_dbg_puts("beam_server: ERROR: the heap region is smaller than the cothread stacks; "
                          "give the system a larger heap\n");
        return;
    }
    stack_ptrs_arg_array_t stacks;
    pd_heap_limit = costack_carve(beam_heap_base + beam_heap_size, pd_cothread_stack, NUM_STACKS, stacks);
    microkit_cothread_init(&co_controller, pd_cothread_stack, stacks);
    microkit_cothread_ref_t main_handle = microkit_cothread_spawn(main_cothread, NULL);
    if (main_handle == LIBMICROKITCO_NULL_HANDLE) {
        microkit_dbg_puts("beam_server: cannot start the main cothread\n");
        return;
    }
    costack_arm(main_handle);
    microkit_cothread_yield();
}

/* Images without the network stack (runtime/net) ignore its notifications. */
__attribute__((weak)) void netstack_notified(microkit_channel ch)
{
    (void)ch;
}

/* Images without the POSIX adapter have no supervision (runtime/posix/supervision.c). */
__attribute__((weak)) void supervision_notified(microkit_channel ch)
{
    (void)ch;
}

void notified(microkit_channel ch)
{
    if (ch == fs_config.server.id) {
        files_notified();
    }
    netstack_notified(ch);
    supervision_notified(ch);
    microkit_cothread_recv_ntfn(ch);
    microkit_cothread_yield();
}
