/*
** runtime.h — goro's internal structures: G, M, P, the scheduler, sudogs.
**
** The names follow Go's runtime (runtime2.go, proc.go) so that its
** documentation reads across:
**   G  a goroutine: a C task here (Lua goroutines later).  Also, with
**      `foreign` set, the waiter of a thread that is not an M.
**   M  an OS thread.  Runs the scheduler on its own (pthread) stack, "g0",
**      and goroutines on theirs.
**   P  a processor: the right to run goroutines, with a local run queue.
**      There are exactly gomaxprocs of them.
*/
#ifndef GORO_RUNTIME_H
#define GORO_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>

#include "goro.h"
#include "ctx.h"
#include "lock.h"

typedef struct goro_g G;
typedef struct goro_m M;
typedef struct goro_p P;
typedef struct sudog sudog;

#define GORO_CACHELINE 64

/* Go's G states (runtime2.go).  Transitions happen by CAS on G.status. */
enum {
  G_IDLE,       /* just allocated, not yet initialised */
  G_RUNNABLE,   /* on a run queue, not running */
  G_RUNNING,    /* running on an M that holds a P */
  G_SYSCALL,    /* running on an M inside entersyscall; no P needed */
  G_WAITING,    /* parked; goro_ready makes it runnable */
  G_DEAD        /* finished; on a free list */
};

/* P states. */
enum {
  P_IDLE,       /* on the idle list, no M */
  P_RUNNING,    /* owned by an M running Gs or the scheduler */
  P_SYSCALL,    /* its M is in a syscall; sysmon may retake it */
  P_DEAD        /* runtime shut down */
};

/* What a G asked the scheduler to do when it switched to g0. */
enum {
  GO_NONE,
  GO_PARK,          /* call waitunlockf, then leave it waiting */
  GO_PARK_K,        /* the same, and drop its stack: it restarts at fn */
  GO_YIELD,         /* requeue it on the global queue (Gosched) */
  GO_EXIT,          /* it finished: free it */
  GO_EXITSYSCALL    /* it left a syscall and found no P */
};

/* A native stack: usable bytes [lo, lo + size), one guard page below lo. */
typedef struct goro_stack {
  char *lo;
  size_t size;
  int cls;                    /* its size class (stack.c) */
  unsigned vgid;              /* valgrind's id for it, when run under it */
} goro_stack;

struct goro_g {
  goro_ctx ctx;               /* saved stack pointer while switched out */
  goro_stack stack;           /* lo == NULL until it first runs */
  int stackcls;               /* the class of stack it runs on */
  _Atomic uint32_t status;
  _Atomic bool preempt;       /* sysmon asks it to yield */
  bool foreign;               /* the waiter of a non-M thread */
  int64_t goid;
  goro_fn fn;
  void *arg;
  G *schedlink;               /* global run queue, free lists, batches */
  G *alllink;                 /* every G ever made (allgs) */
  M *m;                       /* M running it, NULL when not running */
  goro_token *token;          /* runs only while owning this (token.c) */
  goro_token *reftoken;       /* spawned bound to it: holds a reference */
  void *local;                /* goro_getlocal */

  /* goro_park: run by g0 after the switch */
  goro_unlockf waitunlockf;
  void *waitlock;
  const char *waitreason;     /* Go's words; read by goro_goroutines, so
                              ** written and read with RELAXED_* */
  int64_t waitsince;          /* goro_nanotime when first seen waiting by
                              ** goro_goroutines; 0 at each park (RELAXED_*) */

  /* foreign waiter: parks on this instead of a run queue */
  goro_sema sema;
  pthread_t thread;
  _Atomic bool interrupt;     /* goro_interrupt: stop waiting if you can */

  /* channels and select (chan.c, select.c) */
  void *param;                /* set by the waker before goro_ready */
  _Atomic uint32_t selectdone;/* a select case already won */
  sudog *waiting;             /* this G's sudogs, in lock order */

  /* sanitizers: the fiber of this G, and ASan's fake-stack slot */
  void *tsan_fiber;
  _Atomic bool tsan_unlocking; /* see goro_fiber_unlock_as */
  void *asan_fake_stack;
};

/* A G waiting on a channel (Go's sudog): one per channel per waiter. */
struct sudog {
  G *g;
  sudog *next, *prev;         /* the channel's wait queue */
  void *elem;                 /* value to send, or where to receive */
  sudog *waitlink;            /* G.waiting, or the P's free cache */
  goro_chan *c;
  bool isselect;
  bool success;               /* woken by a value (true) or by close (false) */
  int caseidx;                /* select: index of its case */
};

enum { SUDOG_CACHE = 128 };

