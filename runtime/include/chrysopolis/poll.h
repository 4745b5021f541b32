/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * poll.c: waiting for file descriptors: ppoll and pselect6, and the parking every poll
 * (epoll too) shares.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The earlier of two deadlines, 0 meaning none. */
uint64_t poll_earliest(uint64_t a, uint64_t b);
/* The monotonic deadline of a timeout in ms (<= 0: none). */
uint64_t poll_deadline_ms(long timeout_ms);
/* Common tail of every poll: nothing ready yet. Returns false when the caller must stop. */
bool poll_park(long timeout_ms, uint64_t deadline, uint64_t tfd_deadline);

long sys_ppoll(long fdsp, long nfds, long tsp, long sigmask, long sigsetsize, long f);
long sys_pselect6(long nfds, long rdp, long wrp, long exp, long tsp, long sigp);
