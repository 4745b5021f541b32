/*
 * Threads: POSIX threads as libmicrokitco cothreads, the futex, and the waits of the
 * runtime adapter.
 *
 * musl's own pthread code runs unchanged. pthread_create maps a thread block (struct
 * pthread, static TLS, a stack) and calls __clone, which is ours: the thread becomes a
 * cothread (on its libmicrokitco stack; musl's stack mapping stays unused) whose thread
 * pointer is the block musl built. Mutexes, condvars, rwlocks, keys, once, join and
 * detach then only need the futex below, and the ids CLONE_PARENT_SETTID and
 * CLONE_CHILD_CLEARTID ask for. __unmapself (a detached thread freeing its own block)
 * is ours too: musl's generic one jumps to a 256-byte stack, too small for our exit.
 *
 * The thread pointer. tpidr_el0 belongs to the running cothread. A cothread only loses
 * the CPU inside a libmicrokitco call, and the image is linked with `--wrap` for every
 * libmicrokitco call that can switch (THREADS_WRAPPED in chrysopolis/build/runtime.py):
 * the __wrap_ functions here save tpidr_el0 before the switch and restore it after, so
 * each cothread resumes with its own. musl's errno, pthread_self() and TLS follow.
 *
 * Blocking. A waiting cothread puts a waiter record (on its stack) on a wait queue and,
 * for a timed wait, on the deadline list, then parks on its own libmicrokitco semaphore.
 * A wake takes the matching waiters off their queues and defers them: a libmicrokitco
 * signal switches to the woken cothread at once, and ERTS wakes threads while it holds
 * spinlocks the woken thread then spins on, so the signals are sent only when the waker
 * itself parks, yields or exits (as on Linux, where a wake does not give the CPU away).
 * The root sends them too before it goes idle. When every cothread is parked, libmicrokitco
 * returns to the root, which returns from init()/notified() and the PD idles in seL4.
 * The sDDF timer keeps one timeout per client: it is armed for the earliest deadline.
 *
 * The root. Its yield (pd.c calls microkit_cothread_yield() at the end of init() and
 * notified()) runs cothreads until all are parked; its recv_ntfn wakes every cothread
 * waiting on that channel (a libmicrokitco channel wait wakes one: LionsOS's fs wait
 * would lose the others) and every I/O waiter. The root never parks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libmicrokitco.h>
#include <sddf/timer/client.h>

#include "adapter.h"
#include "chrysopolis.h"

#define ROOT 0
/* Root passes over a busy run queue before it returns to seL4 to take notifications
 * (an immediate timeout brings it back): cothreads spinning on sched_yield must not keep
 * fs completions and console input out. */
#define ROOT_ROUNDS 16
#define FUTEX_BUCKETS 64
#define NS_PER_S 1000000000ULL

/* musl's futex operations (src/internal/futex.h is not installed). */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE 128
#define FUTEX_CLOCK_REALTIME 256

enum waiter_state { W_WAITING, W_WOKEN, W_TIMEDOUT };

struct waiter {
    struct waiter *prev, *next; /* on its wait queue */
    struct waitq *q;
    const volatile void *key;
    uint64_t deadline; /* 0: none */
    struct waiter *tprev, *tnext; /* on the deadline list, when deadline != 0 */
    struct waiter *wake_next; /* on a wake batch */
    microkit_cothread_ref_t co;
    enum waiter_state state;
};

struct cothread {
    bool ready; /* park semaphore initialised */
    microkit_cothread_sem_t park;
    int tid; /* 0: the main thread (musl's set_tid_address gave it 1) */
    volatile int *clear_tid;
    int (*fn)(void *);
    void *arg;
    uintptr_t tp;
};

struct waitq runtime_io_waitq;

static struct cothread cot[LIBMICROKITCO_MAX_COTHREADS];
static struct waitq futex_q[FUTEX_BUCKETS];
static struct waitq channel_q[MICROKIT_MAX_CHANNELS];
static struct waiter *timed; /* sorted by deadline */
static uint64_t armed = UINT64_MAX;
static int next_tid = 2;
static bool halted;

void __real_microkit_cothread_yield(void);
void __real_microkit_cothread_semaphore_wait(microkit_cothread_sem_t *sem);
void __real_microkit_cothread_semaphore_signal(microkit_cothread_sem_t *sem);

static inline uintptr_t tp_get(void)
{
    uintptr_t tp;
    __asm__ volatile("mrs %0, tpidr_el0" : "=r"(tp));
    return tp;
}

