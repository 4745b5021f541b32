/* SPDX-License-Identifier: MIT */
/*
 * musl's aarch64 system call entry for seL4 protection domains (Chrysopolis).
 *
 * Replaces musl's arch/aarch64/syscall_arch.h in the `sel4` build: no `svc`, every
 * system call is a call through musl's `__sysinfo` word, which LionsOS's libc_init()
 * points at its dispatcher `long sel4_vsyscall(long n, ...)`. The vDSO is not used.
 */

#define __SYSCALL_LL_E(x) (x)
#define __SYSCALL_LL_O(x) (x)

extern __attribute__((__visibility__("hidden"))) unsigned long __sysinfo;

#define __sysinfo_call ((long (*)(long, ...))__sysinfo)

static inline long __syscall0(long n) { return __sysinfo_call(n); }

static inline long __syscall1(long n, long a) { return __sysinfo_call(n, a); }

static inline long __syscall2(long n, long a, long b)
{
	return __sysinfo_call(n, a, b);
}

static inline long __syscall3(long n, long a, long b, long c)
{
	return __sysinfo_call(n, a, b, c);
}

static inline long __syscall4(long n, long a, long b, long c, long d)
{
	return __sysinfo_call(n, a, b, c, d);
}

static inline long __syscall5(long n, long a, long b, long c, long d, long e)
{
	return __sysinfo_call(n, a, b, c, d, e);
}

static inline long __syscall6(long n, long a, long b, long c, long d, long e,
                              long f)
{
	return __sysinfo_call(n, a, b, c, d, e, f);
}

#define IPC_64 0
