/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Wait queues: the one way a cothread blocks (docs/threads.md).
 *
 * A waiting cothread puts a waiter record (on its stack) on a wait queue and, for a
 * timed wait, on the deadline list, then parks on its own libmicrokitco semaphore.
 * A wake takes the matching waiters off their queues and defers them: a libmicrokitco
 * signal switches to the woken cothread at once, and ERTS wakes threads while it holds
 * spinlocks the woken thread then spins on, so the signals are sent only when the waker
 * itself parks, yields or exits (as on Linux, where a wake does not give the CPU away).
 * The root sends them too before it goes idle (threads.c). The sDDF timer keeps one
 * timeout per client: it is armed for the earliest deadline.
 *
 * The semaphore calls below go through threads.c's --wrap functions, which keep the
 * thread pointer with its cothread across the switch.
 */
#include <errno.h>
#include <limits.h>

#include <libmicrokitco.h>
#include <sddf/timer/client.h>

#include <chrysopolis/clocks.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/waitq.h>

#define ROOT 0

enum waiter_state { W_WAITING, W_WOKEN, W_TIMEDOUT };

struct waitq_waiter {
    struct waitq_waiter *prev, *next; /* on its wait queue */
    struct waitq *q;
    const volatile void *key;
    uint64_t deadline; /* 0: none */
    struct waitq_waiter *tprev, *tnext; /* on the deadline list, when deadline != 0 */
    struct waitq_waiter *wake_next; /* on a wake batch */
    microkit_cothread_ref_t co;
    enum waiter_state state;
};

struct waitq waitq_io;

static struct {
    bool ready; /* initialised */
    microkit_cothread_sem_t sem;
} park[LIBMICROKITCO_MAX_COTHREADS];
static struct waitq_waiter *timed; /* sorted by deadline */
static uint64_t armed = UINT64_MAX;
static bool halted;
static struct waitq_waiter *pending;
static struct waitq_waiter **pending_tail = &pending;

static microkit_cothread_sem_t *park_sem(microkit_cothread_ref_t h)
{
    if (!park[h].ready) {
        microkit_cothread_semaphore_init(&park[h].sem);
        park[h].ready = true;
    }
    return &park[h].sem;
}

static void q_append(struct waitq *q, struct waitq_waiter *w)
{
    w->q = q;
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail) {
        q->tail->next = w;
    } else {
        q->head = w;
    }
    q->tail = w;
}

static void q_remove(struct waitq_waiter *w)
{
    struct waitq *q = w->q;
    if (w->prev) {
        w->prev->next = w->next;
    } else {
        q->head = w->next;
    }
    if (w->next) {
        w->next->prev = w->prev;
    } else {
        q->tail = w->prev;
    }
    w->q = NULL;
    w->prev = w->next = NULL;
}

void waitq_arm(uint64_t deadline)
{
    uint64_t now = clocks_now_ns();
    sddf_timer_set_timeout(timer_config.driver_id, deadline > now ? deadline - now : 0);
    armed = deadline;
}

static void timed_insert(struct waitq_waiter *w)
{
    struct waitq_waiter **pp = &timed, *prev = NULL;
    while (*pp && (*pp)->deadline <= w->deadline) {
        prev = *pp;
        pp = &(*pp)->tnext;
    }
    w->tprev = prev;
    w->tnext = *pp;
    if (*pp) {
        (*pp)->tprev = w;
    }
    *pp = w;
    if (w->deadline < armed) {
        waitq_arm(w->deadline);
    }
}

static void timed_remove(struct waitq_waiter *w)
{
    if (w->deadline == 0) {
        return;
    }
    if (w->tprev) {
        w->tprev->tnext = w->tnext;
    } else {
        timed = w->tnext;
    }
    if (w->tnext) {
        w->tnext->tprev = w->tprev;
    }
    w->tprev = w->tnext = NULL;
    w->deadline = 0;
}

/* Defer a batch of waiters already taken off their queues (see the top of this file). */
static void wake_batch(struct waitq_waiter *batch)
{
    if (batch == NULL) {
        return;
    }
    *pending_tail = batch;
    while (batch->wake_next != NULL) {
        batch = batch->wake_next;
    }
    pending_tail = &batch->wake_next;
}

void waitq_flush(void)
{
    while (pending != NULL) {
        struct waitq_waiter *w = pending; /* it lives on a stack that unwinds once signalled */
        pending = w->wake_next;
        if (pending == NULL) {
            pending_tail = &pending;
        }
        microkit_cothread_semaphore_signal(park_sem(w->co));
    }
}

int waitq_wait(struct waitq *q, const volatile void *key, uint64_t deadline_ns)
{
    microkit_cothread_ref_t h = microkit_cothread_my_handle();
    if (h == ROOT) {
        return -EAGAIN;
    }
    if (deadline_ns != 0 && deadline_ns <= clocks_now_ns()) {
        return -ETIMEDOUT;
    }
    struct waitq_waiter w = {.key = key, .deadline = deadline_ns, .co = h, .state = W_WAITING};
    q_append(q, &w);
    if (deadline_ns != 0) {
        timed_insert(&w);
    }
    while (w.state == W_WAITING || halted) {
        /* the wrapped wait flushes the deferred wakes first */
        microkit_cothread_semaphore_wait(park_sem(h));
    }
    return w.state == W_WOKEN ? 0 : -ETIMEDOUT;
}

int waitq_wake(struct waitq *q, const volatile void *key, int max)
{
    struct waitq_waiter *batch = NULL, **tail = &batch;
    int n = 0;
    for (struct waitq_waiter *w = q->head, *next; w != NULL && n < max; w = next) {
        next = w->next;
        if (key != NULL && w->key != key) {
            continue;
        }
        q_remove(w);
        timed_remove(w);
        w->state = W_WOKEN;
        w->wake_next = NULL;
        *tail = w;
        tail = &w->wake_next;
        n++;
    }
    wake_batch(batch);
    return n;
}

int waitq_requeue(struct waitq *from, const volatile void *key, struct waitq *to, const volatile void *to_key,
                  int max)
{
    int n = 0;
    for (struct waitq_waiter *w = from->head, *next; w != NULL && n < max; w = next) {
        next = w->next;
        if (w->key != key) {
            continue;
        }
        q_remove(w);
        w->key = to_key;
        q_append(to, w);
        n++;
    }
    return n;
}

void waitq_io_changed(void)
{
    waitq_wake(&waitq_io, NULL, INT_MAX);
}

/* Sleeping: a wait on a queue nobody wakes, until the deadline. */
int waitq_sleep_until(uint64_t deadline_ns)
{
    struct waitq q = {0};
    while (clocks_now_ns() < deadline_ns) {
        if (waitq_wait(&q, NULL, deadline_ns) == -EAGAIN) {
            return -EAGAIN;
        }
    }
    return 0;
}

void waitq_timer_fired(void)
{
    armed = UINT64_MAX;
    uint64_t now = clocks_now_ns();
    struct waitq_waiter *batch = NULL, **tail = &batch;
    while (timed != NULL && timed->deadline <= now) {
        struct waitq_waiter *w = timed;
        timed_remove(w);
        q_remove(w);
        w->state = W_TIMEDOUT;
        w->wake_next = NULL;
        *tail = w;
        tail = &w->wake_next;
    }
    if (timed != NULL) {
        waitq_arm(timed->deadline);
    }
    wake_batch(batch);
}

void waitq_halt(void)
{
    halted = true;
}

bool waitq_halted(void)
{
    return halted;
}
