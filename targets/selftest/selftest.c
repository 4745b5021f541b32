/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The runtime adapter's on-target self-test: beam_server's main runs POSIX code of the
 * kind ERTS runs (musl's pthreads over our cothreads and futex, epoll, timerfd, pipes,
 * clocks, mmap, the FAT volume) and prints one line per check:
 *   selftest: ok <name>   or   selftest: FAIL <name> (<detail>)
 * then `selftest: done, N failures`, and exits as a test program does: 0 when every
 * check passed, else 1. The exit powers the machine off (runtime/pd/power.c).
 *
 * With fw_cfg file opt/chrysopolis/selftest = "stack-overflow" it instead overruns one
 * thread's cothread stack on purpose: runtime/pd/costack.c must report it and power off.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <chrysopolis/files.h>
#include <chrysopolis/fwcfg.h>
#include <chrysopolis/syscalls.h>

#define MOUNT_TIMEOUT_NS (10ULL * 1000 * 1000 * 1000)

static int failures;

static void check(const char *name, bool ok, const char *detail)
{
    if (ok) {
        printf("selftest: ok %s\n", name);
    } else {
        printf("selftest: FAIL %s (%s)\n", name, detail);
        failures++;
    }
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- threads ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long counter;

static void *adder(void *arg)
{
    errno = (int)(long)arg;
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&lock);
        long v = counter;
        if (i % 100 == 0) {
            sched_yield(); /* inside the lock: the others must wait on the futex */
        }
        counter = v + 1;
        pthread_mutex_unlock(&lock);
    }
    return (void *)(long)(errno == (int)(long)arg);
}

static void test_threads(void)
{
    pthread_t t[8];
    errno = 0;
    for (long i = 0; i < 8; i++) {
        pthread_create(&t[i], NULL, adder, (void *)(i + 100));
    }
    long own = 0;
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        own += (long)r;
    }
    char d[64];
    snprintf(d, sizeof(d), "counter %ld", counter);
    check("8 threads, mutex held across yields", counter == 8000, d);
    snprintf(d, sizeof(d), "%ld threads kept theirs, main's is %d", own, errno);
    check("errno is per thread", own == 8 && errno == 0, d);
}

static int queue_len;
static bool done_producing;

static void *producer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++) {
        pthread_mutex_lock(&lock);
        queue_len++;
        pthread_cond_signal(&cond);
        pthread_mutex_unlock(&lock);
        if (i % 10 == 0) {
            usleep(1000);
        }
    }
    pthread_mutex_lock(&lock);
    done_producing = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *consumer(void *arg)
{
    long got = 0;
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (queue_len == 0 && !done_producing) {
            pthread_cond_wait(&cond, &lock);
        }
        if (queue_len == 0) {
            break;
        }
        queue_len--;
        got++;
    }
    pthread_mutex_unlock(&lock);
    return (void *)got;
}

static void test_condvar(void)
{
    pthread_t p, c[3];
    for (int i = 0; i < 3; i++) {
        pthread_create(&c[i], NULL, consumer, NULL);
    }
    pthread_create(&p, NULL, producer, NULL);
    pthread_join(p, NULL);
    long total = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(c[i], &r);
        total += (long)r;
    }
    char d[64];
    snprintf(d, sizeof(d), "consumed %ld of 50", total);
    check("condvar: 3 consumers, signal and broadcast", total == 50, d);

    struct timespec at;
    clock_gettime(CLOCK_REALTIME, &at);
    at.tv_nsec += 80 * 1000 * 1000;
    if (at.tv_nsec >= 1000000000) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000;
    }
    uint64_t t0 = mono_ms();
    pthread_mutex_lock(&lock);
    int r = pthread_cond_timedwait(&cond, &lock, &at);
    pthread_mutex_unlock(&lock);
    uint64_t ms = mono_ms() - t0;
    snprintf(d, sizeof(d), "r=%d after %llu ms", r, (unsigned long long)ms);
    check("pthread_cond_timedwait times out after 80 ms", r == ETIMEDOUT && ms >= 75 && ms < 1000, d);
}

static void *detached(void *arg)
{
    *(volatile int *)arg = 1;
    return NULL;
}

static void test_detach_and_many(void)
{
    static volatile int ran;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int r = pthread_create(&t, &a, detached, (void *)&ran);
    usleep(20000);
    check("detached thread runs and exits", r == 0 && ran == 1, "it did not run");

    /* More threads than ERTS starts, twice over: handles are recycled on exit. */
    int ok = 0, err = 0, made_total = 0;
    for (int round = 0; round < 2; round++) {
        pthread_t ts[20];
        int made = 0;
        for (int i = 0; i < 20 && err == 0; i++) {
            err = pthread_create(&ts[i], NULL, detached, (void *)&ran);
            made += err == 0;
        }
        for (int i = 0; i < made; i++) {
            pthread_join(ts[i], NULL);
        }
        ok += made == 20;
        made_total += made;
    }
    char d[64];
    snprintf(d, sizeof(d), "pthread_create: %s after %d", strerror(err), made_total);
    check("20 threads created and joined, twice", ok == 2, d);
}

