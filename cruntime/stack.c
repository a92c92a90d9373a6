/*
** stack.c — native stacks for goroutines.
**
** A stack is an anonymous mapping with one PROT_NONE guard page below it.
** Memory is committed page by page as the goroutine touches it, so a 256 KiB
** stack of which a task uses 2 KiB costs one page of RSS.  Running off the
** end lands on the guard page; the SIGSEGV handler (on the M's alternate
** signal stack, since the goroutine's own is exhausted) reports it as
** "goroutine N: stack overflow" and aborts.
**
** mmap and munmap are system calls that also take the process's mm lock,
** so stacks are recycled: each P keeps a small cache (no lock), spilling
** half to a global pool under a mutex when full and refilling from it when
** empty.  The pool is bounded; only past that bound is a stack unmapped.
*/
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { STACK_POOL_MAX = 1024 };

static struct {
  goro_mutex lock;
  goro_stack s[STACK_POOL_MAX];
  int n;
} pool;

static size_t pagesize(void) {
  static size_t ps;
  if (ps == 0)
    ps = (size_t)sysconf(_SC_PAGESIZE);
  return ps;
}

static int stack_map(goro_stack *s) {
  size_t guard = pagesize();
  size_t size = goro_sched.stacksize;
  char *base = mmap(NULL, guard + size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                    -1, 0);
  if (base == MAP_FAILED)
    return GORO_ENOMEM;
  if (mprotect(base, guard, PROT_NONE) != 0) {
    munmap(base, guard + size);
    return GORO_ENOMEM;
  }
  s->lo = base + guard;
  s->size = size;
  return GORO_OK;
}

static void stack_unmap(goro_stack *s) {
  size_t guard = pagesize();
  munmap(s->lo - guard, s->size + guard);
  s->lo = NULL;
  s->size = 0;
}

int goro_stack_alloc(P *pp, goro_stack *s) {
  if (pp && pp->nstack == 0) {
    /* Refill half the cache from the pool in one lock round. */
    goro_mutex_lock(&pool.lock);
    while (pool.n > 0 && pp->nstack < STACK_CACHE / 2)
      pp->stackcache[pp->nstack++] = pool.s[--pool.n];
    goro_mutex_unlock(&pool.lock);
  }
  if (pp && pp->nstack > 0) {
    *s = pp->stackcache[--pp->nstack];
    return GORO_OK;
  }
  if (!pp) {
    goro_mutex_lock(&pool.lock);
    if (pool.n > 0) {
      *s = pool.s[--pool.n];
      goro_mutex_unlock(&pool.lock);
      return GORO_OK;
    }
    goro_mutex_unlock(&pool.lock);
  }
  return stack_map(s);
}

/* Give s to the pool, or unmap it when the pool is full. */
static void pool_put(goro_stack *s) {
  goro_mutex_lock(&pool.lock);
  if (pool.n < STACK_POOL_MAX) {
    pool.s[pool.n++] = *s;
    s = NULL;
  }
  goro_mutex_unlock(&pool.lock);
  if (s)
    stack_unmap(s);
}

void goro_stack_free(P *pp, goro_stack *s) {
  if (s->lo == NULL)
    return;
  if (pp) {
    if (pp->nstack == STACK_CACHE) {
      while (pp->nstack > STACK_CACHE / 2)
        pool_put(&pp->stackcache[--pp->nstack]);
    }
    pp->stackcache[pp->nstack++] = *s;
  } else {
    pool_put(s);
  }
  s->lo = NULL;
  s->size = 0;
}

void goro_stack_flush(P *pp) {
  while (pp->nstack > 0)
    pool_put(&pp->stackcache[--pp->nstack]);
}

void goro_stack_pool_drain(void) {
  goro_mutex_lock(&pool.lock);
  while (pool.n > 0)
    stack_unmap(&pool.s[--pool.n]);
  goro_mutex_unlock(&pool.lock);
}

void goro_stack_unmap(goro_stack *s) {
  if (s->lo)
    stack_unmap(s);
}


/*
** {======================================================
** Stack overflow: SIGSEGV/SIGBUS on a guard page
** =======================================================
*/

static struct sigaction old_segv, old_bus;
static bool handlers_installed;

/* Async-signal-safe decimal formatting. */
static size_t fmt_int(char *buf, int64_t v) {
  char tmp[24];
  size_t n = 0, i = 0;
  uint64_t u = v < 0 ? (uint64_t)-v : (uint64_t)v;
  do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) buf[i++] = '-';
  while (n) buf[i++] = tmp[--n];
  return i;
}

static void overflow_handler(int sig, siginfo_t *info, void *uctx) {
  M *mp = goro_getm();
  G *gp = mp ? RELAXED_LOAD(mp->curg) : NULL;
  char *addr = info->si_addr;
  if (gp && gp->stack.lo && addr < gp->stack.lo &&
      addr >= gp->stack.lo - pagesize()) {
    char msg[64];
    size_t n = 0;
    memcpy(msg, "goroutine ", 10); n = 10;
    n += fmt_int(msg + n, gp->goid);
    memcpy(msg + n, ": stack overflow\n", 17); n += 17;
    (void)!write(2, msg, n);
    signal(SIGABRT, SIG_DFL);
    abort();
  }
  /* Not ours: hand the fault to whoever had the signal before us. */
  struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
  if (old->sa_flags & SA_SIGINFO) {
    old->sa_sigaction(sig, info, uctx);
  } else if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
    /* Re-raise with the default action: returning re-executes the fault. */
    signal(sig, SIG_DFL);
  } else {
    old->sa_handler(sig);
  }
}

int goro_stack_signals_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = overflow_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSEGV, &sa, &old_segv) != 0) return GORO_EINVAL;
  if (sigaction(SIGBUS, &sa, &old_bus) != 0) return GORO_EINVAL;
  handlers_installed = true;
  return GORO_OK;
}

void goro_stack_signals_remove(void) {
  if (!handlers_installed) return;
  sigaction(SIGSEGV, &old_segv, NULL);
  sigaction(SIGBUS, &old_bus, NULL);
  handlers_installed = false;
}

/* The handler runs on this, since an overflowing G has no stack left. */
enum { ALTSTACK_SIZE = 64 * 1024 };

int goro_stack_altstack_init(M *mp) {
  void *p = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return GORO_ENOMEM;
  mp->altstack.ss_sp = p;
  mp->altstack.ss_size = ALTSTACK_SIZE;
  mp->altstack.ss_flags = 0;
  if (sigaltstack(&mp->altstack, NULL) != 0) {
    munmap(p, ALTSTACK_SIZE);
    mp->altstack.ss_sp = NULL;
    return GORO_ENOMEM;
  }
  return GORO_OK;
}

void goro_stack_altstack_free(M *mp) {
  if (!mp->altstack.ss_sp) return;
  stack_t off = { .ss_flags = SS_DISABLE };
  sigaltstack(&off, NULL);
  munmap(mp->altstack.ss_sp, ALTSTACK_SIZE);
  mp->altstack.ss_sp = NULL;
}

/* }====================================================== */
