/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * beam_server's main: bring the LionsOS stack up, check the disk holds OTP, then
 * start ERTS the way erlexec would, without erlexec (docs/boot.md).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libmicrokitco.h>

#include <chrysopolis/console.h>
#include <chrysopolis/files.h>
#include <chrysopolis/fwcfg.h>
#include <chrysopolis/netstack.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/supervision.h>
#include <chrysopolis/syscalls.h>
#include <chrysopolis/time.h>

#define MOUNT_TIMEOUT_NS (5ULL * 1000 * 1000 * 1000)
#define BOOT_FILE "/releases/29/start.boot"
/* Extra arguments, one per line (e.g. `-pa /user/0`), written by `chrysopolis run --path` and
 * by a release's build (docs/apps.md). */
#define ARGS_FILE "/chrysopolis/args"
/* More of them for this boot only, space-separated (`run --no-shell`). */
#define FWCFG_ARGS "opt/chrysopolis/args"
#define MAX_ARGS 128
/* The run's terminal, from QEMU's fw_cfg (chrysopolis/qemu.py writes them, docs/boot.md). */
#define FWCFG_TERM "opt/chrysopolis/term"
#define FWCFG_WINSIZE "opt/chrysopolis/winsize"
/* TERM without a word from the tool: one of ncurses' built-in entries every terminal
 * emulator understands. A TERM with no built-in entry makes OTP fall back to its
 * line-mode shell (no editing), never a broken one. */
#define DEFAULT_TERM "vt100"

/* ERTS's crash dump, with its slogan (linked with --wrap=erl_crash_dump_v): an allocator's
 * "Cannot allocate N bytes of memory" makes the exit that follows a fatal error, which the
 * supervisor restarts the node on (runtime/posix/supervision.c). */
void __real_erl_crash_dump_v(char *file, int line, const char *fmt, va_list args);
void __wrap_erl_crash_dump_v(char *file, int line, const char *fmt, va_list args)
{
    if (fmt != NULL && strstr(fmt, "bytes of memory") != NULL) {
        supervision_note_oom();
    }
    __real_erl_crash_dump_v(file, line, fmt, args);
}

void erl_start(int argc, char **argv);

/* Emulator flags (the `-` form erlexec passes), then init's flags, as for the 2G board:
 * fit_to_heap() sets -sss and -MIscs for the heap the image got. */
static const char *const emu_args[] = {"beam",
                                       "-MIscs",
                                       "16",
                                       "-sss",
                                       "112",
                                       "-P",
                                       "16384",
                                       "-Q",
                                       "1024",
                                       "-Bd",
                                       "-SDio",
                                       "1",
                                       "-SDcpu",
                                       "1:1",
                                       "-S",
                                       "1:1",
                                       "-sbwt",
                                       "none",
                                       "-sbwtdcpu",
                                       "none",
                                       "-sbwtdio",
                                       "none",
                                       "--",
                                       "-root",
                                       "/",
                                       "-bindir",
                                       "/bin",
                                       "-progname",
                                       "erl",
                                       "--",
                                       "-home",
                                       "/",
                                       "-boot",
                                       "/releases/29/start",
                                       "-mode",
                                       "interactive",
                                       "-kernel",
                                       "inetrc",
                                       "'/etc/inetrc'"};

/* The value after emulator flag `flag` in argv becomes `value`. */
static void set_flag(char **argv, int argc, const char *flag, char *value)
{
    for (int i = 0; i + 1 < argc; i++) {
        if (strcmp(argv[i], flag) == 0) {
            argv[i + 1] = value;
        }
    }
}

/* The extra arguments after the built-in ones (argv[0..builtin)): `-mode M` and `-boot B`
 * replace the built-in ones instead of following them (init would see two), and `+F [V...]`
 * is an emulator flag in erl's syntax (a release's vm.args), moved before the first `--` as
 * `-F`. Returns the new argc. */
static int take_overrides(char **argv, int builtin, int argc)
{
    static char *emu[MAX_ARGS], *init[MAX_ARGS], *rest[MAX_ARGS];
    int ne = 0, ni = 0, nr = 0;
    for (int i = builtin; i < argc; i++) {
        if (strcmp(argv[i], "-extra") == 0) {
            while (i < argc) {
                init[ni++] = argv[i++];
            }
            break;
        }
        if ((strcmp(argv[i], "-mode") == 0 || strcmp(argv[i], "-boot") == 0) && i + 1 < argc) {
            set_flag(argv, builtin, argv[i], argv[i + 1]);
            i++;
            continue;
        }
        if (argv[i][0] == '+' && argv[i][1] != '\0') {
            argv[i][0] = '-';
            emu[ne++] = argv[i];
            while (i + 1 < argc && argv[i + 1][0] != '-' && argv[i + 1][0] != '+') {
                emu[ne++] = argv[++i];
            }
            continue;
        }
        init[ni++] = argv[i];
    }
    int dashes = 1;
    while (dashes < builtin && strcmp(argv[dashes], "--") != 0) {
        dashes++;
    }
    for (int i = dashes; i < builtin; i++) {
        rest[nr++] = argv[i];
    }
    int out = dashes;
    for (int i = 0; i < ne; i++) {
        argv[out++] = emu[i];
    }
    for (int i = 0; i < nr; i++) {
        argv[out++] = rest[i];
    }
    for (int i = 0; i < ni; i++) {
        argv[out++] = init[i];
    }
    return out;
}

/* ERTS's scheduler C-stack limit (kilowords) at 7/8 of the cothread stack pd.c chose; a
 * small heap's literal area is 4 MiB (about 2 MiB hold OTP's literals at boot). */