static inline void tp_set(uintptr_t tp)
{
    __asm__ volatile("msr tpidr_el0, %0" ::"r"(tp) : "memory");
}

uint64_t runtime_now_ns(void)
{
    return time_now_ns();
}

static struct cothread *cot_of(microkit_cothread_ref_t h)
{
    struct cothread *c = &cot[h];
    if (!c->ready) {
        microkit_cothread_semaphore_init(&c->park);
        c->ready = true;
    }
    return c;
}

/* ---- wait queues and the deadline list ---- */

static void q_append(struct waitq *q, struct waiter *w)
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

static void q_remove(struct waiter *w)
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

static void arm(uint64_t deadline)
{
    uint64_t now = runtime_now_ns();
    sddf_timer_set_timeout(timer_config.driver_id, deadline > now ? deadline - now : 0);
    armed = deadline;
}

static void timed_insert(struct waiter *w)
{
    struct waiter **pp = &timed, *prev = NULL;
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
        arm(w->deadline);
    }
}

static void timed_remove(struct waiter *w)
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

/* Switch-safe libmicrokitco calls: the thread pointer is the caller's again on return. */
static void park_self(microkit_cothread_ref_t h)
{
    uintptr_t tp = tp_get();
    __real_microkit_cothread_semaphore_wait(&cot_of(h)->park);
    tp_set(tp);
}

static void unpark(microkit_cothread_ref_t h)
{
    uintptr_t tp = tp_get();
    __real_microkit_cothread_semaphore_signal(&cot_of(h)->park);
    tp_set(tp);
}

static struct waiter *pending;
static struct waiter **pending_tail = &pending;

/* Defer a batch of waiters already taken off their queues (see "Blocking" above). */
static void wake_batch(struct waiter *batch)
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

/* Signal the deferred waiters: only where the caller is about to give the CPU away. */
static void flush_wakes(void)
{
    while (pending != NULL) {
        struct waiter *w = pending; /* it lives on a stack that unwinds once signalled */
        pending = w->wake_next;
        if (pending == NULL) {
            pending_tail = &pending;
        }
        unpark(w->co);
    }
}

int threads_wait(struct waitq *q, const volatile void *key, uint64_t deadline_ns)
{
    microkit_cothread_ref_t h = microkit_cothread_my_handle();
    if (h == ROOT) {
        return -EAGAIN;
    }
    if (deadline_ns != 0 && deadline_ns <= runtime_now_ns()) {
        return -ETIMEDOUT;
    }
    struct waiter w = {.key = key, .deadline = deadline_ns, .co = h, .state = W_WAITING};
    q_append(q, &w);
    if (deadline_ns != 0) {
        timed_insert(&w);
    }
    while (w.state == W_WAITING || halted) {
        flush_wakes();
        park_self(h);
    }
    return w.state == W_WOKEN ? 0 : -ETIMEDOUT;
}

