/*
** ctx.h — the context switch (ctx_x86_64.S, ctx_aarch64.S).
**
** A context is just a saved stack pointer: goro_ctx_switch pushes the
** callee-saved registers of the ABI (and the FP control words, which the ABI
** also makes callee-saved) onto the current stack, stores the stack pointer
** in `from`, loads `to`'s and pops the same set.  Nothing else is saved:
** caller-saved registers are dead across a call by definition, and no signal
** mask is touched (ucontext's swapcontext makes a sigprocmask syscall on
** every switch; this makes none).
*/
#ifndef GORO_CTX_H
#define GORO_CTX_H

#include <stddef.h>

typedef struct goro_ctx {
  void *sp;
} goro_ctx;

/* Save the running context in `from` and resume `to`.  Returns when some
** later switch resumes `from`. */
void goro_ctx_switch(goro_ctx *from, const goro_ctx *to);

/* Set up `c` so that switching to it calls entry(arg) on the stack
** [lo, lo + size), 16-byte aligned at the top.  entry must never return
** (if it does, the process aborts). */
void goro_ctx_init(goro_ctx *c, void *lo, size_t size,
                   void (*entry)(void *arg), void *arg);

#endif