/* ---- clocks ---- */

static void test_clocks(void)
{
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    check("CLOCK_REALTIME has an epoch", rt.tv_sec > 1700000000, "still 1970");
    uint64_t t0 = mono_ms();
    struct timespec req = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
    nanosleep(&req, NULL);
    uint64_t ms = mono_ms() - t0;
    char d[64];
    snprintf(d, sizeof(d), "%llu ms", (unsigned long long)ms);
    check("nanosleep 100 ms", ms >= 99 && ms < 600, d);
    struct timespec res;
    check("clock_getres", clock_getres(CLOCK_MONOTONIC, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0, "");
}

/* ---- fds ---- */

static void *late_writer(void *arg)
{
    usleep(50000);
    write((int)(long)arg, "x", 1);
    return NULL;
}

static void test_epoll_pipe_timerfd(void)
{
    int p[2];
    check("pipe2 O_NONBLOCK", pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, strerror(errno));
    char c;
    check("empty non-blocking pipe: EAGAIN", read(p[0], &c, 1) == -1 && errno == EAGAIN, strerror(errno));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 77};
    check("epoll_ctl ADD", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, strerror(errno));
    pthread_t w;
    pthread_create(&w, NULL, late_writer, (void *)(long)p[1]);
    struct epoll_event out[4];
    uint64_t t0 = mono_ms();
    int n = epoll_wait(ep, out, 4, 2000);
    uint64_t ms = mono_ms() - t0;
    char d[80];
    snprintf(d, sizeof(d), "n=%d after %llu ms", n, (unsigned long long)ms);
    check("epoll_wait wakes on a write from another thread", n == 1 && out[0].data.u64 == 77 && ms >= 40, d);
    n = epoll_wait(ep, out, 4, 30);
    check("EPOLLONESHOT: no second event until re-armed", n == 0, "reported again");
    ev.events = EPOLLIN | EPOLLONESHOT;
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    check("EPOLL_CTL_MOD re-arms", epoll_wait(ep, out, 4, 0) == 1, "no event");
    check("pipe read", read(p[0], &c, 1) == 1 && c == 'x', "");
    pthread_join(w, NULL);

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {.it_value = {.tv_sec = 0, .tv_nsec = 60 * 1000 * 1000}};
    timerfd_settime(tfd, 0, &its, NULL);
    ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = 5};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL);
    t0 = mono_ms();
    n = epoll_wait(ep, out, 4, -1);
    ms = mono_ms() - t0;
    uint64_t exp = 0;
    ssize_t got = read(tfd, &exp, sizeof(exp));
    snprintf(d, sizeof(d), "n=%d after %llu ms, %lld expirations", n, (unsigned long long)ms, (long long)exp);
    check("timerfd wakes epoll_wait(-1) after 60 ms",
          n == 1 && out[0].data.u64 == 5 && ms >= 55 && ms < 1000 && got == 8 && exp == 1, d);
    close(tfd);
    close(ep);
    close(p[0]);
    close(p[1]);

    int sv[2];
    check("socketpair", socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, strerror(errno));
    write(sv[0], "ping", 4);
    char buf[8] = {0};
    check("socketpair carries data both ways",
          read(sv[1], buf, sizeof(buf)) == 4 && write(sv[1], "pong", 4) == 4 && read(sv[0], buf, 4) == 4 &&
              memcmp(buf, "pong", 4) == 0,
          buf);
    close(sv[0]);
    close(sv[1]);

    int fd = open("/dev/null", O_RDWR);
    check("/dev/null", fd >= 3 && read(fd, buf, 1) == 0 && write(fd, "x", 1) == 1, strerror(errno));
    close(fd);
    struct stat st;
    check("fstat on fd 1 is a character device", fstat(1, &st) == 0 && S_ISCHR(st.st_mode), strerror(errno));

    fd_set rd;
    FD_ZERO(&rd);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 30000};
    t0 = mono_ms();
    n = select(0, &rd, NULL, NULL, &tv);
    ms = mono_ms() - t0;
    snprintf(d, sizeof(d), "n=%d after %llu ms", n, (unsigned long long)ms);
    check("select(0) with a 30 ms timeout", n == 0 && ms >= 25 && ms < 1000, d);
}

