/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lwIP in beam_server (docs/architecture.md, "The network"; docs/threads.md, "netd").
 *
 * sdfgen gives beam_server a net client (an RX queue the copier fills, a TX queue to the
 * TX virtualiser) and lib_sddf_lwip's pbuf pool; lib_sddf_lwip puts lwIP's eth0 on them.
 * One pthread, netd, runs the stack: RX from the copier, lwIP's timers (DHCP, ARP, TCP),
 * the loopback queue and TX kicks. Never the root: it has no thread pointer, and lwIP,
 * malloc and printf use TLS. A notification on the net channels wakes netd (pd.c's
 * notified() calls netstack_notified); lwIP's next timer is netd's deadline, kept on the
 * wait queues' deadline list (waitq.c owns the one sDDF timeout).
 *
 * Callbacks from inside lwIP only record: they must not park (another cothread could then
 * enter lwIP half-way through a call), so netd prints after lwIP returns.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <microkit.h>
#include <sddf/network/config.h>
#include <sddf/network/lib_sddf_lwip.h>
#include <sddf/network/queue.h>

#include "lwip/init.h"
#include "lwip/ip4_addr.h"
#include "lwip/netif.h"
#include "lwip/timeouts.h"

#include <chrysopolis/clocks.h>
#include <chrysopolis/entropy.h>
#include <chrysopolis/fwcfg.h>
#include <chrysopolis/netstack.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/sup_reset.h>
#include <chrysopolis/waitq.h>

static net_queue_handle_t rx_queue;
static net_queue_handle_t tx_queue;
static struct waitq netd_q;
/* Set by the root on a net notification, cleared by netd before it looks for work: a
 * notification that comes while netd is running is not lost. */
static volatile bool netd_kicked;
static volatile bool address_changed;
/* lwIP is initialised (netd ran sddf_lwip_init): sockets may call into it. */
static volatile bool lwip_up;

/* lwIP's clock (sys_check_timeouts, TCP timestamps on every segment sent). lib_sddf_lwip's
 * sys_now is a protected call to the timer driver; the image links with --wrap=sys_now
 * (targets/beam.py), so lwIP reads the same clock here without one (time.c). */
uint32_t __wrap_sys_now(void)
{
    return (uint32_t)(clocks_now_ns() / NS_IN_MS);
}

uint32_t netstack_rand(void)
{
    uint32_t r;
    entropy_fill(&r, sizeof(r));
    return r;
}

/* No stdio here: these run inside lwIP, where nothing may park. */
void netstack_diag(const char *fmt, ...)
{
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    microkit_dbg_puts(line);
}

static int err_output(const char *fmt, ...)
{
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    microkit_dbg_puts("net: ");
    microkit_dbg_puts(line);
    return n;
}

_Noreturn void netstack_assert_failed(const char *msg, const char *file, int line)
{
    char buf[64];
    snprintf(buf, sizeof(buf), ":%d\n", line);
    microkit_dbg_puts("beam_server: ERROR: lwIP assertion failed: ");
    microkit_dbg_puts(msg);
    microkit_dbg_puts(" at ");
    microkit_dbg_puts(file);
    microkit_dbg_puts(buf);
    pd_halt();
}

void netstack_flush(void)
{
    sddf_lwip_maybe_notify();
    /* Only notifications are ever deferred in beam_server (it has no IRQs to ack). */
    if (microkit_have_signal && microkit_signal_cap >= BASE_OUTPUT_NOTIFICATION_CAP &&
        microkit_signal_cap < BASE_OUTPUT_NOTIFICATION_CAP + MICROKIT_MAX_CHANNELS) {
        microkit_have_signal = seL4_False;
        microkit_notify(microkit_signal_cap - BASE_OUTPUT_NOTIFICATION_CAP);
    }
}

bool netstack_up(void)
{
    return lwip_up;
}

void netstack_after_call(void)
{
    /* The loopback queue: a reply (an ACK, a SYN-ACK) may queue another frame; a few
     * rounds here, and netd drains what is left. */
    for (int round = 0; round < 4; round++) {
        bool queued = false;
        struct netif *n;
        NETIF_FOREACH(n)
        {
            queued |= n->loop_first != NULL;
        }
        if (!queued) {
            break;
        }
        netif_poll_all();
    }
    netstack_flush();
    struct netif *n;
    NETIF_FOREACH(n)
    {
        if (n->loop_first != NULL) {
            netd_kicked = true;
            waitq_wake(&netd_q, NULL, 1);
            break;
        }
    }
}

void netstack_notified(microkit_channel ch)
{
    if (ch == net_config.rx.id || ch == net_config.tx.id) {
        netd_kicked = true;
        waitq_wake(&netd_q, NULL, 1);
    }
}

/* lib_sddf_lwip calls this when DHCP has given eth0 an address (inside lwIP). */
static void on_address(char *ip)
{
    (void)ip;
    address_changed = true;
}

static int prefix_len(const ip4_addr_t *mask)
{
    uint32_t m = lwip_ntohl(ip4_addr_get_u32(mask));
    int n = 0;
    while (m & 0x80000000u) {
        n++;
        m <<= 1;
    }
    return n;
}

