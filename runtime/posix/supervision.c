/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * beam_server's side of the supervisor's protocol page (chrysopolis/supervisor.h): what
 * Erlang's `chrysopolis` module reads and asks (erlang/chrysopolis.erl).
 *
 *   /proc/pds          one line per supervised PD: its state, restart settings, restarts
 *                      and last fault (a snapshot at open)
 *   /proc/pds_events   the events still in the ring, each with its sequence number (the
 *                      reader keeps the last it saw; the ring holds SUP_MAX_EVENTS)
 *   /dev/supervisor    write "restart NAME\n": the supervisor restarts NAME if the system
 *                      description lets the BEAM ask; the write returns when it answered
 *                      (ENOENT: no such PD, EPERM: not allowed, ESRCH: stopped for good)
 *
 * The node's end goes to the supervisor first (supervision_exit): it restarts the node on a
 * fatal error within beam_server's budget, like OTP's heart, unless this boot says
 * `opt/chrysopolis/restart=off` in fw_cfg (`run --eval`: a batch ends with its status).
 *
 * In an image without a supervisor, sup_status is 0 and none of these exist.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <libmicrokitco.h>
#include <microkit.h>

#include <chrysopolis/fd_proc.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/fwcfg.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/power.h>
#include <chrysopolis/supervision.h>
#include <chrysopolis/supervisor.h>
#include <chrysopolis/time.h>
#include <chrysopolis/waitq.h>

/* Set by the Microkit tool (setvar); 0 without a supervisor. */
uintptr_t sup_status;

#define ANSWER_NS (2ULL * 1000 * 1000 * 1000) /* the supervisor answers in microseconds */

#define EXIT_ANSWER_NS (100ULL * 1000 * 1000) /* it runs at once: it outranks us */
#define FLUSH_NS (1000ULL * 1000 * 1000)
#define FWCFG_RESTART "opt/chrysopolis/restart"

static struct waitq answered;
static bool restart_off;
static volatile bool out_of_memory;

static volatile struct sup_page *page(void)
{
    volatile struct sup_page *p = (volatile struct sup_page *)sup_status;
    return p != NULL && p->magic == SUP_MAGIC && p->version == SUP_VERSION ? p : NULL;
}

/* The supervised PD `name` on the page, or NULL (no such PD, or no supervisor). */
static volatile struct sup_pd *pd_named(const char *name)
{
    volatile struct sup_page *p = page();
    for (uint32_t i = 0; p != NULL && i < p->n_pds && i < SUP_MAX_PDS; i++) {
        if (strncmp((const char *)p->pds[i].name, name, SUP_NAME_LEN) == 0) {
            return &p->pds[i];
        }
    }
    return NULL;
}

uint32_t supervision_restarts(const char *name)
{
    volatile struct sup_pd *d = pd_named(name);
    return d != NULL ? d->restarts : 0;
}

static const char *word(uint32_t v, const char *const *words, uint32_t n)
{
    return v < n ? words[v] : "unknown";
}

static const char *const states[] = {"running", "restarting", "stopped"};
static const char *const restarts[] = {"permanent", "transient", "temporary"};
static const char *const giveups[] = {"stop", "poweroff"};
static const char *const faults[] = {"none",  "vmfault", "user_exception", "cap_fault", "unknown_syscall",
                                     "other", "exit"};
static const char *const events[] = {"none", "fault", "restart", "up", "giveup"};
#define N(a) (uint32_t)(sizeof(a) / sizeof(a[0]))

/* A consistent copy of the table: the supervisor's seq is even and the same around it. */
static uint32_t copy_pds(volatile struct sup_page *p, struct sup_pd *out)
{
    for (;;) {
        uint32_t seq = p->seq;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        uint32_t n = p->n_pds < SUP_MAX_PDS ? p->n_pds : SUP_MAX_PDS;
        memcpy(out, (const void *)p->pds, n * sizeof(*out));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (seq % 2 == 0 && p->seq == seq) {
            return n;
        }
    }
}