#define RUNQ_SIZE 256
enum { GFREE_LOCAL_MAX = 64, STACK_CACHE = 16, GORO_STACK_CLASSES = 4 };

struct goro_p {
  /* Written by the owner, read by thieves: keep apart from the rest. */
  _Atomic uint32_t runqhead;  /* advanced by owner and thieves (CAS) */
  _Atomic uint32_t runqtail;  /* advanced by the owner only */
  _Atomic(G *) runnext;       /* run next, before the ring (ping-pong) */
  _Atomic(G *) runq[RUNQ_SIZE];

  _Alignas(GORO_CACHELINE) int id;
  _Atomic uint32_t status;
  _Atomic uint32_t schedtick; /* +1 per schedule(); sysmon watches it */
  _Atomic uint32_t syscalltick;/* +1 per syscall; sysmon watches it */
  M *m;                       /* owner, when not idle */
  P *link;                    /* idle list */
  int runnextstreak;          /* consecutive runs taken from runnext */

  G *gfree;                   /* dead Gs for reuse */
  int ngfree;
  goro_stack stackcache[GORO_STACK_CLASSES][STACK_CACHE];   /* per class */
  int nstack[GORO_STACK_CLASSES];
  sudog *sudogcache;          /* free sudogs (linked by waitlink) */
  int nsudog;

  /* Counters: written by the owner only, read racily by goro_stats. */
  _Atomic uint64_t nswitch;
  _Atomic uint64_t nsteal;
  _Atomic int64_t nstackheld;   /* stack.c: allocated here minus freed here */

  /* sysmon's last observation */
  uint32_t sysmontick, sysmonsyscalltick;
  int64_t sysmonwhen, sysmonsyscallwhen;
};

struct goro_m {
  goro_ctx g0ctx;             /* the scheduler's context on this thread */
  G *curg;                    /* G running on this M, or NULL */
  P *p;                       /* P held, NULL when idle or in a syscall */
  P *nextp;                   /* P handed to it by startm */
  P *oldp;                    /* P left behind at entersyscall */
  int after;                  /* GO_* request of curg at its last switch */
  bool spinning;              /* looking for work to steal */
  bool exiting;               /* shutdown: leave the scheduler loop */
  int64_t id;
  goro_note park;             /* idle Ms sleep here */
  M *schedlink;               /* idle list */
  M *alllink;                 /* every M */
  pthread_t thread;
  uint64_t fastrand;          /* wyrand state */
  stack_t altstack;           /* signal stack for the overflow handler */
  void *g0_tsan_fiber;
  const void *g0_asan_bottom;
  size_t g0_asan_size;
};

/* The scheduler's global state (Go's schedt). */
typedef struct sched_t {
  goro_mutex lock;            /* guards everything below unless atomic */

  M *midle;                   /* idle Ms */
  int nmidle;
  int mcount;                 /* Ms created and not exited */
  int maxmcount;
  int64_t mnext;              /* next M id */
  M *allm;

  P *pidle;                   /* idle Ps */
  _Atomic int npidle;
  _Atomic int nmspinning;
  _Atomic int nmsyscall;      /* Ms inside entersyscall */

  G *runqhead, *runqtail;     /* global run queue */
  _Atomic int64_t runqsize;

  goro_mutex gflock;          /* global free Gs */
  G *gfree;
  int ngfree;

  goro_mutex allglock;
  G *allgs;

  P **allp;
  int nprocs;
  size_t stacksize;

  _Atomic int64_t ngoroutines;
  _Atomic uint64_t nspawned;
  _Atomic uint64_t nhandoff;
  _Atomic uint64_t npreempt;


  _Atomic bool running;
  _Atomic bool stopping;
} sched_t;

extern sched_t goro_sched;

/* The calling thread's M, NULL off the runtime's threads.  Never inlined,
** and re-read after every switch: a G may resume on another thread. */
M *goro_getm(void);
/* The calling G, or the thread's foreign waiter (created on first use). */
G *goro_getg(void);
/* The same, or NULL where goro_getg would create a waiter or throw. */
G *goro_getg_if_any(void);

/* Park/ready as used inside the runtime (goro_park/goro_ready's bodies). */
void goro_gopark(goro_unlockf unlockf, void *lock, const char *reason);
void goro_goready(G *gp);

