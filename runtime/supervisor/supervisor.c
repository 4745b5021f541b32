/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The supervisor PD (docs/plans/recovery.md, 4.2): the parent of every PD that can be
 * restarted, so the kernel sends their faults here. Each fault is one console line, then
 * the child's policy (OTP's vocabulary, from the system description): restart it within
 * its budget of `intensity` restarts in `period_ms`, else stop it (or power off).
 * A restart resumes the child at its reset stub (runtime/reset/sup_reset.c), which
 * restores the child's memory and, once init() ran again, notifies us: the `SUP|up` line.
 * beam_server sees the table and the events on the protocol page (chrysopolis/supervisor.h).
 * No libc: it prints through the kernel's debug console, which needs no serial driver.
 */
#include <stddef.h>
#include <stdint.h>

#include <microkit.h>

#include <chrysopolis/supervisor.h>

#define SUP_CONFIG_MAGIC 0x43505553u /* "SUPC" */
#define SUP_NO_CHANNEL 0xff
#define SUP_NO_CHILD 0xff
#define SUP_MAX_INTENSITY 16 /* restart times kept per child: the window's length */
#define PSCI_SYSTEM_OFF 0x84000008ul

/* Written by chrysopolis/system.py (supervisor_config); the layouts must agree. */
struct child_config {
    char name[SUP_NAME_LEN];
    uint8_t id; /* the child's id under us (fault badge, TCB cap) */
    uint8_t channel; /* our channel to it: its reset stub notifies it when up */
    uint8_t restart; /* enum sup_restart */
    uint8_t on_giveup; /* enum sup_giveup */
    uint32_t intensity;
    uint32_t period_ms;
    uint32_t may_restart;
    uint64_t reset_pc; /* the child's sup_reset (runtime/reset/sup_reset.c) */
    uint8_t first; /* rest_for_one: a child restarted (and up) before this one, or SUP_NO_CHILD */
    uint8_t pad[3];
    uint32_t exit_statuses[8]; /* beam_server: the exit statuses that restart it, a bitmap */
};

struct sup_config {
    uint32_t magic;
    uint32_t n;
    uint8_t status_channel; /* to beam_server, or SUP_NO_CHANNEL */
    uint8_t beam; /* beam_server's index among the children, or SUP_NO_CHILD */
    uint8_t pad[6];
    uint64_t status_vaddr; /* the protocol page, or 0 */
    struct child_config child[SUP_MAX_PDS];
};

__attribute__((section(".supervisor_config"))) struct sup_config sup_config;

struct child {
    uint64_t times[SUP_MAX_INTENSITY]; /* ns of the last restarts (a ring) */
    uint32_t next;
    uint32_t generation;
    uint64_t fault_ns; /* when the restart in progress began */
    uint32_t stopped; /* given up on */
    uint32_t waiting; /* stopped until its `first` is up again */
};

static struct child children[SUP_MAX_PDS];
static struct sup_page *page;
static uint64_t counter_hz;

/* clang may emit calls to these for struct copies; there is no libc here. */
void *memset(void *d, int c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ((volatile char *)d)[i] = (char)c;
    }
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ((volatile char *)d)[i] = ((const char *)s)[i];
    }
    return d;
}

static uint64_t now_ns(void)
{
    uint64_t ticks;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(ticks));
    /* as sDDF's ARM timer driver converts (no 128-bit division without libgcc) */
    if (counter_hz % 1000000 == 0) {
        return ticks * 1000 / (counter_hz / 1000000);
    }
    return ticks * 1000000 / (counter_hz / 1000);
}

/* ---- one console line at a time ---- */

static char line[192];
static size_t line_len;

static void put(const char *s)
{
    while (*s && line_len < sizeof(line) - 2) {
        line[line_len++] = *s++;
    }
}

static void put_dec(uint64_t v)
{
    char b[21];
    int i = 20;
    b[i] = 0;
    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(&b[i]);
}

static void put_hex(uint64_t v)
{
    char b[19];
    int i = 18;
    b[i] = 0;
    do {
        b[--i] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v);
    b[--i] = 'x';
    b[--i] = '0';
    put(&b[i]);
}