static size_t pds_fill(char *buf, size_t size)
{
    volatile struct sup_page *p = page();
    static struct sup_pd pds[SUP_MAX_PDS];
    uint32_t n = p != NULL ? copy_pds(p, pds) : 0;
    size_t len = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct sup_pd *d = &pds[i];
        len += (size_t)snprintf(
            buf + (len < size ? len : size), len < size ? size - len : 0,
            "%.*s %s %s %u %u %s %s %u %s 0x%llx 0x%llx %llu\n", SUP_NAME_LEN, d->name,
            word(d->state, states, N(states)), word(d->restart, restarts, N(restarts)), d->intensity,
            d->period_ms, word(d->on_giveup, giveups, N(giveups)), d->may_restart ? "true" : "false",
            d->restarts, word(d->last_fault.kind, faults, N(faults)), (unsigned long long)d->last_fault.addr,
            (unsigned long long)d->last_fault.ip, (unsigned long long)d->last_fault.t_ns);
    }
    return len;
}

static size_t events_fill(char *buf, size_t size)
{
    volatile struct sup_page *p = page();
    if (p == NULL) {
        return 0;
    }
    static struct sup_pd pds[SUP_MAX_PDS];
    uint32_t n = copy_pds(p, pds);
    uint32_t head = p->event_head;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    uint32_t first = head > SUP_MAX_EVENTS ? head - SUP_MAX_EVENTS : 0;
    size_t len = 0;
    for (uint32_t s = first; s < head; s++) {
        struct sup_event e;
        memcpy(&e, (const void *)&p->events[s % SUP_MAX_EVENTS], sizeof(e));
        const char *pd = e.pd < n ? pds[e.pd].name : "?";
        len += (size_t)snprintf(buf + (len < size ? len : size), len < size ? size - len : 0,
                                "%u %s %.*s %u %u %s 0x%llx 0x%llx %llu\n", s + 1,
                                word(e.kind, events, N(events)), SUP_NAME_LEN, pd, e.n, e.m,
                                word(e.fault.kind, faults, N(faults)), (unsigned long long)e.fault.addr,
                                (unsigned long long)e.fault.ip, (unsigned long long)e.fault.t_ns);
    }
    return len;
}

