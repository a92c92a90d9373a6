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
** Stacks come in a few sizes ("classes"): class 0 is goro_config.stacksize,
** the others are made on demand for goroutines spawned with a bigger
** goro_spawn_opts.stacksize (the Lua binding asks for the depth Lua's C-call
** limit needs).  A size no bigger than class 0 gets class 0.  Each class has
** its own pool and its own part of each P's cache, so that stacks of one
** size are reused only for that size.
**
** Stacks are never unmapped while the runtime runs.  Each P keeps a small
** cache per class (no lock), spilling half to a global pool under a mutex
** when full and refilling from it when empty.  The pool holds warm stacks, whose
** touched pages are still there, and released ones.  Past POOL_KEEP warm
** stacks, sysmon gives the pages of the surplus back to the kernel
** (MADV_DONTNEED: a TLB flush each, so not on a goroutine's path), a batch
** per tick, so that a burst of a million goroutines does not pin a million
** pages once it is over.  Allocation takes warm stacks first.
*/
#include "scheduler.h"

#include <errno.h>
#include <stdint.h>
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

/* The pool of one class. */
typedef struct stackpool {
  size_t size;           /* usable bytes of its stacks */
  stacklist warm;        /* pages still committed: reuse these first */
  stacklist released;    /* pages given back */
  int cap;               /* room in each list */
  int total;             /* stacks mapped, pooled or not */
} stackpool;

static struct {
  goro_mutex lock;
  stackpool cls[GORO_STACK_CLASSES];
  _Atomic int nclasses;  /* classes made; each one's size set before */
  chunk *chunks;         /* every class's mappings */
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
  pool.cls[0].size = goro_sched.stacksize;
  atomic_store(&pool.nclasses, 1);
}

/*
** The class for stacks of at least `size` usable bytes (0: the default),
** made if there is none yet.  Once GORO_STACK_CLASSES exist, the smallest
** big enough; GORO_EINVAL if none is.  Classes only grow while the runtime
** runs, so a reader without the lock sees a prefix of them.
*/
int goro_stack_class(size_t size) {
  if (size <= pool.cls[0].size)
    return 0;
  size_t ps = pagesize();
  if (size > SIZE_MAX / 2)
    return GORO_EINVAL;
  size = (size + ps - 1) / ps * ps;
  int n = atomic_load_explicit(&pool.nclasses, memory_order_acquire);
  for (int i = 1; i < n; i++)
    if (pool.cls[i].size == size)
      return i;
  goro_mutex_lock(&pool.lock);
  n = atomic_load_explicit(&pool.nclasses, memory_order_relaxed);
  int best = -1;
  for (int i = 1; i < n; i++) {
    if (pool.cls[i].size == size) {
      best = i;
      break;
    }
    if (pool.cls[i].size > size &&
        (best < 0 || pool.cls[i].size < pool.cls[best].size))
      best = i;
  }
  if ((best < 0 || pool.cls[best].size != size) && n < GORO_STACK_CLASSES) {
    pool.cls[n].size = size;
    atomic_store_explicit(&pool.nclasses, n + 1, memory_order_release);
    best = n;
  }
  goro_mutex_unlock(&pool.lock);
  return best < 0 ? GORO_EINVAL : best;
}

/* Map a chunk of stacks of class p and put them in its pool.  pool.lock
** held. */
static int map_chunk(stackpool *p) {
  size_t guard = pagesize(), size = p->size;
  size_t slot = guard + size, len = slot * STACK_CHUNK;
  /* Room for every stack there is, so that pool_put never has to grow. */
  if (p->total + STACK_CHUNK > p->cap) {
    int cap = p->cap ? p->cap * 2 : 256;
    if (!grow(&p->warm, cap) || !grow(&p->released, cap))
      return GORO_ENOMEM;
    p->cap = cap;
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
  p->total += STACK_CHUNK;
  c->next = pool.chunks;
  pool.chunks = c;
  /* Push in reverse so the lowest stack is handed out first. */
  for (int i = STACK_CHUNK - 1; i >= 0; i--) {
    goro_stack *st = &p->released.s[p->released.n++];
    st->lo = base + (size_t)i * slot + guard;
    st->size = size;
    st->cls = (int)(p - pool.cls);
#ifdef GORO_VALGRIND
    st->vgid = VALGRIND_STACK_REGISTER(st->lo, st->lo + size);
#endif
  }
  return GORO_OK;
}

/* Take up to `want` stacks of class cls from its pool, warm ones first,
** mapping a chunk if it is empty. */
static int pool_get(int cls, goro_stack *out, int want) {
  int got = 0;
  stackpool *p = &pool.cls[cls];
  goro_mutex_lock(&pool.lock);
  if (p->warm.n + p->released.n == 0 && map_chunk(p) != GORO_OK) {
    goro_mutex_unlock(&pool.lock);
    return 0;
  }
  while (got < want && p->warm.n > 0)
    out[got++] = p->warm.s[--p->warm.n];
  while (got < want && p->released.n > 0)
    out[got++] = p->released.s[--p->released.n];
  goro_mutex_unlock(&pool.lock);
  return got;
}

/* Give back n stacks, all of class cls. */
static void pool_put(int cls, goro_stack *s, int n) {
  stackpool *p = &pool.cls[cls];
  goro_mutex_lock(&pool.lock);
  if (p->warm.n + n > p->cap)
    goro_throw("stack pool overflow");   /* cap >= total: cannot be */
  for (int i = 0; i < n; i++)
    p->warm.s[p->warm.n++] = s[i];
  goro_mutex_unlock(&pool.lock);
}

/*
** Sysmon: give back the pages of up to SCAVENGE_BATCH warm stacks beyond
** POOL_KEEP in each class.  They leave the pool while their pages go, so
** that no P can take one meanwhile.  Returns how many; 0 when there is no
** surplus.
*/
int goro_stack_scavenge(void) {
  goro_stack batch[SCAVENGE_BATCH];
  int total = 0;
  int nclasses = atomic_load_explicit(&pool.nclasses, memory_order_acquire);
  for (int c = 0; c < nclasses; c++) {
    stackpool *p = &pool.cls[c];
    int n = 0;
    goro_mutex_lock(&pool.lock);
    while (n < SCAVENGE_BATCH && p->warm.n > POOL_KEEP)
      batch[n++] = p->warm.s[--p->warm.n];
    goro_mutex_unlock(&pool.lock);
    if (n == 0)
      continue;
    for (int i = 0; i < n; i++)
      madvise(batch[i].lo, batch[i].size, MADV_DONTNEED);
    goro_mutex_lock(&pool.lock);
    for (int i = 0; i < n; i++)
      p->released.s[p->released.n++] = batch[i];
    goro_mutex_unlock(&pool.lock);
    total += n;
  }
  return total;
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

int goro_stack_alloc(P *pp, goro_stack *s, int cls) {
  if (pp == NULL) {
    if (pool_get(cls, s, 1) != 1)
      return GORO_ENOMEM;
  } else {
    goro_stack *cache = pp->stackcache[cls];
    if (pp->nstack[cls] == 0)
      pp->nstack[cls] = pool_get(cls, cache, STACK_CACHE / 2);
    if (pp->nstack[cls] == 0)
      return GORO_ENOMEM;
    *s = cache[--pp->nstack[cls]];
  }
  count_stack(pp, 1);
  return GORO_OK;
}

void goro_stack_free(P *pp, goro_stack *s) {
  if (s->lo == NULL)
    return;
  count_stack(pp, -1);
  int cls = s->cls;
  if (pp == NULL) {
    pool_put(cls, s, 1);
  } else {
    goro_stack *cache = pp->stackcache[cls];
    if (pp->nstack[cls] == STACK_CACHE) {
      pool_put(cls, &cache[STACK_CACHE / 2], STACK_CACHE / 2);
      pp->nstack[cls] = STACK_CACHE / 2;
    }
    cache[pp->nstack[cls]++] = *s;
  }
  s->lo = NULL;
  s->size = 0;
}

void goro_stack_flush(P *pp) {
  for (int c = 0; c < GORO_STACK_CLASSES; c++) {
    pool_put(c, pp->stackcache[c], pp->nstack[c]);
    pp->nstack[c] = 0;
  }
}

/* Shutdown: every stack, wherever it is, lies in some chunk. */
void goro_stack_release_all(void) {
  atomic_store(&goro_stacks_inuse, 0);
  goro_mutex_lock(&pool.lock);
  for (int c = 0; c < GORO_STACK_CLASSES; c++) {
    stackpool *p = &pool.cls[c];
#ifdef GORO_VALGRIND
    /* Stacks held by Gs were deregistered by the caller. */
    for (int i = 0; i < p->warm.n; i++)
      VALGRIND_STACK_DEREGISTER(p->warm.s[i].vgid);
    for (int i = 0; i < p->released.n; i++)
      VALGRIND_STACK_DEREGISTER(p->released.s[i].vgid);
#endif
    free(p->warm.s);
    free(p->released.s);
    memset(p, 0, sizeof *p);
  }
  while (pool.chunks) {
    chunk *c = pool.chunks;
    pool.chunks = c->next;
    munmap(c->base, c->len);
    free(c);
  }
  /* The next goro_init may have another default size. */
  atomic_store(&pool.nclasses, 0);
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