static void put_ms(uint64_t ns) /* milliseconds with one decimal */
{
    put_dec(ns / 1000000);
    put(".");
    put_dec(ns / 100000 % 10);
    put("ms");
}

static void flush(void)
{
    line[line_len++] = '\n';
    line[line_len] = 0;
    microkit_dbg_puts(line);
    line_len = 0;
}

/* ---- the protocol page ---- */

static void page_begin(void)
{
    if (page) {
        page->seq++;
        __atomic_thread_fence(__ATOMIC_RELEASE);
    }
}

static void page_end(void)
{
    if (page) {
        __atomic_thread_fence(__ATOMIC_RELEASE);
        page->seq++;
    }
}

static void set_state(uint32_t i, uint32_t state)
{
    if (page) {
        page_begin();
        page->pds[i].state = state;
        page_end();
    }
}

static void event(uint32_t kind, uint32_t i, uint32_t n, uint32_t m, const struct sup_fault *f)
{
    if (page == NULL) {
        return;
    }
    struct sup_event *e = &page->events[page->event_head % SUP_MAX_EVENTS];
    e->kind = kind;
    e->pd = i;
    e->n = n;
    e->m = m;
    if (f) {
        e->fault = *f;
    } else {
        memset(&e->fault, 0, sizeof(e->fault));
    }
    __atomic_thread_fence(__ATOMIC_RELEASE);
    page->event_head++;
    microkit_notify(sup_config.status_channel);
}

static void page_init(void)
{
    if (sup_config.status_vaddr == 0 || sup_config.status_channel == SUP_NO_CHANNEL) {
        return;
    }
    page = (struct sup_page *)sup_config.status_vaddr;
    page->seq = 1;
    for (uint32_t i = 0; i < sup_config.n; i++) {
        const struct child_config *c = &sup_config.child[i];
        struct sup_pd *p = &page->pds[i];
        memcpy(p->name, c->name, SUP_NAME_LEN);
        p->state = SUP_RUNNING;
        p->restart = c->restart;
        p->intensity = c->intensity;
        p->period_ms = c->period_ms;
        p->on_giveup = c->on_giveup;
        p->may_restart = c->may_restart;
    }
    page->n_pds = sup_config.n;
    page->version = SUP_VERSION;
    page->magic = SUP_MAGIC;
    page->seq = 2;
}

/* ---- restarts ---- */

static void set_last_fault(uint32_t i, const struct sup_fault *f)
{
    if (page) {
        page_begin();
        page->pds[i].last_fault = *f;
        page_end();
    }
}

/* The end of a fault or exit line: " restart=n/m window=Pms". */
static void put_budget(uint32_t n, uint32_t m, uint32_t period_ms)
{
    put(" restart=");
    put_dec(n);
    put("/");
    put_dec(m);
    put(" window=");
    put_dec(period_ms);
    put("ms");
    flush();
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case SUP_FAULT_VM:
        return "vmfault";
    case SUP_FAULT_USER_EXCEPTION:
        return "user_exception";
    case SUP_FAULT_CAP:
        return "capfault";
    case SUP_FAULT_UNKNOWN_SYSCALL:
        return "unknown_syscall";
    default:
        return "other";
    }
}

/* Resume child i at `pc`, as microkit_pd_restart does (the reset stub sets its own sp). */
static void resume_at(uint32_t i, uint64_t pc)
{
    seL4_UserContext regs = {0};
    regs.pc = pc;
    seL4_Error err = seL4_TCB_WriteRegisters(BASE_TCB_CAP + sup_config.child[i].id, seL4_True, 0, 1, &regs);
    if (err != seL4_NoError) {
        put("SUP|error pd=");
        put(sup_config.child[i].name);
        put(" cannot resume it, seL4 error ");
        put_dec(err);
        flush();
    }
}

static void restart(uint32_t i)
{
    const struct child_config *c = &sup_config.child[i];
    children[i].fault_ns = now_ns();
    if (page) {
        page_begin();
        page->pds[i].state = SUP_RESTARTING;
        page->pds[i].restarts++;
        page_end();
    }
    uint32_t f = c->first;
    if (f < sup_config.n && !children[f].stopped) {
        /* rest_for_one: beam_server's open files live in the FAT server. The child waits,
         * stopped, until `first` has started again (its reset stub reads the count above
         * and forgets the old client's commands: patches/lionsos/0005). */
        microkit_pd_stop(c->id);
        children[i].waiting = 1;
        put("SUP|restart pd=");
        put(sup_config.child[f].name);
        put(" before ");
        put(c->name);
        flush();
        event(SUP_EV_RESTART, f, 0, sup_config.child[f].intensity, NULL);
        restart(f);
        return;
    }
    resume_at(i, c->reset_pc);
}

