/*
** ctx_aarch64.S — goro_ctx_switch and goro_ctx_init for aarch64 (AAPCS64).
**
** A suspended context is its stack pointer; the stack holds, from it up:
**
**   sp+0    x19, x20     entry, arg in a fresh context (see goro_ctx_init)
**   sp+16   x21, x22
**   sp+32   x23, x24
**   sp+48   x25, x26
**   sp+64   x27, x28
**   sp+80   x29, x30     fp = 0, lr = ctx_trampoline in a fresh context
**   sp+96   d8,  d9
**   sp+112  d10, d11
**   sp+128  d12, d13
**   sp+144  d14, d15
**   sp+160  FPCR, padding
**
** These are exactly what AAPCS64 makes callee-saved (only the low 64 bits
** of v8-v15 are); everything else is dead across a call.  FPCR (rounding
** mode, flush-to-zero) is per thread in the ABI and so per context here:
** a goroutine that calls fesetround does not change the next one's.  FPSR,
** the sticky flags, is left alone, as at any call.
** goro_ctx_switch and goro_ctx_init below must agree on this layout.
*/

#define FRAME_X19   0
#define FRAME_X21   16
#define FRAME_X23   32
#define FRAME_X25   48
#define FRAME_X27   64
#define FRAME_X29   80
#define FRAME_D8    96
#define FRAME_D10   112
#define FRAME_D12   128
#define FRAME_D14   144
#define FRAME_FPCR  160
#define FRAME_SIZE  176   /* a multiple of 16: sp must always be aligned */

/* Branch protection: only if the compiler asks for it.  "bti c" is a hint,
** a no-op on cores without BTI.  Nothing here signs a return address. */
#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
# define BTI_C hint #34
# define GNU_PROPERTY_BTI 1
#else
# define BTI_C
# define GNU_PROPERTY_BTI 0
#endif
#if defined(__ARM_FEATURE_PAC_DEFAULT) && __ARM_FEATURE_PAC_DEFAULT
# define GNU_PROPERTY_PAC 2
#else
# define GNU_PROPERTY_PAC 0
#endif
#if GNU_PROPERTY_BTI || GNU_PROPERTY_PAC
	.pushsection .note.gnu.property, "a"
	.p2align 3
	.long 4, 16, 5            /* namesz, descsz, NT_GNU_PROPERTY_TYPE_0 */
	.asciz "GNU"
	.long 0xc0000000, 4       /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
	.long GNU_PROPERTY_BTI | GNU_PROPERTY_PAC
	.long 0
	.popsection
#endif

	.text

/* void goro_ctx_switch(goro_ctx *from, const goro_ctx *to)
** x0 = from, x1 = to.  The CFI describes the frame as it is saved, which is
** also how the other stack looks once sp is swapped: both were built by
** this code (or by goro_ctx_init to the same layout). */
	.globl goro_ctx_switch
	.hidden goro_ctx_switch
	.type goro_ctx_switch, %function
	.p2align 4
