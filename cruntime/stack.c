/*
** stack.c — native stacks for goroutines.
**
** A stack is part of an anonymous mapping, with one guard page below it.
** Memory is committed page by page as the goroutine touches it, so a 256 KiB
** stack of which a task uses 2 KiB costs one page of RSS.  Running off the
** end lands on the guard page; the SIGSEGV handler (on the M's alternate
** signal stack, since the goroutine's own is exhausted) reports it as
** "goroutine N: stack overflow" and aborts.
**
** Mapping a stack is expensive in the kernel: mmap and mprotect take the
** process's mm lock for writing, which stalls every page fault of every
** other thread, and a guard page made by mprotect splits the mapping, so a
** million stacks would need two million mappings (vm.max_map_count is
** 65530 by default).  So stacks are made 32 at a time in one mapping, and
** where the kernel has guard regions (MADV_GUARD_INSTALL, Linux 6.13) the
** guard pages are page-table markers that split nothing and need the lock
** only for reading.  Older kernels get mprotect'ed guards.
**
** Stacks are never unmapped while the runtime runs.  Each P keeps a small
** cache (no lock), spilling half to a global pool under a mutex when full
** and refilling from it when empty.  The pool holds warm stacks, whose
** touched pages are still there, and released ones.  Past POOL_KEEP warm
** stacks, sysmon gives the pages of the surplus back to the kernel
** (MADV_DONTNEED: a TLB flush each, so not on a goroutine's path), a batch
** per tick, so that a burst of a million goroutines does not pin a million
** pages once it is over.  Allocation takes warm stacks first.
*/
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Under valgrind, register each stack so that memcheck knows a switch onto
** it is a stack switch and not a wild change of the stack pointer.  The
** client requests are a few no-op instructions outside valgrind. */
#if defined(__has_include)
# if __has_include(<valgrind/valgrind.h>)
#  include <valgrind/valgrind.h>
#  define GORO_VALGRIND 1
# endif
#endif

#ifndef MADV_GUARD_INSTALL
# define MADV_GUARD_INSTALL 102
#endif

enum {
  STACK_CHUNK = 32,      /* stacks per mapping */
  POOL_KEEP = 1024,      /* warm stacks the pool keeps */
  SCAVENGE_BATCH = 256,  /* stacks released per sysmon tick */
};

/* One mapping of STACK_CHUNK stacks, kept for unmapping at shutdown. */
typedef struct chunk {
  struct chunk *next;
  char *base;
  size_t len;
} chunk;

/* A LIFO array of stacks, sized for every stack there is. */
typedef struct stacklist {
  goro_stack *s;
  int n;
} stacklist;

static struct {
  goro_mutex lock;
  stacklist warm;        /* pages still committed: reuse these first */
  stacklist released;    /* pages given back */
  int cap;               /* room in each list */
  int total;             /* stacks mapped, pooled or not */
  chunk *chunks;
  bool guard_regions;    /* MADV_GUARD_INSTALL works here */
} pool;

static bool grow(stacklist *l, int cap) {
  goro_stack *s = realloc(l->s, (size_t)cap * sizeof *s);
  if (!s) return false;
  l->s = s;
  return true;
}

static size_t pagesize(void) {
  static size_t ps;
  if (ps == 0)
    ps = (size_t)sysconf(_SC_PAGESIZE);
  return ps;
}

/*
** Does MADV_GUARD_INSTALL really make a guard here?  An old kernel says
** EINVAL; qemu-user says success and ignores it.  A write(2) from a guard
** page fails with EFAULT, from an ordinary page it succeeds.
*/
static bool probe_guard_regions(void) {
  size_t ps = pagesize();
  char *p = mmap(NULL, ps, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  bool ok = false;
  int fds[2];
  if (madvise(p, ps, MADV_GUARD_INSTALL) == 0 && pipe(fds) == 0) {
    ok = write(fds[1], p, 1) < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
  }
  munmap(p, ps);
  return ok;
}

void goro_stack_init(void) {
  pool.guard_regions = probe_guard_regions();
}

/* Map a chunk of stacks and put them in the pool.  pool.lock held. */
static int map_chunk(void) {
  size_t guard = pagesize(), size = goro_sched.stacksize;
  size_t slot = guard + size, len = slot * STACK_CHUNK;
  /* Room for every stack there is, so that pool_put never has to grow. */
  if (pool.total + STACK_CHUNK > pool.cap) {
    int cap = pool.cap ? pool.cap * 2 : 256;
    if (!grow(&pool.warm, cap) || !grow(&pool.released, cap))
      return GORO_ENOMEM;
    pool.cap = cap;
  }
  chunk *c = malloc(sizeof *c);
  if (!c) return GORO_ENOMEM;
  char *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                    -1, 0);
  if (base == MAP_FAILED) {
    free(c);
    return GORO_ENOMEM;
  }
  for (int i = 0; i < STACK_CHUNK; i++) {
    char *g = base + (size_t)i * slot;
    int rc = pool.guard_regions ? madvise(g, guard, MADV_GUARD_INSTALL)
                                : mprotect(g, guard, PROT_NONE);
    if (rc != 0) {
      munmap(base, len);
      free(c);
      return GORO_ENOMEM;
    }
  }
  c->base = base;
  c->len = len;
  pool.total += STACK_CHUNK;
  c->next = pool.chunks;
  pool.chunks = c;
  /* Push in reverse so the lowest stack is handed out first. */
  for (int i = STACK_CHUNK - 1; i >= 0; i--) {
    goro_stack *st = &pool.released.s[pool.released.n++];
    st->lo = base + (size_t)i * slot + guard;
    st->size = size;
#ifdef GORO_VALGRIND
    st->vgid = VALGRIND_STACK_REGISTER(st->lo, st->lo + size);
#endif
  }
  return GORO_OK;
}

