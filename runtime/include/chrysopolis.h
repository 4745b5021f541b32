/*
 * The Chrysopolis runtime adapter: what its files share.
 * One file per concern: pd.c (the protection domain: configs, init, notified),
 * libc.c (musl start-up and the syscall interposer), console.c, time.c, files.c.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <microkit.h>
#include <sddf/serial/config.h>
#include <sddf/serial/queue.h>
#include <sddf/timer/config.h>
#include <lions/fs/config.h>

extern serial_client_config_t serial_config;
extern timer_client_config_t timer_config;
extern fs_client_config_t fs_config;
/* The heap memory region: base and size patched in by the Microkit tool (pd.c). */
extern uint64_t beam_heap_base;
extern uint64_t beam_heap_size;
/* The cothread stacks sit at the top of the heap region: memory for mmap/brk ends here. */
extern uint64_t runtime_heap_limit;
extern serial_queue_handle_t serial_rx_queue_handle;
extern serial_queue_handle_t serial_tx_queue_handle;

/* The image's entry point, run in the main cothread once libc is up. */
void chrysopolis_main(void);

/* libc.c: bring musl up (thread pointer, auxv, environment) after LionsOS's libc_init. */
void runtime_libc_init(void);
/* Claim a syscall slot ahead of LionsOS's table (ours are consulted first). */
typedef long (*runtime_syscall_t)(long a, long b, long c, long d, long e, long f);
void runtime_define_syscall(long nr, runtime_syscall_t fn);

/* console.c: stdin over the sDDF serial RX queue, with echo. */
void console_init(void);

/* time.c */
uint64_t time_now_ns(void);

/* files.c: the FAT volume through the LionsOS fs protocol. */
void files_init(void);
void files_notified(void);
/* Mount the volume, retrying until the timeout: 0, the server's last refusal, or -1. */
int files_mount(uint64_t timeout_ns);
