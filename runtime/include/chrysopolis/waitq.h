/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * waitq.c: wait queues, the one way a cothread blocks (docs/threads.md). A wait parks
 * the cothread until a wake reaches it or its deadline passes; wakes are deferred until
 * the waker gives the CPU away. The futex, pipes, polls, the fs lock and sleeps wait here.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct waitq_waiter;
/* Cothreads parked on something; zero-initialised is empty. */
struct waitq {
    struct waitq_waiter *head;
    struct waitq_waiter *tail;
};

/* Waiters for "some file descriptor may have changed": every poll/epoll/select and every
 * blocking pipe or timerfd read parks here; fd state changes and notifications wake it. */
extern struct waitq waitq_io;

/*
 * Park the calling cothread on `q` until waitq_wake() reaches it (returns 0) or the
 * monotonic `deadline_ns` passes (-ETIMEDOUT); 0 means no deadline. `key` is what
 * waitq_wake() matches (NULL matches any wake). The root thread never parks: there it
 * returns -EAGAIN at once. Callers re-check their condition: a wake can be early.
 */
int waitq_wait(struct waitq *q, const volatile void *key, uint64_t deadline_ns);
/* Wake up to `max` cothreads parked on `q` with `key` (NULL: any key); returns how many. */
int waitq_wake(struct waitq *q, const volatile void *key, int max);
/* Move up to `max` waiters with `key` on `from` to `to`, now waiting with `to_key`. */
int waitq_requeue(struct waitq *from, const volatile void *key, struct waitq *to, const volatile void *to_key,
                  int max);
/* Wake every waiter of waitq_io. */
void waitq_io_changed(void);
/* Park the calling cothread until the monotonic deadline (0; -EAGAIN from the root). */
int waitq_sleep_until(uint64_t deadline_ns);

/* Signal the deferred wakes: the caller is about to give the CPU away. */
void waitq_flush(void);
/* Root, on a timer notification: time out what is due, re-arm for the next deadline. */
void waitq_timer_fired(void);
/* Ask the timer for a notification at `deadline_ns` (0: at once). */
void waitq_arm(uint64_t deadline_ns);
/* The PD stops: from now on every cothread parks for good as it next waits. */
void waitq_halt(void);
bool waitq_halted(void);