/* token.c, for the scheduler: on g0, before running gp (false: gp is now
** queued on its token instead), and after it stopped running. */
enum { TOKEN_OWNED, TOKEN_QUEUED, TOKEN_CLOSED };
int goro_token_claim(G *gp);         /* TOKEN_*: run it, it waits, discard it */
void goro_token_ref(goro_token *t);  /* a G spawned bound to t */
void goro_token_unref(goro_token *t);
bool goro_token_closed(goro_token *t);
void goro_token_discard(goro_token *t, G *gp);  /* tell the embedder */
void goro_token_shutdown_closed(void);
/* sched.c: take the Gs bound to t off the channels they wait on, ready them */
void goro_cancel_chan_waits(goro_token *t);
/* chan.c: take gp off every channel queue it waits on; false if a waker
** has it already (and will ready it) */
bool goro_chan_cancel(G *gp);
bool goro_chan_cancel_park(G *gp, void *unused);   /* as a goro_cancelf */
void goro_chan_ref(goro_chan *c);        /* a sudog's reference */
void goro_sudog_drop(sudog *s);          /* shutdown: unqueue, unref, free */
void goro_chan_unqueue_all(G *gp);       /* discardg: off every queue */

/* A park that goro_interrupt may end, on a foreign thread: `cancel` takes
** the wait back (true) or finds that a waker has it (false).  Returns true
** when interrupted: then nobody readied the caller.  On an M, a plain
** park (false). */
typedef bool (*goro_cancelf)(G *gp, void *arg);
bool goro_gopark_cancelable(goro_unlockf unlockf, void *lock, const char *reason,
                            goro_cancelf cancel, void *arg);
void goro_token_switched_out(G *gp, P *pp);
bool goro_token_defer(G *gp, P *pp);  /* made runnable by its token's owner */
int goro_token_sysmon(int64_t now);   /* preempt foreign owners */
bool goro_token_waiting(void);        /* any G queued on any token */
void goro_token_shutdown(void);       /* drop the Gs of every queue */

/* sched.c: tell the embedder's preemption hook (sysmon). */
void goro_call_preempt_hook(pthread_t thread, int64_t goid);

/* Random numbers: per M, or per foreign thread. */
uint32_t goro_fastrand(void);
uint32_t goro_fastrandn(uint32_t n);   /* uniform in [0, n) */

/* Fatal runtime error: message to stderr, then abort(). */
_Noreturn void goro_throw(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* stack.c */
void goro_stack_init(void);            /* probe the kernel (goro_init) */
int goro_stack_class(size_t size);     /* class for >= size bytes (0: default) */
int goro_stack_alloc(P *pp, goro_stack *s, int cls);   /* pp may be NULL */
void goro_stack_free(P *pp, goro_stack *s);
void goro_stack_flush(P *pp);          /* P's cache to the pool */
void goro_stack_forget(goro_stack *s); /* shutdown: drop without pooling */
void goro_stack_release_all(void);     /* shutdown: unmap every stack */
int goro_stack_scavenge(void);         /* sysmon: release surplus pages */
extern _Atomic int64_t goro_stacks_inuse;
int goro_stack_signals_install(void);  /* SIGSEGV/SIGBUS overflow report */
void goro_stack_signals_remove(void);
int goro_stack_altstack_init(M *mp);   /* per-M alternate signal stack */
void goro_stack_altstack_free(M *mp);

/* fiber.c: the context switch with sanitizer annotations. */
void goro_fiber_create(G *gp);
void goro_fiber_destroy(G *gp);
void goro_fiber_init_g0(M *mp);
void goro_fiber_to_g(M *mp, G *gp);    /* g0 -> gp; returns when gp switches back */
void goro_fiber_to_g0(M *mp, G *gp);   /* gp -> g0; returns when gp resumes */
_Noreturn void goro_fiber_exit_to_g0(M *mp, G *gp); /* gp is dead */
void goro_fiber_started(G *gp);        /* first thing a new G runs */
void goro_fiber_clean_stack(goro_stack *s); /* before a new G uses s */
bool goro_fiber_unlock_as(M *mp, G *gp, void *fiber, goro_unlockf f, void *lock);
void *goro_fiber_renew(G *gp);         /* drop the TSan fiber; returns it */
void goro_fiber_release(void *fiber);  /* destroy an old one */

/* sched.c: waits that something outside the scheduler will end (timers,
** I/O); while there are any, nobody is deadlocked.  The poller counts
** them in, and out once it has readied their goroutines. */
void goro_externalwait_add(int64_t n);
void goro_externalwait_done(int64_t n);

/* netpoll/netpoll.c: stop the poller's thread (goro_shutdown). */
void goro_netpoll_stop(void);
/* netpoll/netpoll.c: timers pending from before a stop go on (goro_init). */
void goro_netpoll_restart(void);

/* sysmon.c */
int goro_sysmon_start(void);
void goro_sysmon_stop(void);
void goro_sysmon_wake(void);

/* chan.c: sudog cache */
sudog *goro_acquire_sudog(void);
void goro_release_sudog(sudog *s);

#endif
