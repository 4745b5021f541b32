/* SPDX-License-Identifier: BSD-2-Clause */
/* fsops.c: file system calls in front of LionsOS's (docs/disk.md). */
#pragma once

long sys_openat(long dirfd, long pathp, long flags, long mode, long e, long f);
long sys_newfstatat(long dirfd, long pathp, long stp, long flags, long e, long f);
long sys_faccessat(long dirfd, long pathp, long mode, long flags, long e, long f);
long sys_mkdirat(long dirfd, long pathp, long mode, long d, long e, long f);
long sys_unlinkat(long dirfd, long pathp, long flags, long d, long e, long f);
long sys_read(long fd, long b, long c, long d, long e, long f);
long sys_readv(long fd, long b, long c, long d, long e, long f);
long sys_write(long fd, long b, long c, long d, long e, long f);
long sys_writev(long fd, long b, long c, long d, long e, long f);
long sys_fstat(long fd, long b, long c, long d, long e, long f);
long sys_dup3(long oldfd, long newfd, long c, long d, long e, long f);
long sys_close(long fd, long b, long c, long d, long e, long f);
long sys_fsync(long fd, long b, long c, long d, long e, long f);
long sys_lseek(long fd, long off, long whence, long d, long e, long f);
long sys_pread64(long fd, long buf, long len, long off, long e, long f);
long sys_pwrite64(long fd, long buf, long len, long off, long e, long f);