/* ---- memory, entropy, process ---- */

static void test_memory_entropy_process(void)
{
    size_t len = 8 << 20;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool zero = m != MAP_FAILED;
    for (size_t i = 0; zero && i < len; i += 4096) {
        zero = m[i] == 0;
    }
    check("mmap 8 MiB, zeroed", zero, strerror(errno));
    if (m != MAP_FAILED) {
        memset(m, 1, len);
        munmap(m, len);
    }
    void *big = malloc(20 << 20);
    check("malloc 20 MiB", big != NULL, "");
    free(big);

    unsigned char r[16];
    check("getrandom", getrandom(r, sizeof(r), 0) == sizeof(r), strerror(errno));
    printf("selftest: random ");
    for (size_t i = 0; i < sizeof(r); i++) {
        printf("%02x", r[i]);
    }
    printf("\n");

    struct utsname u;
    check("uname gives a dotted hostname", uname(&u) == 0 && strchr(u.nodename, '.') != NULL, u.nodename);
    cpu_set_t cpus;
    check("one CPU", sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) == 1, "");
    char cwd[16];
    check("getcwd", getcwd(cwd, sizeof(cwd)) != NULL && strcmp(cwd, "/") == 0, "");
}

/* ---- the FAT volume ---- */

static void test_files(void)
{
    int status = files_mount(MOUNT_TIMEOUT_NS);
    check("FAT volume mounted", status == 0, "no disk or no FAT volume");
    if (status != 0) {
        return;
    }
    int fd = open("//selftest/./data/../hello.txt", O_RDONLY);
    char buf[64] = {0};
    check("open through // . and ..", fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0, strerror(errno));
    check("file contents", strncmp(buf, "hello", 5) == 0, buf);
    close(fd);
    errno = 0;
    check("missing parent directory: ENOENT", open("/no/such/dir/file", O_RDONLY) < 0 && errno == ENOENT,
          strerror(errno));
    check("access: an existing file, a missing one",
          access("/selftest/hello.txt", R_OK) == 0 && access("/selftest/nope", F_OK) < 0 && errno == ENOENT,
          strerror(errno));
    struct stat st;
    check("stat / is a directory", stat("/", &st) == 0 && S_ISDIR(st.st_mode), strerror(errno));
    DIR *d = opendir("/selftest");
    int seen = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        seen += strcasecmp(e->d_name, "hello.txt") == 0 || strcasecmp(e->d_name, "data") == 0;
    }
    if (d != NULL) {
        closedir(d);
    }
    char detail[32];
    snprintf(detail, sizeof(detail), "%d of 2 names", seen);
    check("readdir (getdents64) lists /selftest", seen == 2, detail);
}

/* ---- a cothread stack overrun, on purpose ---- */

#define OVERRUN_FRAME 1024

/* Each call fills a 1 KiB frame and keeps it live; clang must not fold the recursion. */
__attribute__((noinline)) static int descend(int n)
{
    volatile char frame[OVERRUN_FRAME];
    for (int i = 0; i < OVERRUN_FRAME; i++) {
        frame[i] = (char)n;
    }
    int below = n > 0 ? descend(n - 1) : 0;
    return below + frame[0] + frame[OVERRUN_FRAME - 1];
}

static void *overrun(void *arg)
{
    int frames = *(int *)arg;
    printf("selftest: descending %d frames of %d bytes\n", frames, OVERRUN_FRAME);
    int sum = descend(frames);
    sched_yield(); /* the switch where the canary is checked */
    printf("selftest: FAIL stack overrun went unreported (%d)\n", sum);
    return NULL;
}

static void stack_overflow(void)
{
    /* 8 KiB past the stack's end: inside the red zone below it. */
    static int frames = (int)((COTHREAD_STACK_SIZE + 0x2000) / OVERRUN_FRAME);
    pthread_t t;
    printf("selftest: overflowing a cothread stack\n");
    if (pthread_create(&t, NULL, overrun, &frames) == 0) {
        pthread_join(t, NULL);
    }
    exit(1);
}

void chrysopolis_main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    syscalls_init();
    char mode[32];
    if (fwcfg_read_file("opt/chrysopolis/selftest", mode, sizeof(mode)) > 0 &&
        strcmp(mode, "stack-overflow") == 0) {
        stack_overflow();
    }
    printf("selftest: start\n");
    test_clocks();
    test_threads();
    test_condvar();
    test_detach_and_many();
    test_epoll_pipe_timerfd();
    test_memory_entropy_process();
    test_files();
    printf("selftest: done, %d failures\n", failures);
    exit(failures == 0 ? 0 : 1);
}