static void fit_to_heap(char **argv, int argc)
{
    static char sss[24];
    snprintf(sss, sizeof(sss), "%llu", (unsigned long long)(pd_cothread_stack / 8 * 7 / 8 / 1024));
    set_flag(argv, argc, "-sss", sss);
    if (beam_heap_size < PD_SMALL_HEAP) {
        set_flag(argv, argc, "-MIscs", (char *)"4");
        set_flag(argv, argc, "-mode", (char *)"interactive"); /* a release's too */
    }
}

/* More emulator flags for a heap below PD_SMALL_HEAP: carriers of 128 KiB to 1 MiB (the
 * defaults, 1 to 10 MiB, leave MiBs of them unused: every page we map is real), no cache
 * of freed segments. */
static const char *const small_heap_args[] = {"-Musmbcs", "128", "-Mulmbcs", "1024", "-MMmcs", "0"};

static void idle_forever(void)
{
    for (;;) {
        microkit_cothread_wait_on_channel(timer_config.driver_id);
    }
}

static int read_extra_args(char **argv, int argc, int max)
{
    static char buf[8192];
    int fd = open(ARGS_FILE, O_RDONLY);
    if (fd < 0) {
        return argc;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return argc;
    }
    buf[n] = '\0';
    for (char *line = strtok(buf, "\n"); line != NULL && argc < max; line = strtok(NULL, "\n")) {
        argv[argc++] = line;
    }
    return argc;
}

/* This boot's own extra arguments from fw_cfg, space-separated. */
static int read_fwcfg_args(char **argv, int argc, int max)
{
    static char buf[1024];
    if (fwcfg_read_file(FWCFG_ARGS, buf, sizeof(buf)) <= 0) {
        return argc;
    }
    for (char *word = strtok(buf, " "); word != NULL && argc < max; word = strtok(NULL, " ")) {
        argv[argc++] = word;
    }
    return argc;
}

/* A TERM value is a short word of [A-Za-z0-9._+-]; anything else is ignored. */
static bool term_ok(const char *t)
{
    if (t[0] == '\0') {
        return false;
    }
    for (const char *p = t; *p != '\0'; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '.' || *p == '_' || *p == '+' || *p == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* TERM and the console's window size ("ROWSxCOLS") for ERTS, from fw_cfg if the tool gave them. */
static void setup_terminal(void)
{
    char buf[64];
    const char *term = DEFAULT_TERM;
    if (fwcfg_read_file(FWCFG_TERM, buf, sizeof(buf)) > 0 && term_ok(buf)) {
        term = buf;
    }
    setenv("TERM", term, 1);
    unsigned rows = 0, cols = 0;
    char x;
    if (fwcfg_read_file(FWCFG_WINSIZE, buf, sizeof(buf)) > 0 &&
        sscanf(buf, "%u%c%u", &rows, &x, &cols) == 3 && x == 'x' && rows > 0 && rows < 10000 && cols > 0 &&
        cols < 10000) {
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        console_set_winsize(&ws);
    }
    struct winsize ws;
    console_get_winsize(&ws);
    printf("terminal: TERM=%s, %ux%u\n", getenv("TERM"), ws.ws_row, ws.ws_col);
}

void chrysopolis_main(void)
{
    syscalls_init();
    printf("Chrysopolis: beam_server up on the LionsOS reference stack.\n");
    uint64_t ns = time_now_ns();
    printf("monotonic clock via sDDF timer: %llu.%06llu s\n", (unsigned long long)(ns / 1000000000ULL),
           (unsigned long long)(ns % 1000000000ULL / 1000));

    /* eth0 and DHCP in the background (netd): the boot never waits for an address. */
    if (netstack_start() != 0) {
        printf("beam_server: no network: cannot start netd\n");
    }

    int status = files_mount(MOUNT_TIMEOUT_NS);
    if (status != 0) {
        printf("beam_server: ERROR: cannot mount the FAT volume (%s); boot with the disk "
               "`chrysopolis build` writes\n",
               status < 0 ? "no answer from the file server" : "the file server refused it");
        idle_forever();
    }
    struct stat st;
    if (stat(BOOT_FILE, &st) != 0) {
        printf("beam_server: ERROR: the disk holds no OTP (%s is missing); boot with the disk "
               "`chrysopolis build` writes\n",
               BOOT_FILE);
        idle_forever();
    }

    setenv("ROOTDIR", "/", 1);
    setenv("BINDIR", "/bin", 1);
    setenv("EMU", "beam", 1);
    setenv("PROGNAME", "erl", 1);
    setenv("HOME", "/", 1);
    /* A crash dump holds every binary a process refers to, as hex: on a node of GiBs it
     * would fill the FAT disk for minutes. Keep the first 64 MiB, as erl allows. */
    setenv("ERL_CRASH_DUMP_BYTES", "67108864", 1);
    setup_terminal();

    static char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = (char *)emu_args[0];
    if (beam_heap_size < PD_SMALL_HEAP) {
        for (size_t i = 0; i < sizeof(small_heap_args) / sizeof(small_heap_args[0]); i++) {
            argv[argc++] = (char *)small_heap_args[i];
        }
    }
    for (size_t i = 1; i < sizeof(emu_args) / sizeof(emu_args[0]); i++) {
        argv[argc++] = (char *)emu_args[i];
    }
    int builtin = argc;
    argc = read_extra_args(argv, argc, MAX_ARGS);
    argc = read_fwcfg_args(argv, argc, MAX_ARGS);
    argc = take_overrides(argv, builtin, argc);
    argv[argc] = NULL;
    fit_to_heap(argv, argc);

    printf("Handing off to ERTS core loop...\n");
    erl_start(argc, argv);
    printf("beam_server: ERROR: erl_start returned\n");
    idle_forever();
}
