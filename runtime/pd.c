/*
 * The beam_server protection domain: the configs sdfgen writes into our ELF
 * sections, init() and notified(). The image's own work runs in a cothread so
 * that init() returns and notifications reach us (PORTING.md, "Threads").
 */
#include <assert.h>
#include <stdio.h>

#include <libmicrokitco.h>
#include <lions/fs/helpers.h>

#include "chrysopolis.h"

__attribute__((__section__(".serial_client_config"))) serial_client_config_t serial_config;
__attribute__((__section__(".timer_client_config"))) timer_client_config_t timer_config;
__attribute__((__section__(".fs_client_config"))) fs_client_config_t fs_config;

serial_queue_handle_t serial_rx_queue_handle;
serial_queue_handle_t serial_tx_queue_handle;

#ifndef MAIN_STACK_SIZE
#define MAIN_STACK_SIZE 0x100000
#endif

static char main_stack[MAIN_STACK_SIZE] __attribute__((aligned(16)));
static co_control_t co_controller;

static void main_cothread(void)
{
    libc_init(NULL);
    runtime_libc_init();
    chrysopolis_main();
}

void init(void)
{
    assert(serial_config_check_magic(&serial_config));
    assert(timer_config_check_magic(&timer_config));

    serial_queue_init(&serial_tx_queue_handle, serial_config.tx.queue.vaddr, serial_config.tx.data.size,
                      serial_config.tx.data.vaddr);
    console_init();
    files_init();

    stack_ptrs_arg_array_t stacks = { (uintptr_t)main_stack };
    microkit_cothread_init(&co_controller, MAIN_STACK_SIZE, stacks);
    if (microkit_cothread_spawn(main_cothread, NULL) == LIBMICROKITCO_NULL_HANDLE) {
        microkit_dbg_puts("beam_server: cannot start the main cothread\n");
        return;
    }
    microkit_cothread_yield();
}

void notified(microkit_channel ch)
{
    if (ch == fs_config.server.id) {
        files_notified();
    } else if (ch == serial_config.rx.id) {
        console_notified();
    }
    microkit_cothread_recv_ntfn(ch);
    microkit_cothread_yield();
}
