/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The protocol between the supervisor PD and beam_server (docs/plans/recovery.md): one
 * 4 KiB shared page (MR `sup_status`, mapped read-write in both) and one channel.
 *
 * Ownership is per field: the supervisor writes `pds`, `events` and `event_head`, `reply`;
 * beam_server writes `event_tail` and `request`. The supervisor bumps `seq` to odd before it
 * changes `pds` and to even after, so a reader retries while it is odd or changed.
 * Notifications: the supervisor notifies beam_server after a new event or reply; beam_server
 * notifies the supervisor after a new request.
 */
#pragma once

#include <stdint.h>

#define SUP_MAGIC 0x53555056u /* "SUPV" */
#define SUP_VERSION 2u
#define SUP_MAX_PDS 16
#define SUP_NAME_LEN 32
#define SUP_MAX_EVENTS 32 /* a ring: beam_server reads [event_tail, event_head) */

enum sup_state { SUP_RUNNING = 0, SUP_RESTARTING = 1, SUP_STOPPED = 2 };
enum sup_restart { SUP_PERMANENT = 0, SUP_TRANSIENT = 1, SUP_TEMPORARY = 2 };
enum sup_giveup { SUP_GIVEUP_STOP = 0, SUP_GIVEUP_POWEROFF = 1 };
/* What a fault was: seL4's fault label, as the supervisor's fault() receives it. */
enum sup_fault_kind {
    SUP_FAULT_NONE = 0,
    SUP_FAULT_VM = 1,
    SUP_FAULT_USER_EXCEPTION = 2,
    SUP_FAULT_CAP = 3,
    SUP_FAULT_UNKNOWN_SYSCALL = 4,
    SUP_FAULT_OTHER = 5,
    SUP_FAULT_EXIT = 6, /* beam_server ended with a status the image restarts on */
};
enum sup_event_kind { SUP_EV_FAULT = 1, SUP_EV_RESTART = 2, SUP_EV_UP = 3, SUP_EV_GIVEUP = 4 };
enum sup_op {
    SUP_OP_NONE = 0,
    SUP_OP_RESTART = 1,
    SUP_OP_CRASH = 2, /* fault injection builds only */
    SUP_OP_EXIT = 3, /* beam_server is ending: restart it, or answer SUP_ERR_NOT_ALLOWED (it powers off) */
};
/* Why beam_server ends (SUP_OP_EXIT): a fatal ERTS error restarts a transient node. */
enum sup_exit_cause {
    SUP_EXIT_STATUS = 0, /* exit(N), erlang:halt(N) */
    SUP_EXIT_SIGNAL = 1, /* abort() or a fatal signal: status 128 + N */
    SUP_EXIT_OOM = 2, /* ERTS could not allocate memory (its crash dump says so) */
};
enum sup_result { SUP_OK = 0, SUP_ERR_UNKNOWN = 1, SUP_ERR_NOT_ALLOWED = 2, SUP_ERR_STOPPED = 3 };

struct sup_fault {
    uint32_t kind; /* enum sup_fault_kind */
    uint32_t pad;
    uint64_t addr; /* the faulting address (VM faults), else 0 */
    uint64_t ip; /* the instruction */
    uint64_t t_ns; /* when, on the supervisor's clock (ns since boot) */
};

struct sup_pd {
    char name[SUP_NAME_LEN];
    uint32_t state; /* enum sup_state */
    uint32_t restart; /* enum sup_restart */
    uint32_t intensity; /* restarts allowed within period_ms */
    uint32_t period_ms;
    uint32_t on_giveup; /* enum sup_giveup */
    uint32_t may_restart; /* beam_server may ask for a restart of it */
    uint32_t restarts; /* since boot */
    uint32_t pad;
    struct sup_fault last_fault;
};

struct sup_event {
    uint32_t kind; /* enum sup_event_kind */
    uint32_t pd; /* index into pds */
    uint32_t n; /* restart n of m (SUP_EV_FAULT, SUP_EV_RESTART) */
    uint32_t m;
    struct sup_fault fault;
};

struct sup_request {
    uint32_t seq; /* a new request: seq + 1, then notify */
    uint32_t op; /* enum sup_op */
    uint32_t pd;
    uint32_t arg; /* SUP_OP_CRASH: the delay in ms; SUP_OP_EXIT: the exit status */
    uint32_t cause; /* SUP_OP_EXIT: enum sup_exit_cause */
    uint32_t pad;
};

struct sup_reply {
    uint32_t seq; /* the request's seq once handled */
    uint32_t result; /* enum sup_result */
};

struct sup_page {
    uint32_t magic;
    uint32_t version;
    uint32_t seq; /* odd while the supervisor writes pds */
    uint32_t n_pds;
    struct sup_pd pds[SUP_MAX_PDS];
    uint32_t event_head; /* supervisor: events written (free-running) */
    uint32_t event_tail; /* beam_server: events read (free-running) */
    struct sup_event events[SUP_MAX_EVENTS];
    struct sup_request request;
    struct sup_reply reply;
};

_Static_assert(sizeof(struct sup_page) <= 4096, "the protocol page is one 4 KiB page");
