/*
** sched.c — the scheduler: Ms and Ps, schedule() and findrunnable(), work
** stealing, spinning, parking and readying goroutines.
**
** The model is Go's (runtime/proc.go); its long comment "Worker thread
** parking/unparking" is the contract this file keeps:
**
**   If there is a runnable G and an idle P, then at least one M is
**   spinning (looking for work) or about to be started.
**
** so that work never sits in a queue while a core idles, yet Ms do not all
** spin.  An M spins only while 2 * (spinning Ms) < (busy Ps), and when a
** spinning M finds work it stops spinning and, if it was the last spinner,
** wakes another (resetspinning) — work arrives in bursts.  Whoever makes a G
** runnable (spawn, ready) calls wakep(), which starts a spinning M only if
** none spins already.  A spinning M that finds nothing drops its P and
** re-checks every run queue after it stopped counting as a spinner, so that
** a G queued in between is not stranded.
**
** An M runs the scheduler on its own pthread stack (g0) and switches to a G
** with goro_fiber_to_g; the G comes back to g0 with a request in M.after
** (park, yield, exit, or "left a syscall without a P") which g0 carries out
** in execute() after the switch, when the G's registers are safely saved.
** That is what makes parking race-free: the unlock that publishes a parked
** G to its wakers runs on g0, after the G can no longer be running.
*/
#include "scheduler.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

sched_t goro_sched;
#define sched goro_sched

static __thread M *tls_m;            /* this thread's M, NULL if foreign */
static __thread G *tls_waiter;       /* this foreign thread's waiter */
static __thread uint64_t tls_rand;   /* fastrand state off the Ms */

/* Serialises goro_init/goro_shutdown. */
static goro_mutex lifecycle = GORO_MUTEX_INIT;

/* goro_wait: foreign threads and Gs wait on this condition variable. */
static pthread_mutex_t waitmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t waitcv;
static _Atomic int nwaiters;

static goro_preempt_hook preempt_hook;
static void *preempt_ud;

/* Deadlock detection (checkdead), all under sched.lock: the handler, the
** foreign threads that have used the runtime, how many of them are blocked
** in it, and how many of those in goro_wait.  Outside `sched`, which
** goro_init clears: a foreign thread outlives a runtime restart. */
/* Goroutine ids: never reused in a process, across runtime restarts too
** (so outside `sched`, which goro_init clears). */
static _Atomic int64_t goidgen;

/* Pending poller waits (goro_externalwait_add): outside `sched` too, since
** a timer object outlives a restart of the runtime (go.gomaxprocs). */
static _Atomic int64_t nexternalwait;

static goro_deadlock_handler deadlock_handler;
static void *deadlock_ud;
static int nforeign, nforeignblocked, nforeignwaitall;

/*
** The compiler may cache the address of a thread-local variable across a
** call; a G that parks on one M and resumes on another would then read the
** old thread's M.  This accessor is never inlined, and the empty asm keeps
** the compiler from deducing that it is pure and merging calls.
*/
__attribute__((noinline)) M *goro_getm(void) {
  M *mp = tls_m;
  __asm__ __volatile__("" : "+r"(mp));
  return mp;
}

_Noreturn void goro_throw(const char *fmt, ...) {
  va_list ap;
  fputs("goro: fatal error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  abort();
}


/*
** {======================================================
** Random numbers (wyrand): per M, or per foreign thread
** =======================================================
*/

static uint64_t wyrand(uint64_t *state) {
  *state += 0xa0761d6478bd642fULL;
  __uint128_t t = (__uint128_t)*state * (*state ^ 0xe7037ed1a0b428dbULL);
  return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

static uint64_t seed(void *salt) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)salt;
}

uint32_t goro_fastrand(void) {
  M *mp = goro_getm();
  uint64_t *state = mp ? &mp->fastrand : &tls_rand;
  if (*state == 0) *state = seed(state);
  return (uint32_t)wyrand(state);
}

uint32_t goro_fastrandn(uint32_t n) {
  /* Lemire's multiply-shift: uniform enough for n << 2^32, no division. */
  return (uint32_t)(((uint64_t)goro_fastrand() * n) >> 32);
}

/* }====================================================== */


/*
** {======================================================
** G states, Ps, Ms
** =======================================================
*/

/*
** Every transition but WAITING -> RUNNABLE is made by the one thread that
** owns the G at that moment (the M that dequeued it, the G itself, its g0
** after the switch), so a checked store does; a CAS costs a locked
** instruction, and a hop between goroutines makes three transitions.
** goro_ready's WAITING -> RUNNABLE races with nothing legitimate either,
** but a CAS there turns a double ready into a clear error.
*/
void setgstatus(G *gp, uint32_t from, uint32_t to) {
  uint32_t old = atomic_load_explicit(&gp->status, memory_order_relaxed);
  if (old != from)
    goro_throw("setgstatus: goroutine %lld is in state %u, not %u",
               (long long)gp->goid, old, from);
  atomic_store_explicit(&gp->status, to, memory_order_release);
}

void casgstatus(G *gp, uint32_t from, uint32_t to) {
  uint32_t old = from;
  if (!atomic_compare_exchange_strong_explicit(&gp->status, &old, to,
          memory_order_acq_rel, memory_order_acquire))
    goro_throw("casgstatus: goroutine %lld is in state %u, not %u",
               (long long)gp->goid, old, from);
}

void pidleput(P *pp) {
  if (!runqempty(pp))
    goro_throw("pidleput: P %d has runnable goroutines", pp->id);
  RELAXED_STORE(pp->m, NULL);
  atomic_store_explicit(&pp->status, P_IDLE, memory_order_relaxed);
  pp->link = sched.pidle;
  sched.pidle = pp;
  atomic_fetch_add(&sched.npidle, 1);
}

P *pidleget(void) {
  P *pp = sched.pidle;
  if (pp) {
    sched.pidle = pp->link;
    atomic_fetch_sub(&sched.npidle, 1);
  }
  return pp;
}

void acquirep(M *mp, P *pp) {
  mp->p = pp;
  RELEASE_STORE(pp->m, mp);
  atomic_store_explicit(&pp->status, P_RUNNING, memory_order_relaxed);
}

static void releasep(M *mp) {
  mp->p = NULL;
}

static M *mget(void) {
  M *mp = sched.midle;
  if (mp) {
    sched.midle = mp->schedlink;
    sched.nmidle--;
  }
  return mp;
}

static void *mstart(void *arg);