/* Ask the supervisor and wait for its answer: 0 or -errno. */
static long ask(uint32_t op, const char *name, size_t name_len)
{
    volatile struct sup_page *p = page();
    static struct sup_pd pds[SUP_MAX_PDS];
    uint32_t n = copy_pds(p, pds);
    uint32_t pd = n;
    for (uint32_t i = 0; i < n; i++) {
        if (strnlen(pds[i].name, SUP_NAME_LEN) == name_len && memcmp(pds[i].name, name, name_len) == 0) {
            pd = i;
        }
    }
    if (pd == n) {
        return -ENOENT;
    }
    uint32_t seq = p->request.seq + 1;
    p->request.op = op;
    p->request.pd = pd;
    p->request.arg = 0;
    p->request.cause = 0;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    p->request.seq = seq;
    microkit_notify(sup_channel);
    uint64_t deadline = time_now_ns() + ANSWER_NS;
    while (p->reply.seq != seq) {
        if (waitq_wait(&answered, NULL, deadline) == -ETIMEDOUT) {
            return -ETIMEDOUT;
        }
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    switch (p->reply.result) {
    case SUP_OK:
        return 0;
    case SUP_ERR_UNKNOWN:
        return -ENOENT;
    case SUP_ERR_NOT_ALLOWED:
        return -EPERM;
    default:
        return -ESRCH;
    }
}

static ssize_t ctl_write(const void *buf, size_t len, int fd)
{
    (void)fd;
    const char *s = buf;
    size_t n = len > 0 && s[len - 1] == '\n' ? len - 1 : len;
    static const char restart[] = "restart ";
    if (n <= sizeof(restart) - 1 || memcmp(s, restart, sizeof(restart) - 1) != 0) {
        return -EINVAL;
    }
    long r = ask(SUP_OP_RESTART, s + sizeof(restart) - 1, n - (sizeof(restart) - 1));
    return r < 0 ? r : (ssize_t)len;
}

static ssize_t ctl_read(void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return 0;
}

static int ctl_fstat(int fd, struct stat *st)
{
    (void)fd;
    return fds_stat_mode(st, S_IFCHR | 0200);
}

static const struct fd_ops ctl_ops = {
    .name = "/dev/supervisor", .read = ctl_read, .write = ctl_write, .fstat = ctl_fstat, .offsetless = true};

long supervision_open(const char *path, int flags)
{
    if (strcmp(path, "/dev/supervisor") != 0) {
        return 1;
    }
    if (page() == NULL) {
        return -ENOENT;
    }
    return fds_open(&ctl_ops, NULL, flags);
}

long supervision_stat(const char *path, struct stat *st)
{
    if (strcmp(path, "/dev/supervisor") != 0) {
        return 1;
    }
    return page() != NULL ? ctl_fstat(-1, st) : -ENOENT;
}

/* The PDs a file call needs (runtime/pd/files.c fails it once one is stopped for good). */
static const char *const file_pds[] = {"fatfs", "blk_virt", "blk_driver"};

bool supervision_files_gone(void)
{
    for (uint32_t k = 0; k < N(file_pds); k++) {
        volatile struct sup_pd *d = pd_named(file_pds[k]);
        if (d != NULL && d->state == SUP_STOPPED) {
            return true;
        }
    }
    return false;
}

void supervision_notified(microkit_channel ch)
{
    if (page() != NULL && ch == sup_channel) {
        waitq_wake(&answered, NULL, SUP_MAX_PDS);
        if (supervision_files_gone()) {
            microkit_cothread_recv_ntfn(fs_config.server.id); /* its waiters fail now */
        }
    }
}

void supervision_note_oom(void)
{
    out_of_memory = true;
}

static uint32_t exit_cause(int status)
{
    if (out_of_memory) {
        return SUP_EXIT_OOM;
    }
    switch (status - 128) {
    case SIGABRT:
    case SIGSEGV:
    case SIGBUS:
    case SIGILL:
    case SIGFPE:
    case SIGSYS:
    case SIGTRAP:
    case SIGKILL:
        return SUP_EXIT_SIGNAL;
    default:
        return SUP_EXIT_STATUS;
    }
}

/* No waitq here: ERTS may be mid-abort. The supervisor answers before notify returns. */
void supervision_exit(int status)
{
    volatile struct sup_page *p = page();
    if (p == NULL || restart_off) {
        return;
    }
    power_flush_console(FLUSH_NS); /* what the node said last, before the supervisor's line */
    uint32_t seq = p->request.seq + 1;
    p->request.op = SUP_OP_EXIT;
    p->request.pd = 0;
    p->request.arg = (uint32_t)status & 0xff;
    p->request.cause = exit_cause(status);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    p->request.seq = seq;
    microkit_notify(sup_channel);
    uint64_t deadline = time_now_ns() + EXIT_ANSWER_NS;
    while (p->reply.seq != seq && time_now_ns() < deadline) {
        seL4_Yield();
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    while (p->reply.seq == seq && p->reply.result == SUP_OK) {
        seL4_Yield(); /* stopped for good: the supervisor gave up on us with action=stop */
    }
}

void supervision_init(void)
{
    char buf[8];
    restart_off = fwcfg_read_file(FWCFG_RESTART, buf, sizeof(buf)) > 0 && strncmp(buf, "off", 3) == 0;
    if (page() != NULL) {
        fd_proc_register("/proc/pds", pds_fill);
        fd_proc_register("/proc/pds_events", events_fill);
    }
}