static _Noreturn void power_off(void)
{
    seL4_ARM_SMCContext args = {.x0 = PSCI_SYSTEM_OFF};
    seL4_ARM_SMCContext res = {0};
    seL4_Error err = seL4_ARM_SMC_Call(ARM_SMC_CAP, &args, &res);
    put("SUP|error PSCI SYSTEM_OFF returned, seL4 error ");
    put_dec(err);
    flush();
    for (;;) {
        seL4_Yield();
    }
}

/* Past the budget: stop child i, or power off. `by_itself`: beam_server, ending, powers off
 * itself (its status is then the machine's last line) once it hears no. */
static void give_up(uint32_t i, int by_itself)
{
    const struct child_config *c = &sup_config.child[i];
    if (!by_itself) {
        microkit_pd_stop(c->id);
    }
    children[i].stopped = 1;
    set_state(i, SUP_STOPPED);
    put("SUP|giveup pd=");
    put(c->name);
    put(c->on_giveup == SUP_GIVEUP_POWEROFF ? " action=poweroff" : " action=stop");
    flush();
    event(SUP_EV_GIVEUP, i, 0, c->intensity, NULL);
    if (c->on_giveup == SUP_GIVEUP_POWEROFF && !by_itself) {
        power_off();
    }
}

/* Restarts of child i within its window, counting one at `now`: 0 when past the budget. */
static uint32_t admit(uint32_t i, uint64_t now)
{
    const struct child_config *c = &sup_config.child[i];
    struct child *ch = &children[i];
    uint32_t keep = c->intensity < SUP_MAX_INTENSITY ? c->intensity : SUP_MAX_INTENSITY;
    uint64_t period = (uint64_t)c->period_ms * 1000000;
    uint32_t recent = 0;
    for (uint32_t k = 0; k < keep; k++) {
        uint64_t t = ch->times[k];
        if (t != 0 && now - t < period) {
            recent++;
        }
    }
    if (keep == 0 || recent >= keep) {
        return 0;
    }
    ch->times[ch->next] = now;
    ch->next = (ch->next + 1) % keep;
    return recent + 1;
}

static int child_of(microkit_child id)
{
    for (uint32_t i = 0; i < sup_config.n; i++) {
        if (sup_config.child[i].id == id) {
            return (int)i;
        }
    }
    return -1;
}

seL4_Bool fault(microkit_child id, microkit_msginfo msginfo, microkit_msginfo *reply_msginfo)
{
    (void)reply_msginfo;
    struct sup_fault f = {0};
    f.t_ns = now_ns();
    switch (microkit_msginfo_get_label(msginfo)) {
    case seL4_Fault_VMFault:
        f.kind = SUP_FAULT_VM;
        f.ip = seL4_GetMR(seL4_VMFault_IP);
        f.addr = seL4_GetMR(seL4_VMFault_Addr);
        break;
    case seL4_Fault_UserException:
        f.kind = SUP_FAULT_USER_EXCEPTION;
        f.ip = seL4_GetMR(seL4_UserException_FaultIP);
        break;
    case seL4_Fault_CapFault:
        f.kind = SUP_FAULT_CAP;
        f.ip = seL4_GetMR(seL4_CapFault_IP);
        f.addr = seL4_GetMR(seL4_CapFault_Addr);
        break;
    case seL4_Fault_UnknownSyscall:
        f.kind = SUP_FAULT_UNKNOWN_SYSCALL;
        f.ip = seL4_GetMR(seL4_UnknownSyscall_FaultIP);
        break;
    default:
        f.kind = SUP_FAULT_OTHER;
        break;
    }
    int i = child_of(id);
    if (i < 0) {
        put("SUP|fault child=");
        put_dec(id);
        put(" is none of ours; left stopped");
        flush();
        return seL4_False;
    }
    const struct child_config *c = &sup_config.child[i];
    /* A fault is an abnormal end: permanent and transient children restart, temporary ones not. */
    uint32_t n = c->restart == SUP_TEMPORARY ? 0 : admit((uint32_t)i, f.t_ns);
    set_last_fault((uint32_t)i, &f);
    put("SUP|fault pd=");
    put(c->name);
    put(" kind=");
    put(kind_name(f.kind));
    if (f.kind == SUP_FAULT_OTHER) {
        put_dec(microkit_msginfo_get_label(msginfo)); /* which seL4 fault label */
    }
    put(" addr=");
    put_hex(f.addr);
    put(" ip=");
    put_hex(f.ip);
    put_budget(n, c->restart == SUP_TEMPORARY ? 0 : c->intensity, c->period_ms);
    event(SUP_EV_FAULT, (uint32_t)i, n, c->intensity, &f);
    if (n == 0) {
        give_up((uint32_t)i, 0);
    } else {
        restart((uint32_t)i);
    }
    /* No reply: the child was resumed elsewhere (or stopped); the fault's reply is void. */
    return seL4_False;
}