/*
** Signals a host program handles stay off the runtime's threads: a Ctrl-C
** or an alarm is delivered to one of the host's.  Synchronous signals
** (faults) are never blocked: a fault while they are is undefined, and
** qemu-user needs them delivered to run the program at all.  The thread is
** created with the mask in force, so it has it from its first instruction.
*/
void goro_block_async_signals(sigset_t *old) {
  sigset_t async;
  sigfillset(&async);
  sigdelset(&async, SIGSEGV);
  sigdelset(&async, SIGBUS);
  sigdelset(&async, SIGFPE);
  sigdelset(&async, SIGILL);
  sigdelset(&async, SIGTRAP);
  sigdelset(&async, SIGABRT);
  sigdelset(&async, SIGURG);    /* preemption by an embedder (see goro.h) */
  pthread_sigmask(SIG_SETMASK, &async, old);
}

/* Start a new M for pp.  sched.lock held. */
static int newm(P *pp, bool spinning) {
  M *mp = calloc(1, sizeof *mp);
  if (!mp) return GORO_ENOMEM;
  mp->id = sched.mnext++;
  mp->nextp = pp;
  mp->spinning = spinning;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 512 * 1024);   /* g0: the scheduler only */
  sigset_t old;
  goro_block_async_signals(&old);
  int rc = pthread_create(&mp->thread, &attr, mstart, mp);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    free(mp);
    return GORO_ENOMEM;
  }
  mp->alllink = sched.allm;
  sched.allm = mp;
  sched.mcount++;
  return GORO_OK;
}

/*
** Run some M on pp (an idle P if NULL): reuse an idle M, or create one.
** With `spinning`, the caller has counted the M in nmspinning already.
** When no M can be had (the cap), the P goes back to the idle list: runnable
** Gs then wait until an M comes back from a syscall and takes it.
*/
void startm(P *pp, bool spinning) {
  goro_mutex_lock(&sched.lock);
  if (pp == NULL) {
    pp = pidleget();
    if (pp == NULL) {
      goro_mutex_unlock(&sched.lock);
      if (spinning)
        atomic_fetch_sub(&sched.nmspinning, 1);
      return;
    }
  }
  M *nmp = mget();
  if (nmp == NULL) {
    if (atomic_load(&sched.stopping) || sched.mcount >= sched.maxmcount ||
        newm(pp, spinning) != GORO_OK) {
      runqdrain(pp);
      pidleput(pp);
      goro_mutex_unlock(&sched.lock);
      if (spinning)
        atomic_fetch_sub(&sched.nmspinning, 1);
      return;
    }
    goro_mutex_unlock(&sched.lock);
    goro_sysmon_wake();
    return;
  }
  goro_mutex_unlock(&sched.lock);
  nmp->spinning = spinning;
  nmp->nextp = pp;
  goro_note_wakeup(&nmp->park);
  goro_sysmon_wake();
}

/* Make sure some M looks for the work just made runnable. */
void wakep(void) {
  if (atomic_load_explicit(&sched.npidle, memory_order_seq_cst) == 0)
    return;
  int zero = 0;
  if (atomic_load(&sched.nmspinning) != 0 ||
      !atomic_compare_exchange_strong(&sched.nmspinning, &zero, 1))
    return;
  startm(NULL, true);
}

/*
** pp lost its M (a syscall): give it to another M if there is work for it,
** else make it idle (Go's handoffp).
*/
void handoffp(P *pp) {
  if (!runqempty(pp) || atomic_load(&sched.runqsize) > 0) {
    startm(pp, false);
    return;
  }
  /* No local work; but with nobody spinning or idle, somebody must look. */
  if (atomic_load(&sched.nmspinning) + atomic_load(&sched.npidle) == 0) {
    int zero = 0;
    if (atomic_compare_exchange_strong(&sched.nmspinning, &zero, 1)) {
      startm(pp, true);
      return;
    }
  }
  goro_mutex_lock(&sched.lock);
  if (atomic_load(&sched.runqsize) > 0) {
    goro_mutex_unlock(&sched.lock);
    startm(pp, false);
    return;
  }
  pidleput(pp);
  goro_mutex_unlock(&sched.lock);
}

static void checkdead(void);

/* Park an M without work until startm hands it a P.  False: shutdown. */
static bool stopm(M *mp) {
  goro_note_clear(&mp->park);
  goro_mutex_lock(&sched.lock);
  if (atomic_load(&sched.stopping)) {
    goro_mutex_unlock(&sched.lock);
    return false;
  }
  mp->schedlink = sched.midle;
  sched.midle = mp;
  sched.nmidle++;
  checkdead();   /* may not return */
  goro_mutex_unlock(&sched.lock);
  goro_note_sleep(&mp->park);
  if (mp->exiting)
    return false;
  acquirep(mp, mp->nextp);
  mp->nextp = NULL;
  return true;
}

static void resetspinning(M *mp) {
  mp->spinning = false;
  int n = atomic_fetch_sub(&sched.nmspinning, 1) - 1;
  if (n < 0)
    goro_throw("resetspinning: negative nmspinning");
  /* We were the last spinner and found work: more may be coming. */
  if (n == 0 && atomic_load(&sched.npidle) > 0)
    wakep();
}

/* }====================================================== */


/*
** {======================================================
** G allocation: per-P free lists over a global one
** =======================================================
*/

static G *newg(void) {
  G *gp = calloc(1, sizeof *gp);
  if (!gp) return NULL;
  goro_mutex_lock(&sched.allglock);
  gp->alllink = sched.allgs;
  sched.allgs = gp;
  goro_mutex_unlock(&sched.allglock);
  return gp;
}

enum { GFREE_BATCH = 32 };

static G *gfget(P *pp) {
  G *gp;
  if (pp == NULL) {
    goro_mutex_lock(&sched.gflock);
    gp = sched.gfree;
    if (gp) { sched.gfree = gp->schedlink; sched.ngfree--; }
    goro_mutex_unlock(&sched.gflock);
    return gp ? gp : newg();
  }
  if (pp->gfree == NULL && RELAXED_LOAD(sched.ngfree) > 0) {
    goro_mutex_lock(&sched.gflock);
    while (pp->ngfree < GFREE_BATCH && sched.gfree) {
      gp = sched.gfree;
      sched.gfree = gp->schedlink;
      RELAXED_STORE(sched.ngfree, sched.ngfree - 1);
      gp->schedlink = pp->gfree;
      pp->gfree = gp;
      pp->ngfree++;
    }
    goro_mutex_unlock(&sched.gflock);
  }
  gp = pp->gfree;
  if (gp) {
    pp->gfree = gp->schedlink;
    pp->ngfree--;
    return gp;
  }
  return newg();
}

