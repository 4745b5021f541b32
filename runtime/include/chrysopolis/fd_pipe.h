/* SPDX-License-Identifier: BSD-2-Clause */
/* fd_pipe.c: pipes and socketpairs (a pair of pipes), in memory. */
#pragma once

long sys_pipe2(long fdsp, long flags, long c, long d, long e, long f);
long sys_socketpair(long domain, long type, long protocol, long svp, long e, long f);
