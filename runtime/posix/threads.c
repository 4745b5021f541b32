/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Threads: POSIX threads as libmicrokitco cothreads and the futex (docs/threads.md).
 * How a cothread blocks (wait queues, deadlines, deferred wakes) is waitq.c.
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
 * libmicrokitco call that can switch (WRAPPED in chrysopolis/build/runtime.py):
 * the __wrap_ functions here save tpidr_el0 before the switch and restore it after, so
 * each cothread resumes with its own. musl's errno, pthread_self() and TLS follow.
 *
 * Blocking is waitq.c: a cothread parks on its own semaphore, and wakes are deferred
 * until the waker parks, yields or exits. When every cothread is parked, libmicrokitco
 * returns to the root, which returns from init()/notified() and the PD idles in seL4.
 *
 * The root. Its yield (pd.c calls microkit_cothread_yield() at the end of init() and
 * notified()) runs cothreads until all are parked; its recv_ntfn wakes every cothread
 * waiting on that channel (a libmicrokitco channel wait wakes one: LionsOS's fs wait
 * would lose the others) and every I/O waiter. The root never parks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libmicrokitco.h>

#include <chrysopolis/clocks.h>
#include <chrysopolis/costack.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/power.h>
#include <chrysopolis/supervision.h>
#include <chrysopolis/threads.h>
#include <chrysopolis/waitq.h>

#define ROOT 0
/* Root passes over a busy run queue before it returns to seL4 to take notifications
 * (an immediate timeout brings it back): cothreads spinning on sched_yield must not keep
 * fs completions and console input out. */
#define ROOT_ROUNDS 16
#define FUTEX_BUCKETS 64

/* musl's futex operations (src/internal/futex.h is not installed). */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE 128
#define FUTEX_CLOCK_REALTIME 256

struct cothread {
    int tid; /* 0: the main thread (musl's set_tid_address gave it 1) */
    volatile int *clear_tid;
    int (*fn)(void *);
    void *arg;
    uintptr_t tp;
};

static struct cothread cot[LIBMICROKITCO_MAX_COTHREADS];
static struct waitq futex_q[FUTEX_BUCKETS];
static struct waitq channel_q[MICROKIT_MAX_CHANNELS];
static int next_tid = 2;

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

static struct cothread *cot_of(microkit_cothread_ref_t h)
{
    return &cot[h];
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
        waitq_flush();
        tp_set(tp);
        if (!any_ready()) {
            break;
        }
        if (round == ROOT_ROUNDS) {
            waitq_arm(0); /* come back through notified() once pending notifications are in */
            break;
        }
        __real_microkit_cothread_yield();
        tp_set(tp);
    }
}

/* ---- the libmicrokitco calls every object of the image reaches through --wrap ---- */

/* The running cothread is about to switch away: its stack must not have overflowed. */
static void check_stack(void)
{
    microkit_cothread_ref_t h = microkit_cothread_my_handle();
    costack_check(h, cot_of(h)->tid == 0 ? 1 : cot_of(h)->tid);
}

void __wrap_microkit_cothread_yield(void)
{
    if (microkit_cothread_my_handle() == ROOT) {
        root_run();
        return;
    }
    waitq_flush();
    check_stack();
    uintptr_t tp = tp_get();
    __real_microkit_cothread_yield();
    tp_set(tp);
}

void __wrap_microkit_cothread_semaphore_wait(microkit_cothread_sem_t *sem)
{
    waitq_flush();
    check_stack();
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
        waitq_wait(&channel_q[ch], NULL, 0);
    }
}

/* Root, from notified(ch). */
void __wrap_microkit_cothread_recv_ntfn(const microkit_channel ch)
{
    if (ch == timer_config.driver_id) {
        waitq_timer_fired();
    }
    if (ch < MICROKIT_MAX_CHANNELS) {
        waitq_wake(&channel_q[ch], NULL, INT_MAX);
    }
    waitq_io_changed();
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
        waitq_wake(&futex_q[((uintptr_t)clear >> 2) % FUTEX_BUCKETS], clear, 1);
    }
    waitq_flush();
    check_stack();
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
    costack_arm(h);
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

/* musl maps a thread block of this stack size plus TLS; the cothread runs on its own stack,
 * so map the least. ERTS keeps the size it asked for as its C-stack limit (-sss and its
 * kin must fit the cothread stack: targets/beam/main.c). */
int __real_pthread_attr_setstacksize(pthread_attr_t *attr, size_t size);
int __wrap_pthread_attr_setstacksize(pthread_attr_t *attr, size_t size)
{
    (void)size;
    return __real_pthread_attr_setstacksize(attr, PTHREAD_STACK_MIN);
}

/* A detached thread's last act: its block and stack mapping go, and so does it. */
void __unmapself(void *base, size_t size)
{
    munmap(base, size);
    thread_exit();
}

