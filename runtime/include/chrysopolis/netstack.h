/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * netstack.c: lwIP in beam_server over the sDDF net queues, run by one pthread, netd
 * (docs/threads.md, "netd"; docs/architecture.md, "The network").
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <microkit.h>

/* Start netd: it brings eth0 up and starts DHCP, and returns at once (the boot does not
 * wait for an address). 0, or an errno from pthread_create. */
int netstack_start(void);
/* Root, from notified(): a notification from the net virtualisers wakes netd. */
void netstack_notified(microkit_channel ch);
/* Send the notification lib_sddf_lwip deferred (Microkit would send it only when the root
 * next returns to seL4, many ERTS slices later). Any cothread that called into lwIP. */
void netstack_flush(void);
/* lwIP is initialised: a socket call may enter it (netd does it at its first run). */
bool netstack_up(void);
/* End of every socket call that entered lwIP (a non-root cothread): drain the loopback
 * queue (so 127.0.0.1 replies do not wait for netd), send the deferred TX notification,
 * and wake netd if the loopback queue still holds frames. */
void netstack_after_call(void);