goro_ctx_switch:
	.cfi_startproc
	BTI_C
	sub sp, sp, #FRAME_SIZE
	.cfi_def_cfa_offset FRAME_SIZE
	stp x19, x20, [sp, #FRAME_X19]
	stp x21, x22, [sp, #FRAME_X21]
	stp x23, x24, [sp, #FRAME_X23]
	stp x25, x26, [sp, #FRAME_X25]
	stp x27, x28, [sp, #FRAME_X27]
	stp x29, x30, [sp, #FRAME_X29]
	.cfi_offset x19, FRAME_X19-FRAME_SIZE
	.cfi_offset x20, FRAME_X19+8-FRAME_SIZE
	.cfi_offset x21, FRAME_X21-FRAME_SIZE
	.cfi_offset x22, FRAME_X21+8-FRAME_SIZE
	.cfi_offset x23, FRAME_X23-FRAME_SIZE
	.cfi_offset x24, FRAME_X23+8-FRAME_SIZE
	.cfi_offset x25, FRAME_X25-FRAME_SIZE
	.cfi_offset x26, FRAME_X25+8-FRAME_SIZE
	.cfi_offset x27, FRAME_X27-FRAME_SIZE
	.cfi_offset x28, FRAME_X27+8-FRAME_SIZE
	.cfi_offset x29, FRAME_X29-FRAME_SIZE
	.cfi_offset x30, FRAME_X29+8-FRAME_SIZE
	stp d8, d9, [sp, #FRAME_D8]
	stp d10, d11, [sp, #FRAME_D10]
	stp d12, d13, [sp, #FRAME_D12]
	stp d14, d15, [sp, #FRAME_D14]
	mrs x9, fpcr
	str x9, [sp, #FRAME_FPCR]

	mov x9, sp
	str x9, [x0]               /* from->sp = sp */
	ldr x9, [x1]
	mov sp, x9                 /* sp = to->sp: we are on the other stack */

	/* Writing FPCR can stall the pipeline on some cores; it rarely
	** differs between contexts, so write it only when it does. */
	ldr x9, [sp, #FRAME_FPCR]
	mrs x10, fpcr
	cmp x9, x10
	b.eq 1f
	msr fpcr, x9
1:
	ldp d8, d9, [sp, #FRAME_D8]
	ldp d10, d11, [sp, #FRAME_D10]
	ldp d12, d13, [sp, #FRAME_D12]
	ldp d14, d15, [sp, #FRAME_D14]
	ldp x19, x20, [sp, #FRAME_X19]
	ldp x21, x22, [sp, #FRAME_X21]
	ldp x23, x24, [sp, #FRAME_X23]
	ldp x25, x26, [sp, #FRAME_X25]
	ldp x27, x28, [sp, #FRAME_X27]
	ldp x29, x30, [sp, #FRAME_X29]
	add sp, sp, #FRAME_SIZE
	.cfi_def_cfa_offset 0
	.cfi_restore x19
	.cfi_restore x20
	.cfi_restore x21
	.cfi_restore x22
	.cfi_restore x23
	.cfi_restore x24
	.cfi_restore x25
	.cfi_restore x26
	.cfi_restore x27
	.cfi_restore x28
	.cfi_restore x29
	.cfi_restore x30
	ret                        /* to x30: the resumed context's caller */
	.cfi_endproc
	.size goro_ctx_switch, .-goro_ctx_switch

/* The first switch to a fresh context "returns" here (through x30, so no
** BTI landing pad is needed), with sp at the 16-aligned top of the stack,
** entry in x19 and arg in x20.  There is no caller to return to: x30 is
** marked undefined so debuggers and unwinders end the backtrace here. */
	.type ctx_trampoline, %function
	.p2align 4
ctx_trampoline:
	.cfi_startproc
	.cfi_undefined x30
	mov x0, x20
	blr x19
	bl abort                   /* entry must not return */
	brk #0x3e8
	.cfi_endproc
	.size ctx_trampoline, .-ctx_trampoline

/* void goro_ctx_init(goro_ctx *c, void *lo, size_t size,
**                    void (*entry)(void *arg), void *arg)
** x0 = c, x1 = lo, x2 = size, x3 = entry, x4 = arg.
** Builds the frame of the table above at the 16-aligned top of the stack, so
** that after goro_ctx_switch pops it sp is that aligned top.  FPCR is the
** caller's: a new context inherits its creator's rounding mode and
** flush-to-zero, as a new thread does. */
	.globl goro_ctx_init
	.hidden goro_ctx_init
	.type goro_ctx_init, %function
	.p2align 4
goro_ctx_init:
	.cfi_startproc
	BTI_C
	add x9, x1, x2
	and x9, x9, #-16
	sub x9, x9, #FRAME_SIZE
	stp x3, x4, [x9, #FRAME_X19]
	stp xzr, xzr, [x9, #FRAME_X21]
	stp xzr, xzr, [x9, #FRAME_X23]
	stp xzr, xzr, [x9, #FRAME_X25]
	stp xzr, xzr, [x9, #FRAME_X27]
	adr x10, ctx_trampoline
	stp xzr, x10, [x9, #FRAME_X29]
	stp xzr, xzr, [x9, #FRAME_D8]
	stp xzr, xzr, [x9, #FRAME_D10]
	stp xzr, xzr, [x9, #FRAME_D12]
	stp xzr, xzr, [x9, #FRAME_D14]
	mrs x10, fpcr
	stp x10, xzr, [x9, #FRAME_FPCR]
	str x9, [x0]
	ret
	.cfi_endproc
	.size goro_ctx_init, .-goro_ctx_init

	.section .note.GNU-stack,"",%progbits
