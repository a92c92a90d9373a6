/*
** ctx_x86_64.S — goro_ctx_switch and goro_ctx_init for x86-64 (SysV ABI).
**
** A suspended context is its stack pointer; the stack holds, from it up:
**
**   sp+0   MXCSR (4 bytes), x87 control word (2), padding (2)
**   sp+8   r15
**   sp+16  r14
**   sp+24  r13         arg    in a fresh context (see goro_ctx_init)
**   sp+32  r12         entry  in a fresh context
**   sp+40  rbx
**   sp+48  rbp         0 in a fresh context: frame-pointer walks stop there
**   sp+56  return address   (ctx_trampoline in a fresh context)
**
** These are exactly the registers the ABI makes callee-saved; everything
** else is dead across a call.  MXCSR's control bits and the x87 control word
** (rounding mode, FTZ/DAZ, exception masks) are callee-saved too, so they are
** per context: a goroutine that calls fesetround does not change the
** rounding of the next one to run on its thread.  Saving all of MXCSR also
** keeps its sticky exception flags per context, which the ABI allows.
** goro_ctx_switch and goro_ctx_init below must agree on this layout.
*/

#define FRAME_FP    0
#define FRAME_R15   8
#define FRAME_R14   16
#define FRAME_R13   24
#define FRAME_R12   32
#define FRAME_RBX   40
#define FRAME_RBP   48
#define FRAME_RET   56
#define FRAME_SIZE  64   /* 8 pushes + the return address: sp stays 16-aligned */

/* Indirect-branch tracking: only if the compiler asks for it.  The note
** claims IBT and not SHSTK: a shadow stack cannot follow a switch. */
#if defined(__CET__) && (__CET__ & 1)
# define ENDBR endbr64
	.pushsection .note.gnu.property, "a"
	.p2align 3
	.long 4, 16, 5            /* namesz, descsz, NT_GNU_PROPERTY_TYPE_0 */
	.asciz "GNU"
	.long 0xc0000002, 4, 1    /* X86_FEATURE_1_AND: IBT */
	.p2align 3
	.popsection
#else
# define ENDBR
#endif

	.text

/* void goro_ctx_switch(goro_ctx *from, const goro_ctx *to)
** rdi = from, rsi = to.  The CFI describes the frame as it is saved, which
** is also how the other stack looks once sp is swapped: both were built by
** this code (or by goro_ctx_init to the same layout). */
	.globl goro_ctx_switch
	.hidden goro_ctx_switch
	.type goro_ctx_switch, @function
	.p2align 4
goro_ctx_switch:
	.cfi_startproc
	ENDBR
	pushq %rbp
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbp, 0
	pushq %rbx
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbx, 0
	pushq %r12
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r12, 0
	pushq %r13
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r13, 0
	pushq %r14
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r14, 0
	pushq %r15
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r15, 0
	subq $8, %rsp
	.cfi_adjust_cfa_offset 8
	stmxcsr FRAME_FP(%rsp)
	fnstcw FRAME_FP+4(%rsp)

	movq %rsp, (%rdi)          /* from->sp = rsp */
	movq (%rsi), %rsp          /* rsp = to->sp: we are on the other stack */

	ldmxcsr FRAME_FP(%rsp)
	fldcw FRAME_FP+4(%rsp)
	addq $8, %rsp
	.cfi_adjust_cfa_offset -8
	popq %r15
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r15
	popq %r14
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r14
	popq %r13
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r13
	popq %r12
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r12
	popq %rbx
	.cfi_adjust_cfa_offset -8
	.cfi_restore %rbx
	popq %rbp
	.cfi_adjust_cfa_offset -8
	.cfi_restore %rbp
	ret                        /* into the resumed context's caller */
	.cfi_endproc
	.size goro_ctx_switch, .-goro_ctx_switch

/* The first switch to a fresh context "returns" here, with rsp 16-aligned
** (the top of the stack), entry in r12 and arg in r13.  Calling entry from
** an aligned rsp gives it rsp+8 aligned, as at any call.  There is no caller
** to return to: rip is marked undefined so debuggers and unwinders end the
** backtrace here instead of walking into garbage above the stack. */
	.type ctx_trampoline, @function
	.p2align 4
ctx_trampoline:
	.cfi_startproc
	.cfi_def_cfa %rsp, 0
	.cfi_undefined %rip
	movq %r13, %rdi
	call *%r12
	call abort@PLT             /* entry must not return */
	ud2
	.cfi_endproc
	.size ctx_trampoline, .-ctx_trampoline

/* void goro_ctx_init(goro_ctx *c, void *lo, size_t size,
**                    void (*entry)(void *arg), void *arg)
** rdi = c, rsi = lo, rdx = size, rcx = entry, r8 = arg.
** Builds the frame of the table above at the 16-aligned top of the stack, so
** that after goro_ctx_switch pops it rsp is that aligned top.  The FP
** control state is the caller's, status flags cleared: a new context
** inherits its creator's rounding mode and FTZ/DAZ, as a new thread does. */
	.globl goro_ctx_init
	.hidden goro_ctx_init
	.type goro_ctx_init, @function
	.p2align 4
goro_ctx_init:
	.cfi_startproc
	ENDBR
	leaq (%rsi,%rdx), %rax
	andq $-16, %rax
	subq $FRAME_SIZE, %rax
	leaq ctx_trampoline(%rip), %r9
	movq %r9, FRAME_RET(%rax)
	xorl %r9d, %r9d
	movq %r9, FRAME_RBP(%rax)
	movq %r9, FRAME_RBX(%rax)
	movq %rcx, FRAME_R12(%rax)
	movq %r8, FRAME_R13(%rax)
	movq %r9, FRAME_R14(%rax)
	movq %r9, FRAME_R15(%rax)
	movq %r9, FRAME_FP(%rax)
	stmxcsr FRAME_FP(%rax)
	andl $~0x3f, FRAME_FP(%rax)    /* drop the sticky exception flags */
	fnstcw FRAME_FP+4(%rax)
	movq %rax, (%rdi)
	ret
	.cfi_endproc
	.size goro_ctx_init, .-goro_ctx_init

	.section .note.GNU-stack,"",%progbits