/* ---- system calls ---- */

static struct waitq *futex_bucket(const volatile int *addr)
{
    return &futex_q[((uintptr_t)addr >> 2) % FUTEX_BUCKETS];
}

long sys_futex(long uaddr, long op, long val, long timeout, long uaddr2, long val3)
{
    volatile int *addr = (volatile int *)uaddr;
    const struct timespec *ts = (const struct timespec *)timeout;
    uint64_t deadline = 0;

    switch (op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)) {
    case FUTEX_WAIT:
    case FUTEX_WAIT_BITSET:
        if (ts != NULL) {
            if (!clocks_timespec_valid(ts)) {
                return -EINVAL;
            }
            if ((op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)) == FUTEX_WAIT) {
                deadline = clocks_now_ns() + clocks_timespec_ns(ts); /* relative */
            } else if (op & FUTEX_CLOCK_REALTIME) {
                uint64_t abs = clocks_timespec_ns(ts);
                deadline = abs > clocks_realtime_offset_ns ? abs - clocks_realtime_offset_ns : 1;
            } else {
                deadline = clocks_timespec_ns(ts) ? clocks_timespec_ns(ts) : 1; /* absolute monotonic */
            }
        }
        if (*addr != (int)val) {
            return -EAGAIN;
        }
        return waitq_wait(futex_bucket(addr), addr, deadline);
    case FUTEX_WAKE:
    case FUTEX_WAKE_BITSET:
        return waitq_wake(futex_bucket(addr), addr, (int)val);
    case FUTEX_CMP_REQUEUE:
        if (*addr != (int)val3) {
            return -EAGAIN;
        }
        /* fallthrough */
    case FUTEX_REQUEUE: {
        /* val2 (how many to requeue) travels in the timeout slot */
        int woken = waitq_wake(futex_bucket(addr), addr, (int)val);
        volatile int *to = (volatile int *)uaddr2;
        int moved = waitq_requeue(futex_bucket(addr), addr, futex_bucket(to), to, (int)timeout);
        return (op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)) == FUTEX_CMP_REQUEUE ? woken + moved : woken;
    }
    default:
        return -ENOSYS;
    }
}

long sys_sched_yield(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    if (waitq_halted()) {
        struct waitq never = {0};
        waitq_wait(&never, NULL, 0);
    }
    microkit_cothread_yield();
    return 0;
}

long sys_gettid(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    int tid = cot_of(microkit_cothread_my_handle())->tid;
    return tid ? tid : 1;
}

long sys_exit(long a, long b, long c, long d, long e, long f)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    if (microkit_cothread_my_handle() == ROOT) {
        return -EINVAL;
    }
    thread_exit();
}

/*
 * The end of the process is the end of the machine, unless the supervisor restarts the node
 * (supervision.c): power_off prints `beam_server: exit status N`, flushes the console and
 * powers off (PSCI SYSTEM_OFF). Should that fail, the PD says so, and every cothread parks
 * for good as it next waits.
 */
long sys_exit_group(long status, long b, long c, long d, long e, long f)
{
    (void)b, (void)c, (void)d, (void)e, (void)f;
    supervision_exit((int)status);
    power_off((int)status);
    waitq_halt();
    struct waitq never = {0};
    waitq_wait(&never, NULL, 0);
    return -EINVAL; /* the root (which cannot park) */
}

/*
 * Signals are never delivered (there is one process and no handler ever runs), but a
 * signal that only ends a process ends this one as Linux would, with status 128 + N:
 * abort() raises SIGABRT and then tkills itself with it before it would fault. Every
 * other signal (and 0, the probe) succeeds and does nothing.
 */
static long signal_self(long sig)
{
    switch (sig) {
    case SIGABRT:
    case SIGKILL:
    case SIGSEGV:
    case SIGBUS:
    case SIGILL:
    case SIGFPE:
    case SIGSYS:
    case SIGTRAP: {
        char line[96];
        int n = snprintf(line, sizeof(line), "beam_server: killed by signal %ld (%s)\n", sig,
                         strsignal((int)sig));
        write(STDERR_FILENO, line, (size_t)n);
        return sys_exit_group(128 + sig, 0, 0, 0, 0, 0);
    }
    default:
        return 0;
    }
}

long sys_kill(long pid, long sig, long c, long d, long e, long f)
{
    (void)pid, (void)c, (void)d, (void)e, (void)f;
    return signal_self(sig);
}

long sys_tkill(long tid, long sig, long c, long d, long e, long f)
{
    (void)tid, (void)c, (void)d, (void)e, (void)f;
    return signal_self(sig);
}

long sys_tgkill(long tgid, long tid, long sig, long d, long e, long f)
{
    (void)tgid, (void)tid, (void)d, (void)e, (void)f;
    return signal_self(sig);
}