int threads_wake(struct waitq *q, const volatile void *key, int max)
{
    struct waiter *batch = NULL, **tail = &batch;
    int n = 0;
    for (struct waiter *w = q->head, *next; w != NULL && n < max; w = next) {
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

void runtime_io_changed(void)
{
    threads_wake(&runtime_io_waitq, NULL, INT_MAX);
}

/* Root, on a timer notification: time out what is due, re-arm for the next deadline. */
static void timer_fired(void)
{
    armed = UINT64_MAX;
    uint64_t now = runtime_now_ns();
    struct waiter *batch = NULL, **tail = &batch;
    while (timed != NULL && timed->deadline <= now) {
        struct waiter *w = timed;
        timed_remove(w);
        q_remove(w);
        w->state = W_TIMEDOUT;
        w->wake_next = NULL;
        *tail = w;
        tail = &w->wake_next;
    }
    if (timed != NULL) {
        arm(timed->deadline);
    }
    wake_batch(batch);
}

static bool any_ready(void)
{
    for (microkit_cothread_ref_t h = 1; h < LIBMICROKITCO_MAX_COTHREADS; h++) {
        if (microkit_cothread_query_state(h) == cothread_ready) {
            return true;
        }
    }
    return false;
}

/* Root: run cothreads until every one is parked (or ROOT_ROUNDS passes, see above). */
static void root_run(void)
{
    uintptr_t tp = tp_get();
    for (int round = 0;; round++) {
        flush_wakes();
        tp_set(tp);
        if (!any_ready()) {
            break;
        }
        if (round == ROOT_ROUNDS) {
            arm(0); /* come back through notified() once pending notifications are in */
            break;
        }
        __real_microkit_cothread_yield();
        tp_set(tp);
    }
}

/* ---- the libmicrokitco calls every object of the image reaches through --wrap ---- */

void __wrap_microkit_cothread_yield(void)
{
    if (microkit_cothread_my_handle() == ROOT) {
        root_run();
        return;
    }
    flush_wakes();
    uintptr_t tp = tp_get();
    __real_microkit_cothread_yield();
    tp_set(tp);
}

void __wrap_microkit_cothread_semaphore_wait(microkit_cothread_sem_t *sem)
{
    flush_wakes();
    uintptr_t tp = tp_get();
    __real_microkit_cothread_semaphore_wait(sem);
    tp_set(tp);
}

void __wrap_microkit_cothread_semaphore_signal(microkit_cothread_sem_t *sem)
{
    uintptr_t tp = tp_get();
    __real_microkit_cothread_semaphore_signal(sem);
    tp_set(tp);
}

/* Every cothread waiting on `ch` wakes on its next notification (re-checking its cause). */
void __wrap_microkit_cothread_wait_on_channel(const microkit_channel ch)
{
    if (ch < MICROKIT_MAX_CHANNELS) {
        threads_wait(&channel_q[ch], NULL, 0);
    }
}

/* Root, from notified(ch). */
void __wrap_microkit_cothread_recv_ntfn(const microkit_channel ch)
{
    if (ch == timer_config.driver_id) {
        timer_fired();
    }
    if (ch < MICROKIT_MAX_CHANNELS) {
        threads_wake(&channel_q[ch], NULL, INT_MAX);
    }
    runtime_io_changed();
}

/* ---- clone and exit ---- */

static _Noreturn void thread_exit(void)
{
    microkit_cothread_ref_t h = microkit_cothread_my_handle();
    struct cothread *c = cot_of(h);
    volatile int *clear = c->clear_tid;
    c->clear_tid = NULL;
    c->tid = 0;
    if (clear != NULL) {
        /* What the kernel does for CLONE_CHILD_CLEARTID: musl's join waits for it. This
         * may run the joiner, which frees the thread block: touch no TLS from here on. */
        *clear = 0;
        threads_wake(&futex_q[((uintptr_t)clear >> 2) % FUTEX_BUCKETS], clear, 1);
    }
    flush_wakes();
    microkit_cothread_destroy(h); /* frees the handle and switches away for good */
    for (;;) {
    }
}

static void thread_entry(void)
{
    struct cothread *c = cot_of(microkit_cothread_my_handle());
    tp_set(c->tp);
    c->fn(c->arg);
    thread_exit();
}

/* musl's pthread_create (and posix_spawn/faccessat, which want a process: refused). */
int __clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
    const int thread = CLONE_VM | CLONE_THREAD | CLONE_SETTLS;
    (void)stack; /* the cothread runs on its libmicrokitco stack */
    if ((flags & thread) != thread) {
        return -ENOSYS;
    }
    va_list ap;
    va_start(ap, arg);
    int *ptid = va_arg(ap, int *);
    void *tls = va_arg(ap, void *);
    int *ctid = va_arg(ap, int *);
    va_end(ap);

    /* An exited thread frees its handle only once it runs again after waking its joiner:
     * if none is free, let such threads (ready in the run queue) finish first. */
    microkit_cothread_ref_t h;
    for (int tries = 0; (h = microkit_cothread_spawn(thread_entry, NULL)) == LIBMICROKITCO_NULL_HANDLE;
         tries++) {
        if (tries == LIBMICROKITCO_MAX_COTHREADS || microkit_cothread_my_handle() == ROOT) {
            return -EAGAIN;
        }
        microkit_cothread_yield();
    }
    struct cothread *c = cot_of(h); /* the new cothread runs only once we park or yield */
    c->tid = next_tid++;
    c->fn = fn;
    c->arg = arg;
    c->tp = (uintptr_t)tls;
    c->clear_tid = (flags & CLONE_CHILD_CLEARTID) ? ctid : NULL;
    if (flags & CLONE_PARENT_SETTID) {
        *ptid = c->tid;
    }
    return c->tid;
}

/* A detached thread's last act: its block and stack mapping go, and so does it. */
void __unmapself(void *base, size_t size)
{
    munmap(base, size);
    thread_exit();
}

/* ---- system calls ---- */

static uint64_t timespec_ns(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * NS_PER_S + (uint64_t)ts->tv_nsec;
}

static bool timespec_valid(const struct timespec *ts)
{
    return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && (uint64_t)ts->tv_nsec < NS_PER_S;
}

static struct waitq *futex_bucket(const volatile int *addr)
{
    return &futex_q[((uintptr_t)addr >> 2) % FUTEX_BUCKETS];
}

/* Move up to `max` waiters on `from` to `to` (as futex waiters there); returns how many. */
static int futex_requeue(volatile int *from, volatile int *to, int max)
{
    struct waitq *q = futex_bucket(from), *dest = futex_bucket(to);
    int n = 0;
    for (struct waiter *w = q->head, *next; w != NULL && n < max; w = next) {
        next = w->next;
        if (w->key != from) {
            continue;
        }
        q_remove(w);
        w->key = to;
        q_append(dest, w);
        n++;
    }
    return n;
}

static long sys_futex(long uaddr, long op, long val, long timeout, long uaddr2, long val3)
{
    volatile int *addr = (volatile int *)uaddr;
    const struct timespec *ts = (const struct timespec *)timeout;
    uint64_t deadline = 0;

    switch (op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)) {
    case FUTEX_WAIT:
    case FUTEX_WAIT_BITSET:
        if (ts != NULL) {
            if (!timespec_valid(ts)) {
                return -EINVAL;
            }
            if ((op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)) == FUTEX_WAIT) {
                deadline = runtime_now_ns() + timespec_ns(ts); /* relative */
            } else if (op & FUTEX_CLOCK_REALTIME) {
                uint64_t abs = timespec_ns(ts);
                deadline = abs > runtime_realtime_offset_ns ? abs - runtime_realtime_offset_ns : 1;
            } else {
                deadline = timespec_ns(ts) ? timespec_ns(ts) : 1; /* absolute monotonic */
            }
        }
        if (*addr != (int)val) {
            return -EAGAIN;
        }
        return threads_wait(futex_bucket(addr), addr, deadline);
    case FUTEX_WAKE:
    case FUTEX_WAKE_BITSET:
        return threads_wake(futex_bucket(addr), addr, (int)val);
    case FUTEX_CMP_REQUEUE:
        if (*addr != (int)val3) {
            return -EAGAIN;
        }
        /* fallthrough */
    case FUTEX_REQUEUE: {
        /* val2 (how many to requeue) travels in the timeout slot */
        int woken = threads_wake(futex_bucket(addr), addr, (int)val);
        int moved = futex_requeue(addr, (volatile int *)uaddr2, (int)timeout);
        return (op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)) == FUTEX_CMP_REQUEUE ? woken + moved : woken;
    }
    default:
        return -ENOSYS;
    }
}

