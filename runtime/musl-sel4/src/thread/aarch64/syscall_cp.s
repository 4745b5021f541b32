/* SPDX-License-Identifier: MIT */
// Cancellable system call for seL4 protection domains (Chrysopolis).
// Replaces musl's src/thread/aarch64/syscall_cp.s in the `sel4` build: same labels
// and arguments, but a tail call through `__sysinfo` instead of `svc`.
//
// __syscall_cp_asm(&self->cancel, nr, u, v, w, x, y, z)
//                  x0             x1  x2 x3 x4 x5 x6 x7
// (*__sysinfo)(nr, u, v, w, x, y, z)
//              x0  x1 x2 x3 x4 x5 x6

.global __cp_begin
.hidden __cp_begin
.global __cp_end
.hidden __cp_end
.global __cp_cancel
.hidden __cp_cancel
.hidden __cancel
.hidden __sysinfo
.global __syscall_cp_asm
.hidden __syscall_cp_asm
.type __syscall_cp_asm,%function
__syscall_cp_asm:
__cp_begin:
	ldr w0,[x0]
	cbnz w0,__cp_cancel
	adrp x9,__sysinfo
	ldr x9,[x9,#:lo12:__sysinfo]
	mov x0,x1
	mov x1,x2
	mov x2,x3
	mov x3,x4
	mov x4,x5
	mov x5,x6
	mov x6,x7
	br x9
__cp_end:
	ret
__cp_cancel:
	b __cancel