/* ---- requests from beam_server ---- */

static void handle_request(void);

#ifdef SUP_FAULT_INJECT
/* Tests only (build option fault_inject): crash a child by resuming it at PC 0, which
 * faults through the real path above. A tick from the sup_inject PD drives the delays. */
#define SUP_INJECT_CHANNEL 61
#define SUP_MAX_CRASHES 8
static struct {
    uint32_t pd;
    uint64_t at; /* ns; 0: a free slot */
} crashes[SUP_MAX_CRASHES];

static int crash_later(uint32_t pd, uint64_t delay_ms)
{
    for (int k = 0; k < SUP_MAX_CRASHES; k++) {
        if (crashes[k].at == 0) {
            crashes[k].pd = pd;
            crashes[k].at = now_ns() + delay_ms * 1000000;
            return 1;
        }
    }
    return 0;
}

static int name_is(const char *a, const char *b, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (a[k] != b[k]) {
            return 0;
        }
    }
    return a[n] == 0;
}

/* SUP_INJECT_SPEC: "NAME:DELAY_MS[,NAME:DELAY_MS...]", delays from boot. */
static void inject_init(void)
{
    const char *s = SUP_INJECT_SPEC;
    while (*s) {
        const char *name = s;
        while (*s && *s != ':') {
            s++;
        }
        size_t len = (size_t)(s - name);
        uint64_t ms = 0;
        if (*s == ':') {
            s++;
        }
        while (*s >= '0' && *s <= '9') {
            ms = ms * 10 + (uint64_t)(*s++ - '0');
        }
        if (*s == ',') {
            s++;
        }
        for (uint32_t i = 0; i < sup_config.n; i++) {
            if (name_is(sup_config.child[i].name, name, len)) {
                crash_later(i, ms);
            }
        }
    }
}

static void inject_tick(void)
{
    uint64_t now = now_ns();
    for (int k = 0; k < SUP_MAX_CRASHES; k++) {
        if (crashes[k].at == 0 || now < crashes[k].at) {
            continue;
        }
        uint32_t i = crashes[k].pd;
        crashes[k].at = 0;
        if (children[i].stopped) {
            continue;
        }
        put("SUP|inject crash pd=");
        put(sup_config.child[i].name);
        flush();
        resume_at(i, 0);
    }
}
#endif

static uint32_t request_restart(uint32_t i)
{
    if (i >= sup_config.n) {
        return SUP_ERR_UNKNOWN;
    }
    if (!sup_config.child[i].may_restart) {
        return SUP_ERR_NOT_ALLOWED;
    }
    if (children[i].stopped) {
        return SUP_ERR_STOPPED;
    }
    put("SUP|restart pd=");
    put(sup_config.child[i].name);
    put(" asked by beam_server");
    flush();
    event(SUP_EV_RESTART, i, 0, sup_config.child[i].intensity, NULL);
    restart(i);
    return SUP_OK;
}

static const char *cause_name(uint32_t cause)
{
    switch (cause) {
    case SUP_EXIT_SIGNAL:
        return "signal";
    case SUP_EXIT_OOM:
        return "out_of_memory";
    default:
        return "status";
    }
}

