/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The bring-up image: proves the LionsOS stack under beam_server before ERTS
 * runs there. Serial out, the timer, the FAT volume through POSIX, serial in.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libmicrokitco.h>

#include <chrysopolis/files.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/time.h>

#define MOUNT_TIMEOUT_NS (5ULL * 1000 * 1000 * 1000)

static void print_clock(void)
{
    uint64_t ns = time_now_ns();
    printf("monotonic clock via sDDF timer: %llu.%06llu s\n", (unsigned long long)(ns / 1000000000ULL),
           (unsigned long long)(ns % 1000000000ULL / 1000));
}

static void idle_forever(void)
{
    for (;;) {
        microkit_cothread_wait_on_channel(timer_config.driver_id);
    }
}

void chrysopolis_main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("Chrysopolis: beam_server up on the LionsOS reference stack.\n");
    print_clock();

    int status = files_mount(MOUNT_TIMEOUT_NS);
    if (status < 0) {
        printf("beam_server: ERROR: cannot mount the FAT volume: no answer from the file server "
               "in %llu s; is a disk attached on virtio-mmio-bus.1?\n",
               MOUNT_TIMEOUT_NS / 1000000000ULL);
        idle_forever();
    } else if (status > 0) {
        printf("beam_server: ERROR: cannot mount the FAT volume: the file server refused it "
               "(status %d); the disk needs an MBR with a FAT32 partition (chrysopolis builds one)\n",
               status);
        idle_forever();
    }
    printf("FAT volume mounted\n");

    int fd = open("/hello.txt", O_RDONLY);
    if (fd < 0) {
        perror("beam_server: open /hello.txt");
        idle_forever();
    }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        perror("beam_server: read /hello.txt");
        idle_forever();
    }
    buf[n] = '\0';
    printf("/hello.txt: %s%s", buf, (n > 0 && buf[n - 1] == '\n') ? "" : "\n");
    print_clock();

    printf("echo: type a line\n");
    char line[256];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        printf("echo> %s", line);
    }
    idle_forever();
}