static long sys_sched_yield(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    if (halted) {
        struct waitq never = {0};
        threads_wait(&never, NULL, 0);
    }
    microkit_cothread_yield();
    return 0;
}

static long sys_gettid(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    int tid = cot_of(microkit_cothread_my_handle())->tid;
    return tid ? tid : 1;
}

static long sys_exit(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    if (microkit_cothread_my_handle() == ROOT) {
        return -EINVAL;
    }
    thread_exit();
}

/* The PD cannot stop: it says so, and every cothread parks for good as it next waits. */
static long sys_exit_group(long status, long b, long c, long d, long e, long f)
{
    (void)b, (void)c, (void)d, (void)e, (void)f;
    char line[64];
    int n = snprintf(line, sizeof(line), "beam_server: exit status %d\n", (int)status);
    write(STDOUT_FILENO, line, (size_t)n);
    halted = true;
    struct waitq never = {0};
    threads_wait(&never, NULL, 0);
    return -EINVAL; /* the root (which cannot park) */
}

/* Sleeping: a wait on a queue nobody wakes, until the deadline. */
int threads_sleep_until(uint64_t deadline_ns)
{
    struct waitq q = {0};
    while (runtime_now_ns() < deadline_ns) {
        if (threads_wait(&q, NULL, deadline_ns) == -EAGAIN) {
            return -EAGAIN;
        }
    }
    return 0;
}

void threads_init_syscalls(void)
{
    runtime_define_syscall(SYS_futex, sys_futex);
    runtime_define_syscall(SYS_sched_yield, sys_sched_yield);
    runtime_define_syscall(SYS_gettid, sys_gettid);
    runtime_define_syscall(SYS_exit, sys_exit);
    runtime_define_syscall(SYS_exit_group, sys_exit_group);
}