/*
** A dead G keeps its stack while it sits on its P's list, ready for the
** next spawn there; the Gs spilled to the global list give their stacks
** back, so that a burst of goroutines does not pin a burst of stacks.
*/
static void gfput(P *pp, G *gp) {
  gp->schedlink = pp->gfree;
  pp->gfree = gp;
  pp->ngfree++;
  if (pp->ngfree < GFREE_LOCAL_MAX)
    return;
  G *head = NULL, *tail = NULL;
  int n = 0;
  while (pp->ngfree > GFREE_BATCH) {
    G *g = pp->gfree;
    pp->gfree = g->schedlink;
    pp->ngfree--;
    goro_stack_free(pp, &g->stack);
    goro_fiber_destroy(g);
    g->schedlink = head;
    head = g;
    if (!tail) tail = g;
    n++;
  }
  goro_mutex_lock(&sched.gflock);
  tail->schedlink = sched.gfree;
  sched.gfree = head;
  RELAXED_STORE(sched.ngfree, sched.ngfree + n);
  goro_mutex_unlock(&sched.gflock);
}

/* }====================================================== */


/*
** {======================================================
** Running a G
** =======================================================
*/

static void goexit(M *mp, G *gp);
static void discardg(M *mp, G *gp);

/* Where every C task begins, on its own stack. */
static void gentry(void *arg) {
  G *gp = arg;
  goro_fiber_started(gp);
  gp->fn(gp->arg);
  M *mp = goro_getm();
  mp->after = GO_EXIT;
  goro_fiber_exit_to_g0(mp, gp);
}

/*
** On g0: run gp on this M until it switches back, then do what it asked.
** `inherit`: gp shares the time slice of the G that readied it (runnext),
** so the scheduler tick does not move and sysmon still sees the slice.
*/
static void execute(M *mp, G *gp, bool inherit) {
  for (;;) {
    P *pp = mp->p;
    /* A G bound to a token that another owns waits in the token's queue,
    ** runnable; this M goes on with other work.  One whose token was
    ** closed never runs again. */
    if (gp->token) {
      int claim = goro_token_claim(gp);
      if (claim == TOKEN_CLOSED)
        discardg(mp, gp);
      if (claim != TOKEN_OWNED)
        return;
    }
    setgstatus(gp, G_RUNNABLE, G_RUNNING);
    if (!inherit)
      COUNTER_INC(pp->schedtick);
    COUNTER_INC(pp->nswitch);
    gp->m = mp;
    RELEASE_STORE(mp->curg, gp);
    if (gp->ctx.sp == NULL) {
      /* First run, or a restart after goro_park_k: a stack and a fresh
      ** frame at gentry. */
      if (gp->stack.lo == NULL &&
          goro_stack_alloc(pp, &gp->stack, gp->stackcls) != GORO_OK)
        goro_throw("goroutine %lld: cannot map a stack: %s (check "
                   "/proc/sys/vm/max_map_count)", (long long)gp->goid,
                   strerror(errno));
      goro_fiber_clean_stack(&gp->stack);
      goro_fiber_create(gp);
      goro_ctx_init(&gp->ctx, gp->stack.lo, gp->stack.size, gentry, gp);
    }
    goro_fiber_to_g(mp, gp);
    /* Back on g0 of this same M: gp's registers are saved. */
    RELAXED_STORE(mp->curg, NULL);
    gp->m = NULL;
    pp = mp->p;
    /* Whatever it asked for, it stops running: its token goes on.  Before
    ** anything can make it runnable again, or it would find the token
    ** still its own while this M hands it away. */
    if (gp->token)
      goro_token_switched_out(gp, pp);
    switch (mp->after) {
      case GO_PARK:
      case GO_PARK_K: {
        goro_unlockf unlockf = gp->waitunlockf;
        void *lock = gp->waitlock;
        void *oldfiber = NULL;
        gp->waitunlockf = NULL;
        gp->waitlock = NULL;
        if (mp->after == GO_PARK_K) {
          /* Its frames are abandoned: it restarts at gp->fn.  The stack
          ** goes back now, while nobody else can run gp; so does its TSan
          ** fiber, whose shadow stack holds those frames. */
          gp->ctx.sp = NULL;
          goro_stack_free(pp, &gp->stack);
          oldfiber = goro_fiber_renew(gp);
        }
        void *fiber = oldfiber ? oldfiber : gp->tsan_fiber;
        setgstatus(gp, G_RUNNING, G_WAITING);
        /* From here on gp belongs to whoever readies it: do not touch. */
        bool parked = !unlockf || goro_fiber_unlock_as(mp, gp, fiber, unlockf, lock);
        if (oldfiber)
          goro_fiber_release(oldfiber);
        if (!parked) {
          setgstatus(gp, G_WAITING, G_RUNNABLE);
          inherit = true;
          continue;
        }
        return;
      }
      case GO_YIELD:
        setgstatus(gp, G_RUNNING, G_RUNNABLE);
        goro_mutex_lock(&sched.lock);
        globrunqput(gp);
        goro_mutex_unlock(&sched.lock);
        wakep();
        return;
      case GO_EXIT:
        goexit(mp, gp);
        return;
      case GO_EXITSYSCALL:
        exitsyscall0(mp, gp);
        if (mp->p) {       /* found a P for it: run it again at once */
          inherit = false;
          continue;
        }
        return;
      default:
        goro_throw("execute: bad request %d from goroutine %lld", mp->after,
                   (long long)gp->goid);
    }
  }
}

/*
** gp, runnable, is bound to a closed token (goro_token_close): it ends
** here instead of running.  Whatever readied it let go of it, so nothing
** refers to its stack or to what its local slot points to any more; but
** a select woken by one case still has sudogs queued on the others (its
** last pass, which will not run, takes them off).  A stack with frames
** on it is simply reused: nothing on it is ever unwound.
*/
static void discardg(M *mp, G *gp) {
  goro_chan_unqueue_all(gp);
  for (sudog *s = gp->waiting, *next; s; s = next) {
    next = s->waitlink;
    s->waitlink = NULL;
    goro_release_sudog(s);
  }
  gp->waiting = NULL;
  gp->param = NULL;
  atomic_store(&gp->selectdone, 0);   /* a select's winner was never told */
  goro_token_discard(gp->token, gp);
  if (gp->ctx.sp != NULL)
    goro_fiber_destroy(gp);   /* its TSan shadow stack holds those frames */
  setgstatus(gp, G_RUNNABLE, G_RUNNING);
  goexit(mp, gp);
}