/* Take up to `want` stacks from the pool, warm ones first, mapping a chunk
** if it is empty. */
static int pool_get(goro_stack *out, int want) {
  int got = 0;
  goro_mutex_lock(&pool.lock);
  if (pool.warm.n + pool.released.n == 0 && map_chunk() != GORO_OK) {
    goro_mutex_unlock(&pool.lock);
    return 0;
  }
  while (got < want && pool.warm.n > 0)
    out[got++] = pool.warm.s[--pool.warm.n];
  while (got < want && pool.released.n > 0)
    out[got++] = pool.released.s[--pool.released.n];
  goro_mutex_unlock(&pool.lock);
  return got;
}

static void pool_put(goro_stack *s, int n) {
  goro_mutex_lock(&pool.lock);
  if (pool.warm.n + n > pool.cap)
    goro_throw("stack pool overflow");   /* cap >= total: cannot be */
  for (int i = 0; i < n; i++)
    pool.warm.s[pool.warm.n++] = s[i];
  goro_mutex_unlock(&pool.lock);
}

/*
** Sysmon: give back the pages of up to SCAVENGE_BATCH warm stacks beyond
** POOL_KEEP.  They leave the pool while their pages go, so that no P can
** take one meanwhile.  Returns how many; 0 when there is no surplus.
*/
int goro_stack_scavenge(void) {
  goro_stack batch[SCAVENGE_BATCH];
  int n = 0;
  goro_mutex_lock(&pool.lock);
  while (n < SCAVENGE_BATCH && pool.warm.n > POOL_KEEP)
    batch[n++] = pool.warm.s[--pool.warm.n];
  goro_mutex_unlock(&pool.lock);
  if (n == 0)
    return 0;
  for (int i = 0; i < n; i++)
    madvise(batch[i].lo, batch[i].size, MADV_DONTNEED);
  goro_mutex_lock(&pool.lock);
  for (int i = 0; i < n; i++)
    pool.released.s[pool.released.n++] = batch[i];
  goro_mutex_unlock(&pool.lock);
  return n;
}

/* Stacks held by goroutines (goro_stats): not those cached or pooled.
** Counted per P by its owner, so that the count costs no shared cache
** line; a P's count may go negative (a G frees on another P than it
** allocated on), the sum does not.  Without a P: this global. */
_Atomic int64_t goro_stacks_inuse;

static void count_stack(P *pp, int64_t d) {
  if (pp)
    atomic_store_explicit(&pp->nstackheld,
        atomic_load_explicit(&pp->nstackheld, memory_order_relaxed) + d,
        memory_order_relaxed);
  else
    atomic_fetch_add_explicit(&goro_stacks_inuse, d, memory_order_relaxed);
}

int goro_stack_alloc(P *pp, goro_stack *s) {
  if (pp == NULL) {
    if (pool_get(s, 1) != 1)
      return GORO_ENOMEM;
  } else {
    if (pp->nstack == 0)
      pp->nstack = pool_get(pp->stackcache, STACK_CACHE / 2);
    if (pp->nstack == 0)
      return GORO_ENOMEM;
    *s = pp->stackcache[--pp->nstack];
  }
  count_stack(pp, 1);
  return GORO_OK;
}

void goro_stack_free(P *pp, goro_stack *s) {
  if (s->lo == NULL)
    return;
  count_stack(pp, -1);
  if (pp == NULL) {
    pool_put(s, 1);
  } else {
    if (pp->nstack == STACK_CACHE) {
      pool_put(&pp->stackcache[STACK_CACHE / 2], STACK_CACHE / 2);
      pp->nstack = STACK_CACHE / 2;
    }
    pp->stackcache[pp->nstack++] = *s;
  }
  s->lo = NULL;
  s->size = 0;
}

void goro_stack_flush(P *pp) {
  pool_put(pp->stackcache, pp->nstack);
  pp->nstack = 0;
}

/* Shutdown: every stack, wherever it is, lies in some chunk. */
void goro_stack_release_all(void) {
  atomic_store(&goro_stacks_inuse, 0);
  goro_mutex_lock(&pool.lock);
#ifdef GORO_VALGRIND
  /* Stacks held by Gs were deregistered by the caller. */
  for (int i = 0; i < pool.warm.n; i++)
    VALGRIND_STACK_DEREGISTER(pool.warm.s[i].vgid);
  for (int i = 0; i < pool.released.n; i++)
    VALGRIND_STACK_DEREGISTER(pool.released.s[i].vgid);
#endif
  while (pool.chunks) {
    chunk *c = pool.chunks;
    pool.chunks = c->next;
    munmap(c->base, c->len);
    free(c);
  }
  free(pool.warm.s);
  free(pool.released.s);
  pool.warm = pool.released = (stacklist){ NULL, 0 };
  pool.cap = pool.total = 0;
  goro_mutex_unlock(&pool.lock);
}

void goro_stack_forget(goro_stack *s) {
#ifdef GORO_VALGRIND
  if (s->lo)
    VALGRIND_STACK_DEREGISTER(s->vgid);
#endif
  s->lo = NULL;
  s->size = 0;
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
