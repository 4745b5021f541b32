/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The FAT volume through the LionsOS fs protocol. File calls block their
 * cothread on the fs channel; the mount is issued by hand so that a missing
 * or foreign disk gives an error after a deadline instead of a hang.
 */
#include <time.h>

#include <libmicrokitco.h>
#include <lions/fs/helpers.h>
#include <lions/fs/protocol.h>

#include <chrysopolis/files.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/time.h>

fs_queue_t *fs_command_queue;
fs_queue_t *fs_completion_queue;
char *fs_share;
/* LionsOS's helpers keep fs buffers inside it (patches/lionsos/0003). */
extern size_t fs_share_size;
/* ... and complete what is in flight when the server is gone (patches/lionsos/0006). */
void fs_fail_in_flight(uint64_t status);

/* Images with the POSIX adapter ask the supervisor's page (runtime/posix/supervision.c). */
__attribute__((weak)) bool supervision_files_gone(void)
{
    return false;
}

static bool fs_enabled;
static uint64_t mount_id = UINT64_MAX;
static bool mount_done;

static void on_completion(uint64_t id)
{
    if (id == mount_id) {
        mount_done = true;
    }
}

/* A file call waits for the server's answer, unless the supervisor gave up on the server or
 * a block PD below it: then no answer will come, and the call fails with EIO. */
static void wait_for_server(microkit_channel ch)
{
    if (supervision_files_gone()) {
        fs_fail_in_flight(FS_STATUS_ERROR);
        return;
    }
    microkit_cothread_wait_on_channel(ch);
}

void files_init(void)
{
    fs_enabled = fs_config_check_magic(&fs_config);
    if (!fs_enabled) {
        return;
    }
    fs_command_queue = fs_config.server.command_queue.vaddr;
    fs_completion_queue = fs_config.server.completion_queue.vaddr;
    fs_share = fs_config.server.share.vaddr;
    fs_share_size = fs_config.server.share.size;
    fs_set_blocking_wait(wait_for_server);
}

void files_notified(void)
{
    fs_process_completions(on_completion);
}

/* One FS_CMD_INITIALISE: its status, or -1 if the server has not answered by `deadline`. */
static int mount_once(uint64_t deadline)
{
    if (fs_request_allocate(&mount_id)) {
        return -1;
    }
    mount_done = false;
    fs_command_issue((fs_cmd_t){.id = mount_id, .type = FS_CMD_INITIALISE});
    const struct timespec poll = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
    while (!mount_done && time_now_ns() < deadline) {
        nanosleep(&poll, NULL);
    }
    if (!mount_done) {
        return -1; /* the request stays allocated: the server may still answer it */
    }
    fs_cmpl_t cmpl;
    fs_command_complete(mount_id, NULL, &cmpl);
    fs_request_free(mount_id);
    return (int)cmpl.status;
}

int files_mount(uint64_t timeout_ns)
{
    if (!fs_enabled) {
        return -1;
    }
    /* The block device may still be probing when we first ask: retry until the deadline. */
    uint64_t deadline = time_now_ns() + timeout_ns;
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
    int status, answered = -1;
    while ((status = mount_once(deadline)) != 0) {
        if (status > 0) {
            answered = status;
        }
        if (time_now_ns() >= deadline) {
            return answered; /* a refusal says more than a late answer */
        }
        nanosleep(&pause, NULL);
    }
    return 0;
}