/* The Gs bound to t waiting on channels: off the channels, and readied
** (goro_token_close; t's owner is the caller, so they queue on t). */
void goro_cancel_chan_waits(goro_token *t) {
  G *won = NULL;
  goro_mutex_lock(&sched.allglock);
  for (G *gp = sched.allgs; gp; gp = gp->alllink) {
    /* Other tokens' Gs start and end meanwhile: `token` is written
    ** atomically, and read after `status`, which a spawn stores after it,
    ** so the two belong to the same life of the G. */
    uint32_t status = atomic_load(&gp->status);
    goro_token *gt = RELAXED_LOAD(gp->token);
    if (status == G_RUNNING && gt == t) {
      /* Not running: t is the caller's.  Its M released t for it and is
      ** about to record why (execute, after the switch): wait for that. */
      while ((status = atomic_load(&gp->status)) == G_RUNNING)
        goro_cpu_relax();
    }
    if (status != G_WAITING || gt != t || gp->waiting == NULL)
      continue;
    if (goro_chan_cancel(gp)) {
      gp->schedlink = won;
      won = gp;
    }
  }
  goro_mutex_unlock(&sched.allglock);
  for (G *gp = won, *next; gp; gp = next) {
    next = gp->schedlink;
    gp->schedlink = NULL;
    goro_goready(gp);
  }
}

static void goexit(M *mp, G *gp) {
  setgstatus(gp, G_RUNNING, G_DEAD);
  gp->ctx.sp = NULL;
  gp->fn = NULL;
  gp->arg = NULL;
  RELAXED_STORE(gp->token, NULL);   /* goro_cancel_chan_waits reads it */
  if (gp->reftoken) {
    goro_token_unref(gp->reftoken);
    gp->reftoken = NULL;
  }
  gp->local = NULL;
  atomic_store_explicit(&gp->preempt, false, memory_order_relaxed);
  gfput(mp->p, gp);
  int64_t left = atomic_fetch_sub(&sched.ngoroutines, 1) - 1;
  /* Wake goro_wait callers: a foreign one waits for 0, a G for 1. */
  if (left <= 1 && atomic_load(&nwaiters) > 0) {
    pthread_mutex_lock(&waitmu);
    pthread_cond_broadcast(&waitcv);
    pthread_mutex_unlock(&waitmu);
  }
}

/* Try to steal from the other Ps, in random order, four rounds; the last
** round may also take a victim's runnext. */
static G *stealwork(P *pp) {
  int n = sched.nprocs;
  for (int round = 0; round < 4; round++) {
    bool stealnext = round == 3;
    uint32_t start = goro_fastrandn((uint32_t)n);
    for (int k = 0; k < n; k++) {
      if (atomic_load_explicit(&sched.stopping, memory_order_relaxed))
        return NULL;
      P *victim = sched.allp[(start + (uint32_t)k) % (uint32_t)n];
      if (victim == pp)
        continue;
      G *gp = runqsteal(pp, victim, stealnext);
      if (gp) {
        COUNTER_INC(pp->nsteal);
        return gp;
      }
    }
  }
  return NULL;
}

static bool any_runq_nonempty(void) {
  if (atomic_load(&sched.runqsize) > 0)
    return true;
  for (int i = 0; i < sched.nprocs; i++)
    if (!runqempty(sched.allp[i]))
      return true;
  return false;
}

/*
** Find a G to run: local queue, global queue, then steal; with nothing,
** give the P back and sleep until startm hands this M a P again.  Returns
** NULL only when the runtime shuts down.
*/
static G *findrunnable(M *mp, bool *inherit) {
  G *gp;
top:;
  P *pp = mp->p;
  *inherit = false;
  if (atomic_load_explicit(&sched.stopping, memory_order_relaxed))
    return NULL;

  /* Every 61st tick, the global queue first, or two Gs that keep readying
  ** each other on the local queue would starve it. */
  if (atomic_load_explicit(&pp->schedtick, memory_order_relaxed) % 61 == 0 &&
      atomic_load_explicit(&sched.runqsize, memory_order_relaxed) > 0) {
    goro_mutex_lock(&sched.lock);
    gp = globrunqget(pp, 1);
    goro_mutex_unlock(&sched.lock);
    if (gp) return gp;
  }

  if ((gp = runqget(pp, inherit)))
    return gp;

  if (atomic_load_explicit(&sched.runqsize, memory_order_relaxed) > 0) {
    goro_mutex_lock(&sched.lock);
    gp = globrunqget(pp, 0);
    goro_mutex_unlock(&sched.lock);
    if (gp) return gp;
  }

  /* Spin only while fewer than half the busy Ps have a spinner: past that
  ** more spinning burns CPU without finding more work. */
  int busy = sched.nprocs - atomic_load(&sched.npidle);
  if (mp->spinning || 2 * atomic_load(&sched.nmspinning) < busy) {
    if (!mp->spinning) {
      mp->spinning = true;
      atomic_fetch_add(&sched.nmspinning, 1);
    }
    if ((gp = stealwork(pp)))
      return gp;
  }

  /* Nothing.  Give up the P, but look at the global queue once more under
  ** the lock that guards it, so nothing slips in between. */
  goro_mutex_lock(&sched.lock);
  if (atomic_load(&sched.stopping)) {
    goro_mutex_unlock(&sched.lock);
    return NULL;
  }
  if (atomic_load(&sched.runqsize) > 0) {
    gp = globrunqget(pp, 0);
    goro_mutex_unlock(&sched.lock);
    return gp;
  }
  releasep(mp);
  pidleput(pp);
  goro_mutex_unlock(&sched.lock);

  /*
  ** We stopped spinning after dropping the P.  A G readied meanwhile saw us
  ** spinning and did not wake anybody, so look again now that we do not
  ** count: if work is there, take an idle P back and spin for it.
  */
  if (mp->spinning) {
    mp->spinning = false;
    if (atomic_fetch_sub(&sched.nmspinning, 1) <= 0)
      goro_throw("findrunnable: negative nmspinning");
    if (any_runq_nonempty()) {
      goro_mutex_lock(&sched.lock);
      pp = pidleget();
      goro_mutex_unlock(&sched.lock);
      if (pp) {
        acquirep(mp, pp);
        mp->spinning = true;
        atomic_fetch_add(&sched.nmspinning, 1);
        goto top;
      }
    }
  }

  if (!stopm(mp))
    return NULL;
  goto top;
}

/* The scheduler loop of an M, on g0. */
static void schedule(M *mp) {
  for (;;) {
    if (mp->p == NULL && !stopm(mp))
      return;
    bool inherit;
    G *gp = findrunnable(mp, &inherit);
    if (gp == NULL)
      return;
    if (mp->spinning)
      resetspinning(mp);
    execute(mp, gp, inherit);
  }
}

static void *mstart(void *arg) {
  M *mp = arg;
  tls_m = mp;
  if (goro_stack_altstack_init(mp) != GORO_OK)
    goro_throw("mstart: cannot map a signal stack");
  goro_fiber_init_g0(mp);
  acquirep(mp, mp->nextp);
  mp->nextp = NULL;
  schedule(mp);
  goro_stack_altstack_free(mp);
  tls_m = NULL;
  return NULL;
}

/* }====================================================== */


/*
** {======================================================
** Parking and readying
** =======================================================
*/

static void free_waiter(void *p) {
  goro_mutex_lock(&sched.lock);
  nforeign--;
  goro_mutex_unlock(&sched.lock);
  free(p);
}