/* beam_server is ending with `status`: SUP_OK when it is restarted (it never reads the
 * answer), else SUP_ERR_NOT_ALLOWED and it powers off, printing its status. halt() (0)
 * always powers off; a transient node restarts on a fatal error or a status the image
 * names, a permanent one on any other status. */
static uint32_t beam_exit(uint32_t i, uint32_t status, uint32_t cause)
{
    const struct child_config *c = &sup_config.child[i];
    int named = status < 256 && (c->exit_statuses[status / 32] >> (status % 32)) & 1;
    int abnormal = cause != SUP_EXIT_STATUS || named;
    if (status == 0 || c->restart == SUP_TEMPORARY || (c->restart == SUP_TRANSIENT && !abnormal)) {
        return SUP_ERR_NOT_ALLOWED;
    }
    struct sup_fault f = {.kind = SUP_FAULT_EXIT, .addr = status, .t_ns = now_ns()};
    uint32_t n = admit(i, f.t_ns);
    set_last_fault((uint32_t)i, &f);
    put("SUP|exit pd=");
    put(c->name);
    put(" status=");
    put_dec(status);
    put(" cause=");
    put(cause_name(cause));
    put_budget(n, c->intensity, c->period_ms);
    event(SUP_EV_FAULT, i, n, c->intensity, &f);
    if (n > 0) {
        restart(i);
        return SUP_OK;
    }
    int by_itself = c->on_giveup == SUP_GIVEUP_POWEROFF;
    give_up(i, by_itself);
    return by_itself ? SUP_ERR_NOT_ALLOWED : SUP_OK;
}

static void handle_request(void)
{
    if (page == NULL) {
        return;
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    struct sup_request r = page->request;
    if (r.seq == page->reply.seq) {
        return;
    }
    uint32_t result = SUP_ERR_UNKNOWN;
    if (r.op == SUP_OP_RESTART) {
        result = request_restart(r.pd);
    } else if (r.op == SUP_OP_EXIT && sup_config.beam < sup_config.n) {
        result = beam_exit(sup_config.beam, r.arg, r.cause);
    }
#ifdef SUP_FAULT_INJECT
    else if (r.op == SUP_OP_CRASH && r.pd < sup_config.n) {
        result = crash_later(r.pd, r.arg) ? SUP_OK : SUP_ERR_NOT_ALLOWED;
    }
#endif
    page->reply.result = result;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    page->reply.seq = r.seq;
    microkit_notify(sup_config.status_channel);
}

void init(void)
{
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(counter_hz));
    if (sup_config.magic != SUP_CONFIG_MAGIC) {
        microkit_dbg_puts("SUP|error no configuration in .supervisor_config; supervising nothing\n");
        return;
    }
    page_init();
    for (uint32_t i = 0; i < sup_config.n; i++) {
        children[i].generation = 1;
    }
#ifdef SUP_FAULT_INJECT
    inject_init();
#endif
}

void notified(microkit_channel ch)
{
#ifdef SUP_FAULT_INJECT
    if (ch == SUP_INJECT_CHANNEL) {
        inject_tick();
        return;
    }
#endif
    if (ch == sup_config.status_channel) {
        handle_request(); /* and beam_server's reset stub says it is up on this channel */
    }
    for (uint32_t i = 0; i < sup_config.n; i++) {
        const struct child_config *c = &sup_config.child[i];
        if (c->channel != ch || children[i].fault_ns == 0 || children[i].waiting) {
            continue;
        }
        /* The child's reset stub ran init() again: it is up. */
        uint64_t took = now_ns() - children[i].fault_ns;
        children[i].fault_ns = 0;
        children[i].generation++;
        set_state(i, SUP_RUNNING);
        put("SUP|up pd=");
        put(c->name);
        put(" gen=");
        put_dec(children[i].generation);
        put(" after=");
        put_ms(took);
        flush();
        event(SUP_EV_UP, i, 0, c->intensity, NULL);
        for (uint32_t j = 0; j < sup_config.n; j++) {
            if (children[j].waiting && sup_config.child[j].first == i) {
                children[j].waiting = 0;
                resume_at(j, sup_config.child[j].reset_pc);
            }
        }
    }
}