static void print_address(const char *how)
{
    struct netif *eth = netif_default;
    char ip[IP4ADDR_STRLEN_MAX], gw[IP4ADDR_STRLEN_MAX];
    ip4addr_ntoa_r(netif_ip4_addr(eth), ip, sizeof(ip));
    ip4addr_ntoa_r(netif_ip4_gw(eth), gw, sizeof(gw));
    printf("net: eth0 %s/%d gw %s (%s)\n", ip, prefix_len(netif_ip4_netmask(eth)), gw, how);
    fflush(stdout);
}

/* The run's static address, if the tool gave one (fw_cfg FWCFG_IP "A.B.C.D/LEN", FWCFG_GW
 * "A.B.C.D"; chrysopolis/nodes.py checks both): no rebuild per address. False: DHCP. */
static bool static_address(ip4_addr_t *ip, ip4_addr_t *mask, ip4_addr_t *gw, char *ip_text, size_t cap)
{
    char buf[64];
    if (fwcfg_read_file(FWCFG_IP, buf, sizeof(buf)) <= 0) {
        return false;
    }
    char *slash = strchr(buf, '/');
    unsigned len = 33;
    if (slash == NULL || sscanf(slash + 1, "%u", &len) != 1 || len < 1 || len > 32) {
        printf("net: ignoring fw_cfg %s '%s' (not A.B.C.D/LEN); using DHCP\n", FWCFG_IP, buf);
        return false;
    }
    *slash = '\0';
    if (!ip4addr_aton(buf, ip) || strlen(buf) >= cap) {
        printf("net: ignoring fw_cfg %s address '%s'; using DHCP\n", FWCFG_IP, buf);
        return false;
    }
    strcpy(ip_text, buf);
    ip4_addr_set_u32(mask, lwip_htonl(len == 32 ? 0xffffffffu : ~(0xffffffffu >> len)));
    ip4_addr_set_zero(gw);
    if (fwcfg_read_file(FWCFG_GW, buf, sizeof(buf)) > 0 && !ip4addr_aton(buf, gw)) {
        printf("net: ignoring fw_cfg %s '%s'\n", FWCFG_GW, buf);
        ip4_addr_set_zero(gw);
    }
    return true;
}

/*
 * A node the supervisor restarted finds the queues as the last one left them. The copier
 * outranks us, so it is not inside them now: every RX buffer is ours, and the ones the last
 * lwIP held are given back to the copier with the rest. TX buffers in flight still come
 * back through the free queue; only those the last lwIP held between the two are lost.
 */
static void restarted_queues(void)
{
    rx_queue.free->head = rx_queue.free->tail = 0;
    rx_queue.active->head = rx_queue.active->tail = 0;
    net_buffers_init(&rx_queue, 0);
}

static void *netd(void *arg)
{
    (void)arg;
    net_queue_init(&rx_queue, net_config.rx.free_queue.vaddr, net_config.rx.active_queue.vaddr,
                   net_config.rx.num_buffers);
    net_queue_init(&tx_queue, net_config.tx.free_queue.vaddr, net_config.tx.active_queue.vaddr,
                   net_config.tx.num_buffers);
    if (sup_generation() == 1) {
        net_buffers_init(&tx_queue, 0);
    } else {
        restarted_queues();
    }
    ip4_addr_t ip, mask, gw;
    char ip_text[IP4ADDR_STRLEN_MAX];
    bool fixed = static_address(&ip, &mask, &gw, ip_text, sizeof(ip_text));
    /* No address: lib_sddf_lwip starts DHCP. An address: it sets a /24 without a gateway,
     * which netif_set_addr then corrects. */
    sddf_lwip_init(&lib_sddf_lwip_config, &net_config, &timer_config, rx_queue, tx_queue,
                   fixed ? ip_text : NULL, err_output, on_address, NULL, NULL, NULL);
    if (fixed) {
        netif_set_addr(netif_default, &ip, &mask, &gw);
        print_address("static");
    }
    lwip_up = true;
    for (;;) {
        netd_kicked = false;
        sddf_lwip_process_rx();
        sys_check_timeouts();
        netif_poll_all(); /* the loopback queue: with NO_SYS nothing else drains it */
        netstack_flush();
        if (address_changed) {
            address_changed = false;
            print_address("dhcp");
        }
        if (netd_kicked) {
            continue;
        }
        uint32_t ms = sys_timeouts_sleeptime();
        uint64_t deadline =
            ms == SYS_TIMEOUTS_SLEEPTIME_INFINITE ? 0 : clocks_now_ns() + (uint64_t)ms * NS_IN_MS;
        waitq_wait(&netd_q, NULL, deadline);
    }
    return NULL;
}

int netstack_start(void)
{
    if (!net_config_check_magic(&net_config)) {
        printf("beam_server: ERROR: no network config in beam_server.elf; rebuild the image\n");
        return EINVAL;
    }
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, netd, NULL);
    pthread_attr_destroy(&attr);
    return err;
}