static pthread_key_t waiter_key;
static pthread_once_t waiter_once = PTHREAD_ONCE_INIT;

static void waiter_key_init(void) {
  pthread_key_create(&waiter_key, free_waiter);
}

/* The waiter of a foreign thread: a G that is never scheduled, only parked
** on its semaphore.  Freed when the thread exits. */
static G *waiter(void) {
  G *gp = tls_waiter;
  if (gp == NULL) {
    pthread_once(&waiter_once, waiter_key_init);
    gp = calloc(1, sizeof *gp);
    if (!gp)
      goro_throw("out of memory");
    gp->foreign = true;
    gp->thread = pthread_self();
    atomic_store(&gp->status, G_RUNNING);
    goro_mutex_lock(&sched.lock);
    nforeign++;
    goro_mutex_unlock(&sched.lock);
    pthread_setspecific(waiter_key, gp);
    tls_waiter = gp;
  }
  return gp;
}

/* The caller's G, or its thread's waiter if it has one: never creates one
** (a thread that only readies goroutines, like the poller's, must not
** count as a foreign thread that could block). */
G *goro_getg_if_any(void) {
  M *mp = goro_getm();
  return mp ? mp->curg : tls_waiter;
}

void goro_forget_thread(void) {
  G *gp = tls_waiter;
  if (gp == NULL || goro_getm() != NULL)
    return;
  tls_waiter = NULL;
  pthread_setspecific(waiter_key, NULL);
  free_waiter(gp);
}

G *goro_getg(void) {
  M *mp = goro_getm();
  if (mp == NULL)
    return waiter();
  if (mp->curg == NULL)
    goro_throw("goro_getg: called on the scheduler stack");
  return mp->curg;
}

goro_g *goro_self(void) {
  return goro_getg();
}

/*
** A foreign thread parks on its semaphore.  The semaphore is also posted
** by goro_interrupt, so a wake-up is real only if a waker readied us
** (status no longer G_WAITING).  On an interrupt, the park's `cancel`
** (if any) tries to take the wait back from whatever holds it, under
** that thing's own rules: if it wins, nobody will ready us and the park
** ends interrupted; if it loses, the waker's post is on its way.  The
** interrupt flag is cleared only when consumed, so one that comes just
** before the park is not lost (it may end a later park early: callers
** check why they were interrupted).
*/
static bool foreign_park(G *gp, goro_unlockf unlockf, void *lock,
                         const char *reason, goro_cancelf cancel, void *arg) {
  RELAXED_STORE(gp->waitreason, reason);
  RELAXED_STORE(gp->waitsince, 0);
  atomic_store(&gp->status, G_WAITING);
  if (unlockf && !unlockf(gp, lock)) {
    atomic_store(&gp->status, G_RUNNING);
    return false;
  }
  /* Blocked, unless the waker already came (it counted us out). */
  goro_mutex_lock(&sched.lock);
  nforeignblocked++;
  checkdead();
  goro_mutex_unlock(&sched.lock);
  bool interrupted = false;
  for (;;) {
    goro_sema_wait(&gp->sema);
    if (atomic_load(&gp->status) != G_WAITING)
      break;
    if (!atomic_exchange(&gp->interrupt, false) || cancel == NULL)
      continue;
    if (cancel(gp, arg)) {
      goro_mutex_lock(&sched.lock);
      nforeignblocked--;
      goro_mutex_unlock(&sched.lock);
      interrupted = true;
      break;
    }
  }
  atomic_store(&gp->status, G_RUNNING);
  return interrupted;
}

void goro_interrupt(goro_g *g) {
  if (g == NULL || !g->foreign)
    return;
  atomic_store(&g->interrupt, true);
  goro_sema_post(&g->sema);
}

bool goro_gopark_cancelable(goro_unlockf unlockf, void *lock, const char *reason,
                            goro_cancelf cancel, void *arg) {
  if (goro_getm() != NULL) {
    goro_gopark(unlockf, lock, reason);
    return false;
  }
  return foreign_park(waiter(), unlockf, lock, reason, cancel, arg);
}

void goro_gopark(goro_unlockf unlockf, void *lock, const char *reason) {
  M *mp = goro_getm();
  if (mp == NULL) {
    foreign_park(waiter(), unlockf, lock, reason, NULL, NULL);
    return;
  }
  G *gp = mp->curg;
  if (gp == NULL)
    goro_throw("goro_park: called on the scheduler stack");
  if (atomic_load(&gp->status) != G_RUNNING)
    goro_throw("goro_park: goroutine %lld parks inside a syscall",
               (long long)gp->goid);
  gp->waitunlockf = unlockf;
  gp->waitlock = lock;
  RELAXED_STORE(gp->waitreason, reason);
  RELAXED_STORE(gp->waitsince, 0);
  mp->after = GO_PARK;
  goro_fiber_to_g0(mp, gp);
  /* Resumed, perhaps on another M: mp is stale now. */
}

/* Wake a parked foreign thread; it no longer counts as blocked. */
static void foreign_wake(G *gp) {
  goro_mutex_lock(&sched.lock);
  nforeignblocked--;
  goro_mutex_unlock(&sched.lock);
  goro_sema_post(&gp->sema);
}

void goro_goready(G *gp) {
  casgstatus(gp, G_WAITING, G_RUNNABLE);
  if (gp->foreign) {
    foreign_wake(gp);
    return;
  }
  M *mp = goro_getm();
  P *pp = mp ? mp->p : NULL;
  if (gp->token && goro_token_defer(gp, pp))
    return;
  if (pp) {
    runqput(pp, gp, true);
  } else {
    goro_mutex_lock(&sched.lock);
    globrunqput(gp);
    goro_mutex_unlock(&sched.lock);
  }
  wakep();
}

void goro_park(goro_unlockf unlock, void *arg, const char *reason) {
  goro_gopark(unlock, arg, reason);
}

_Noreturn void goro_park_k(goro_unlockf unlock, void *arg, const char *reason,
                           goro_fn k, void *karg) {
  M *mp = goro_getm();
  G *gp = mp ? mp->curg : NULL;
  if (gp == NULL || atomic_load(&gp->status) != G_RUNNING)
    goro_throw("goro_park_k: not called from a running goroutine");
  gp->waitunlockf = unlock;
  gp->waitlock = arg;
  RELAXED_STORE(gp->waitreason, reason);
  RELAXED_STORE(gp->waitsince, 0);
  gp->fn = k;
  gp->arg = karg;
  mp->after = GO_PARK_K;
  goro_fiber_exit_to_g0(mp, gp);
}

void goro_ready(goro_g *g) {
  goro_goready(g);
}

void goro_ready_batch(goro_g *const *gs, int n) {
  if (n <= 0) return;
  G *head = NULL, *tail = NULL;
  int count = 0;
  for (int i = 0; i < n; i++) {
    G *gp = gs[i];
    casgstatus(gp, G_WAITING, G_RUNNABLE);
    if (gp->foreign) {
      foreign_wake(gp);
      continue;
    }
    gp->schedlink = NULL;
    if (tail) tail->schedlink = gp; else head = gp;
    tail = gp;
    count++;
  }
  if (count == 0) return;
  M *mp = goro_getm();
  P *pp = mp ? mp->p : NULL;
  if (pp) {
    runqputbatch(pp, head, count);
  } else {
    goro_mutex_lock(&sched.lock);
    globrunqputbatch(head, tail, count);
    goro_mutex_unlock(&sched.lock);
  }
  /* Like Go's injectglist: an M for each idle P, up to one per G; they
  ** find the Gs in the global queue or steal them from ours. */
  for (int i = 0; i < count && atomic_load(&sched.npidle) > 0; i++)
    startm(NULL, false);
  wakep();
}

/* }====================================================== */


/*
** {======================================================
** The goroutine API
** =======================================================
*/

bool goro_running(void) {
  return atomic_load(&sched.running) && !atomic_load(&sched.stopping);
}

int64_t goro_spawn_ex(goro_fn fn, void *arg, const goro_spawn_opts *opts) {
  if (fn == NULL)
    return GORO_EINVAL;
  if (!goro_running())
    return GORO_ESTATE;
  int cls = goro_stack_class(opts ? opts->stacksize : 0);
  if (cls < 0)
    return cls;
  M *mp = goro_getm();
  P *pp = mp ? mp->p : NULL;
  G *gp = gfget(pp);
  if (gp == NULL)
    return GORO_ENOMEM;
  /* A dead G comes with the stack of its last life: keep it if it is of
  ** the size this one asks for. */
  if (gp->stack.lo && gp->stack.cls != cls)
    goro_stack_free(pp, &gp->stack);
  gp->stackcls = cls;
  gp->fn = fn;
  gp->arg = arg;
  RELAXED_STORE(gp->token, opts ? opts->token : NULL);
  gp->local = opts ? opts->local : NULL;
  if (gp->token) {
    goro_token_ref(gp->token);
    gp->reftoken = gp->token;
  }
  /* sysmon may still read the goid of this G's previous life (it saw it
  ** running a moment ago): an atomic store, read atomically there. */
  RELAXED_STORE(gp->goid, atomic_fetch_add_explicit(&goidgen, 1, memory_order_relaxed) + 1);
  gp->ctx.sp = NULL;
  atomic_store_explicit(&gp->preempt, false, memory_order_relaxed);
  atomic_store(&gp->status, G_RUNNABLE);
  atomic_fetch_add_explicit(&sched.ngoroutines, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&sched.nspawned, 1, memory_order_relaxed);
  int64_t id = gp->goid;
  if (gp->token && goro_token_defer(gp, pp))
    return id;
  if (pp) {
    runqput(pp, gp, true);   /* like Go: the new G runs next */
  } else {
    goro_mutex_lock(&sched.lock);
    globrunqput(gp);
    goro_mutex_unlock(&sched.lock);
  }
  wakep();
  return id;
}

int64_t goro_spawn(goro_fn fn, void *arg) {
  return goro_spawn_ex(fn, arg, NULL);
}

void *goro_getlocal(void) {
  return goro_getg()->local;
}

void goro_setlocal(void *p) {
  goro_getg()->local = p;
}

bool goro_preempt_requested(void) {
  M *mp = goro_getm();
  G *gp = mp ? ACQUIRE_LOAD(mp->curg) : NULL;
  return gp && atomic_load_explicit(&gp->preempt, memory_order_relaxed);
}

int64_t goro_id(void) {
  M *mp = goro_getm();
  return mp && mp->curg ? mp->curg->goid : 0;
}

int64_t goro_numgoroutine(void) {
  return atomic_load(&sched.ngoroutines);
}

int goro_gomaxprocs(void) {
  return sched.nprocs;
}

void goro_yield(void) {
  M *mp = goro_getm();
  if (mp == NULL || mp->curg == NULL)
    return;
  G *gp = mp->curg;
  if (atomic_load(&gp->status) != G_RUNNING)
    return;
  atomic_store_explicit(&gp->preempt, false, memory_order_relaxed);
  mp->after = GO_YIELD;
  goro_fiber_to_g0(mp, gp);
}

void goro_preempt_point(void) {
  M *mp = goro_getm();
  if (mp && mp->curg &&
      atomic_load_explicit(&mp->curg->preempt, memory_order_relaxed))
    goro_yield();
}

int goro_wait(int64_t timeout_ns) {
  /* A goroutine waits for all but itself, and blocks its thread like a
  ** syscall does, so that its P goes on running the others. */
  int64_t target = goro_id() != 0 ? 1 : 0;
  struct timespec deadline;
  if (timeout_ns >= 0) {
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ns / 1000000000;
    deadline.tv_nsec += timeout_ns % 1000000000;
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000;
    }
  }
  int rc = GORO_OK;
  bool foreign = goro_getm() == NULL;
  if (foreign) {
    /* A foreign thread in here can only be woken by goroutines ending:
    ** to checkdead it is blocked (waitall). */
    waiter();
    goro_mutex_lock(&sched.lock);
    nforeignblocked++;
    nforeignwaitall++;
    checkdead();
    goro_mutex_unlock(&sched.lock);
  }
  goro_entersyscall();
  atomic_fetch_add(&nwaiters, 1);
  pthread_mutex_lock(&waitmu);
  while (atomic_load(&sched.ngoroutines) > target) {
    if (timeout_ns < 0) {
      pthread_cond_wait(&waitcv, &waitmu);
    } else if (pthread_cond_timedwait(&waitcv, &waitmu, &deadline) == ETIMEDOUT) {
      if (atomic_load(&sched.ngoroutines) > target)
        rc = GORO_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&waitmu);
  atomic_fetch_sub(&nwaiters, 1);
  goro_exitsyscall();
  if (foreign) {
    goro_mutex_lock(&sched.lock);
    nforeignblocked--;
    nforeignwaitall--;
    goro_mutex_unlock(&sched.lock);
  }
  return rc;
}

void goro_set_preempt_hook(goro_preempt_hook hook, void *ud) {
  __atomic_store_n(&preempt_ud, ud, __ATOMIC_RELAXED);
  __atomic_store_n(&preempt_hook, hook, __ATOMIC_RELEASE);
}

void goro_call_preempt_hook(pthread_t thread, int64_t goid) {
  atomic_fetch_add_explicit(&sched.npreempt, 1, memory_order_relaxed);
  goro_preempt_hook hook = __atomic_load_n(&preempt_hook, __ATOMIC_ACQUIRE);
  if (hook)
    hook(thread, goid, __atomic_load_n(&preempt_ud, __ATOMIC_RELAXED));
}

/* Called by sysmon: ask the G running on pp to yield. */
void goro_preemptone(P *pp) {
  M *mp = ACQUIRE_LOAD(pp->m);
  if (mp == NULL) return;
  G *gp = ACQUIRE_LOAD(mp->curg);
  if (gp == NULL) return;
  atomic_store_explicit(&gp->preempt, true, memory_order_relaxed);
  goro_call_preempt_hook(mp->thread, RELAXED_LOAD(gp->goid));
}

/* n waits on the poller ended (their goroutines readied first).  The
** last one may leave everybody blocked: look, as stopm and a foreign park
** do, since nobody else would. */
void goro_externalwait_add(int64_t n) {
  atomic_fetch_add(&nexternalwait, n);
}

void goro_externalwait_done(int64_t n) {
  if (atomic_fetch_sub(&nexternalwait, n) - n > 0)
    return;
  goro_mutex_lock(&sched.lock);
  checkdead();
  goro_mutex_unlock(&sched.lock);
}

void goro_set_deadlock_handler(goro_deadlock_handler fn, void *ud) {
  goro_mutex_lock(&sched.lock);
  deadlock_handler = fn;
  deadlock_ud = ud;
  goro_mutex_unlock(&sched.lock);
}

/*
** Go's checkdead, with sched.lock held: is anything left that could ever
** make progress?  Not if every M is idle (so no goroutine runs, none is in
** a syscall, and the run queues are empty: an M drops its P only after
** finding them so), nothing outside the scheduler (a timer, the poller)
** will ready a goroutine, and every foreign thread that uses the runtime is
** itself blocked in it, those in goro_wait with goroutines still alive to
** wait for.  Everything that changes these counts does so under sched.lock,
** so the answer is exact, not a guess.
*/
static void checkdead(void) {
  if (deadlock_handler == NULL || atomic_load(&sched.stopping) ||
      !atomic_load(&sched.running))
    return;
  if (sched.nmidle != sched.mcount || nforeign == 0 ||
      nforeignblocked != nforeign ||
      atomic_load(&nexternalwait) > 0 ||
      atomic_load(&sched.runqsize) > 0)
    return;
  if (nforeignwaitall > 0 && atomic_load(&sched.ngoroutines) == 0)
    return;
  for (int i = 0; i < sched.nprocs; i++)
    if (!runqempty(sched.allp[i]))
      return;
  goro_deadlock_handler fn = deadlock_handler;
  void *ud = deadlock_ud;
  goro_mutex_unlock(&sched.lock);
  fn(ud);
  goro_throw("all goroutines are asleep - deadlock!");
}

/* }====================================================== */


/*
** {======================================================
** Life cycle and statistics
** =======================================================
*/

static int env_int(const char *name, int dflt) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0') return dflt;
  char *end;
  long v = strtol(s, &end, 10);
  return (*end == '\0' && v > 0 && v < 1 << 20) ? (int)v : dflt;
}

const char *goro_strerror(int code) {
  switch (code) {
    case GORO_OK: return "ok";
    case GORO_ECLOSED: return "channel closed";
    case GORO_EAGAIN: return "operation would block";
    case GORO_ENOMEM: return "out of memory";
    case GORO_ETIMEDOUT: return "timed out";
    case GORO_EINVAL: return "invalid argument";
    case GORO_ESTATE: return "runtime not running";
    case GORO_EDEADLK: return "wait can never end";
    case GORO_EINTR: return "interrupted";
    default: return "unknown error";
  }
}

int goro_init(int nprocs) {
  goro_config cfg = { .nprocs = nprocs };
  return goro_init_config(&cfg);
}

int goro_init_config(const goro_config *cfg) {
  goro_mutex_lock(&lifecycle);
  if (atomic_load(&sched.running)) {
    goro_mutex_unlock(&lifecycle);
    return GORO_ESTATE;
  }
  memset(&sched, 0, sizeof sched);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int nprocs = cfg && cfg->nprocs > 0 ? cfg->nprocs
             : env_int("GORO_MAXPROCS", ncpu > 0 ? (int)ncpu : 1);
  if (nprocs > 1024) nprocs = 1024;
  sched.nprocs = nprocs;
  sched.maxmcount = cfg && cfg->maxthreads > 0 ? cfg->maxthreads
                  : env_int("GORO_MAXTHREADS", 10000);
  size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  size_t ss = cfg && cfg->stacksize ? cfg->stacksize : 256 * 1024;
  if (ss < 16 * 1024) ss = 16 * 1024;
  sched.stacksize = (ss + ps - 1) / ps * ps;

  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&waitcv, &ca);
  pthread_condattr_destroy(&ca);

  sched.allp = calloc((size_t)nprocs, sizeof(P *));
  if (!sched.allp) goto nomem;
  size_t psize = (sizeof(P) + GORO_CACHELINE - 1) / GORO_CACHELINE * GORO_CACHELINE;
  for (int i = nprocs - 1; i >= 0; i--) {
    P *pp = aligned_alloc(GORO_CACHELINE, psize);
    if (!pp) goto nomem;
    memset(pp, 0, psize);
    pp->id = i;
    sched.allp[i] = pp;
    pidleput(pp);
  }
  goro_stack_init();
  if (goro_stack_signals_install() != GORO_OK) goto nomem;
  atomic_store(&sched.running, true);
  if (goro_sysmon_start() != GORO_OK) {
    atomic_store(&sched.running, false);
    goro_stack_signals_remove();
    goto nomem;
  }
  goro_netpoll_restart();
  goro_mutex_unlock(&lifecycle);
  return GORO_OK;

nomem:
  if (sched.allp)
    for (int i = 0; i < nprocs; i++) free(sched.allp[i]);
  free(sched.allp);
  sched.allp = NULL;
  goro_mutex_unlock(&lifecycle);
  return GORO_ENOMEM;
}

void goro_shutdown(void) {
  goro_mutex_lock(&lifecycle);
  if (!atomic_load(&sched.running)) {
    goro_mutex_unlock(&lifecycle);
    return;
  }
  if (goro_getm() != NULL)
    goro_throw("goro_shutdown: called from a goroutine");
  atomic_store(&sched.stopping, true);

  /* Running Gs: ask them to stop at their next scheduling point. */
  for (int i = 0; i < sched.nprocs; i++)
    goro_preemptone(sched.allp[i]);
  goro_sysmon_stop();

  /* Idle Ms: wake them to exit.  Others see `stopping` in findrunnable or
  ** stopm (both check it under sched.lock, which orders them with this). */
  goro_mutex_lock(&sched.lock);
  for (M *mp = sched.midle; mp; mp = mp->schedlink) {
    mp->exiting = true;
    goro_note_wakeup(&mp->park);
  }
  sched.midle = NULL;
  sched.nmidle = 0;
  M *allm = sched.allm;
  goro_mutex_unlock(&sched.lock);
  for (M *mp = allm; mp; mp = mp->alllink)
    pthread_join(mp->thread, NULL);
  while (allm) {
    M *next = allm->alllink;
    free(allm);
    allm = next;
  }

  /* The poller last: until every M is gone a goroutine may still close an
  ** fd or start a timer, and a request made after the poller's last look
  ** would be lost. */
  goro_netpoll_stop();

  /* Every thread is gone: free every G, stack and P. */
  goro_token_shutdown();
  for (G *gp = sched.allgs; gp; ) {
    G *next = gp->alllink;
    if (gp->reftoken && goro_token_closed(gp->reftoken) &&
        atomic_load(&gp->status) != G_DEAD)
      goro_token_discard(gp->reftoken, gp);
    /* A G dropped while parked (or readied but not yet run) still holds
    ** the sudogs of its channel operation. */
    for (sudog *s = gp->waiting, *snext; s; s = snext) {
      snext = s->waitlink;
      goro_sudog_drop(s);
    }
    goro_stack_forget(&gp->stack);
    goro_fiber_destroy(gp);
    free(gp);
    gp = next;
  }
  for (int i = 0; i < sched.nprocs; i++) {
    P *pp = sched.allp[i];
    goro_stack_flush(pp);
    while (pp->sudogcache) {
      sudog *s = pp->sudogcache;
      pp->sudogcache = s->waitlink;
      free(s);
    }
    free(pp);
  }
  free(sched.allp);
  sched.allp = NULL;
  goro_token_shutdown_closed();
  goro_stack_release_all();
  goro_stack_signals_remove();
  pthread_cond_destroy(&waitcv);
  atomic_store(&sched.running, false);
  goro_mutex_unlock(&lifecycle);
}

void goro_stats(goro_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!atomic_load(&sched.running))
    return;
  out->goroutines = atomic_load(&sched.ngoroutines);
  out->procs = sched.nprocs;
  out->idleprocs = atomic_load(&sched.npidle);
  out->spinning = atomic_load(&sched.nmspinning);
  out->insyscall = atomic_load(&sched.nmsyscall);
  out->runqueue = atomic_load(&sched.runqsize);
  goro_mutex_lock(&sched.lock);
  out->threads = sched.mcount;
  out->idlethreads = sched.nmidle;
  goro_mutex_unlock(&sched.lock);
  for (int i = 0; i < sched.nprocs; i++) {
    P *pp = sched.allp[i];
    out->switches += atomic_load_explicit(&pp->nswitch, memory_order_relaxed);
    out->steals += atomic_load_explicit(&pp->nsteal, memory_order_relaxed);
  }
  out->handoffs = atomic_load(&sched.nhandoff);
  out->preemptions = atomic_load(&sched.npreempt);
  out->spawned = atomic_load(&sched.nspawned);
  out->stacks = atomic_load(&goro_stacks_inuse);
  for (int i = 0; i < sched.nprocs; i++)
    out->stacks += atomic_load_explicit(&sched.allp[i]->nstackheld, memory_order_relaxed);
}

/* }====================================================== */


/*
** {======================================================
** The goroutine list (the ground of a goroutine dump)
** =======================================================
*/

/*
** A snapshot of one G, read without stopping it: every field it reads is
** written atomically (status; goid, waitreason and waitsince with
** RELAXED_*), so the answer may be a moment old but is never torn.  A G
** readied and parked again between the reads shows its newer reason, which
** is as true.  G structures are never freed while the runtime runs (dead
** ones wait on free lists), so walking allgs under allglock is safe.
**
** The time of a wait is stamped lazily, as Go's GC does for its
** traceback's "N minutes": a park only clears waitsince (a store, where a
** clock read on every park would cost the hot path), and the first
** enumeration that sees the G waiting writes the time.  So waitsince is
** the moment the wait was first observed: a lower bound of its length.
*/
static bool ginfo_of(G *gp, goro_ginfo *out) {
  uint32_t status = atomic_load_explicit(&gp->status, memory_order_acquire);
  switch (status) {
    case G_RUNNABLE: out->state = GORO_GSTATE_RUNNABLE; break;
    case G_RUNNING: out->state = GORO_GSTATE_RUNNING; break;
    case G_SYSCALL: out->state = GORO_GSTATE_SYSCALL; break;
    case G_WAITING: out->state = GORO_GSTATE_WAITING; break;
    default: return false;   /* idle or dead: not a live goroutine */
  }
  out->id = RELAXED_LOAD(gp->goid);
  out->waitreason = NULL;
  out->waitsince = 0;
  if (out->state == GORO_GSTATE_WAITING) {
    out->waitreason = RELAXED_LOAD(gp->waitreason);
    int64_t since = RELAXED_LOAD(gp->waitsince);
    if (since == 0) {
      int64_t now = goro_nanotime();
      /* Lost to another enumeration: take its stamp. */
      if (!__atomic_compare_exchange_n(&gp->waitsince, &since, now, false,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        now = since;
      since = now;
    }
    out->waitsince = since;
  }
  return true;
}

int goro_goroutines(goro_ginfo *out, int max) {
  if (!atomic_load(&sched.running))
    return 0;
  int n = 0;
  goro_mutex_lock(&sched.allglock);
  for (G *gp = sched.allgs; gp; gp = gp->alllink) {
    goro_ginfo info;
    if (!ginfo_of(gp, &info))
      continue;
    if (n < max)
      out[n] = info;
    n++;
  }
  goro_mutex_unlock(&sched.allglock);
  return n;
}

bool goro_goroutine(int64_t id, goro_ginfo *out) {
  if (id <= 0 || !atomic_load(&sched.running))
    return false;
  bool found = false;
  goro_mutex_lock(&sched.allglock);
  for (G *gp = sched.allgs; gp && !found; gp = gp->alllink)
    if (RELAXED_LOAD(gp->goid) == id)
      found = ginfo_of(gp, out) && out->id == id;
  goro_mutex_unlock(&sched.allglock);
  return found;
}

bool goro_g_info(goro_g *g, goro_ginfo *out) {
  return g != NULL && ginfo_of(g, out);
}

const char *goro_gstate_name(int state) {
  switch (state) {
    case GORO_GSTATE_RUNNABLE: return "runnable";
    case GORO_GSTATE_RUNNING: return "running";
    case GORO_GSTATE_SYSCALL: return "syscall";
    case GORO_GSTATE_WAITING: return "waiting";
    default: return "?";
  }
}

/* }====================================================== */
