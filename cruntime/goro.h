/*
** goro.h — the public C API of goro's runtime.
**
** goro is Go's GMP scheduler in C: goroutines (here: C tasks, and later Lua
** goroutines) run on M OS threads, each holding one of GOMAXPROCS Ps.
** Everything here is safe to call from any thread: from a goroutine, from one
** of the runtime's own threads, or from a "foreign" thread that the runtime
** did not create (the program's main thread, any pthread).  A foreign thread
** that blocks (on a channel, on goro_park) waits on a semaphore of its own
** while the scheduler keeps running goroutines.
*/
#ifndef GORO_H
#define GORO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

struct addrinfo;

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes.  Success is 0; every failure is negative. */
#define GORO_OK          0
#define GORO_ECLOSED    (-1)   /* send on closed channel, close of closed channel */
#define GORO_EAGAIN     (-2)   /* a non-blocking operation would block */
#define GORO_ENOMEM     (-3)   /* out of memory (or of mappings, for stacks) */
#define GORO_ETIMEDOUT  (-4)   /* a bounded wait ran out */
#define GORO_EINVAL     (-5)   /* bad argument */
#define GORO_ESTATE     (-6)   /* runtime not initialised, or shutting down */
#define GORO_EDEADLK    (-7)   /* the wait could never end */
#define GORO_EINTR      (-8)   /* a foreign thread's wait was interrupted */

const char *goro_strerror(int code);


/*
** {======================================================
** Runtime life cycle
** =======================================================
*/

/* Tunables read once by goro_init.  Zero fields take the default. */
typedef struct goro_config {
  int nprocs;            /* Ps; default env GORO_MAXPROCS, else online CPUs */
  int maxthreads;        /* cap on Ms; default env GORO_MAXTHREADS, else 10000 */
  size_t stacksize;      /* usable bytes of a C task's stack; default 256 KiB */
} goro_config;

/* Start the runtime with `nprocs` Ps (0: default).  Returns GORO_OK, or
** GORO_ESTATE when it is already running. */
int goro_init(int nprocs);
int goro_init_config(const goro_config *cfg);
bool goro_running(void);

/*
** Stop the runtime: every M, sysmon, the poller, and every stack.
** Goroutines that are running are asked to stop (their preemption flag is
** set) and shutdown waits for each to reach a scheduling point (a park, a
** yield, a preemption point, or its end); runnable and parked goroutines
** are discarded without running again.  goro_fds and goro_timers outlive
** it: their owners close and free them, or use them after the next
** goro_init.  Must be called from a foreign thread.
*/
void goro_shutdown(void);

/* Number of Ps. */
int goro_gomaxprocs(void);

/* }====================================================== */


/*
** {======================================================
** Goroutines
** =======================================================
*/

typedef void (*goro_fn)(void *arg);

/* Start fn(arg) as a new C task.  Returns its id (> 0; ids are never
** reused), or a negative GORO_E* code. */
int64_t goro_spawn(goro_fn fn, void *arg);

/* Options of goro_spawn_ex.  Zero fields take the default. */
typedef struct goro_spawn_opts {
  struct goro_token *token;  /* the goroutine runs only while it owns this
                             ** token (see Tokens below) */
  void *local;               /* initial value of its goro_getlocal() slot */
  size_t stacksize;          /* at least this many usable bytes of native
                             ** stack (0, or no more than goro_config's:
                             ** the default).  Only touched pages cost
                             ** memory.  Up to 3 sizes other than the
                             ** default per run; GORO_EINVAL past that if
                             ** none made so far is big enough. */
} goro_spawn_opts;

int64_t goro_spawn_ex(goro_fn fn, void *arg, const goro_spawn_opts *opts);

/* One pointer of goroutine-local storage for embedders: the Lua binding
** keeps its per-goroutine state here.  On a foreign thread, the slot of
** that thread. */
void *goro_getlocal(void);
void goro_setlocal(void *p);

/* A foreign thread that is done with the runtime (it holds no token and
** waits on nothing) stops counting as one that could wake goroutines, so
** that the deadlock check can see the others without it.  Using the
** runtime again counts it in again.  Its local slot is forgotten. */
void goro_forget_thread(void);

/* True when sysmon has asked the calling goroutine to yield.  Safe in a
** signal handler. */
bool goro_preempt_requested(void);

/* Id of the calling goroutine; 0 on a thread that is not running one. */
int64_t goro_id(void);

/* Goroutines alive: spawned and not yet finished. */
int64_t goro_numgoroutine(void);

/* Let other goroutines run (Go's runtime.Gosched).  No-op off a goroutine. */
void goro_yield(void);

/* Yield only if sysmon has asked the calling goroutine to (it ran > 10 ms).
** Cheap: one load.  Long-running C loops should call it now and then. */
void goro_preempt_point(void);

/*
** Block until no goroutine is left (from a goroutine: none but the caller).
** `timeout_ns` < 0 waits forever.  Returns GORO_OK or GORO_ETIMEDOUT.
*/
int goro_wait(int64_t timeout_ns);

/*
** Bracket a call that may block the thread (read(2), a lock, a long
** computation).  While inside, the goroutine's P can be handed to another M
** by sysmon so that other goroutines keep running.  Off a goroutine both are
** no-ops.
*/
void goro_entersyscall(void);
void goro_exitsyscall(void);

/* }====================================================== */


/*
** {======================================================
** Parking: the primitive under channels, timers and the poller
** =======================================================
*/

/* A goroutine, or the waiter of a foreign thread.  Opaque. */
typedef struct goro_g goro_g;

/* The caller's goroutine; on a foreign thread, that thread's waiter. */
goro_g *goro_self(void);

/*
** Make the foreign thread whose goro_self() is `g` stop waiting, if it is
** blocked in a channel operation, a select, a sleep or an fd wait: that
** call returns GORO_EINTR, having done nothing.  If the operation was
** completing already it completes, and the interrupt may instead end the
** thread's next such wait.  Async-signal-safe (for a SIGINT handler).
** Goroutines are not interrupted.
*/
void goro_interrupt(goro_g *g);

/*
** Called once the parking goroutine's state is saved, on the scheduler's
** stack (or, for a foreign thread, on its own).  Typically releases the lock
** that guards the structure in which `g` was published.  Returning false
** cancels the park: the goroutine continues at once.
*/
typedef bool (*goro_unlockf)(goro_g *g, void *arg);

/*
** Park the caller until goro_ready(goro_self()) is called.  `unlock` may be
** NULL.  `reason` is a static string shown in debug output ("chan receive").
*/
void goro_park(goro_unlockf unlock, void *arg, const char *reason);

/*
** Make a parked `g` runnable.  Callable from any thread.  From a goroutine
** the readied one runs next on the caller's P (Go's runnext).  Readying a
** goroutine that is not parked is a fatal error.
*/
void goro_ready(goro_g *g);

/*
** Park without keeping a stack.  Like goro_park, but the caller's stack is
** given back to the scheduler and this call never returns: once readied,
** the goroutine starts over on a fresh stack at k(karg), and when k returns
** the goroutine ends.  Everything the goroutine needs after the park, and
** `arg`, must live outside its stack.  Only from a goroutine.
*/
_Noreturn void goro_park_k(goro_unlockf unlock, void *arg, const char *reason,
                           goro_fn k, void *karg);

/* Make `n` parked goroutines runnable at once, waking idle Ps for them (Go's
** injectglist).  For pollers and timers that ready many in one go. */
void goro_ready_batch(goro_g *const *gs, int n);

/* }====================================================== */


/*
** {======================================================
** Channels (Go's chan) and select
** =======================================================
*/

typedef struct goro_chan goro_chan;

/* A channel of elements of `elemsize` bytes (0 allowed) with room for `cap`
** (0: unbuffered).  NULL when out of memory. */
goro_chan *goro_chan_new(size_t elemsize, size_t cap);

/* What goroutines blocked on c wait for, in a goroutine dump
** (goro_goroutines): a static string such as "semacquire" for a channel
** that implements a lock; NULL (the default) for "chan send" and
** "chan receive".  Set it before the channel is shared. */
void goro_chan_setwaitreason(goro_chan *c, const char *reason);
const char *goro_chan_waitreason(goro_chan *c);   /* NULL: the default */

/* Let go of a channel: the creator must not use it afterwards.  Its
** memory goes once nothing refers to it any more: a goroutine or thread
** still waiting on it keeps it (as Go's collector would), and may be
** woken by a close... from nobody, so such a waiter waits for ever unless
** it is in a select that another case ends. */
void goro_chan_free(goro_chan *c);

/* Block until `elem` is received or buffered.  GORO_OK, or GORO_ECLOSED
** when the channel is (or becomes, while waiting) closed. */
int goro_chan_send(goro_chan *c, const void *elem);

/* Block until a value arrives; copy it into `elem` (may be NULL).  `*ok`
** (may be NULL) is false when the channel was closed and drained, and then
** `elem` is zeroed.  Returns GORO_OK. */
int goro_chan_recv(goro_chan *c, void *elem, bool *ok);

/* Non-blocking forms: GORO_EAGAIN when the operation would block. */
int goro_chan_trysend(goro_chan *c, const void *elem);
int goro_chan_tryrecv(goro_chan *c, void *elem, bool *ok);

/* GORO_OK, or GORO_ECLOSED for a second close. */
int goro_chan_close(goro_chan *c);

size_t goro_chan_len(goro_chan *c);
/* True while goroutines (or threads) wait to send or receive on c. */
bool goro_chan_waiting(goro_chan *c);
size_t goro_chan_cap(goro_chan *c);

enum { GORO_SELECT_RECV = 1, GORO_SELECT_SEND = 2 };

typedef struct goro_select_case {
  goro_chan *c;       /* NULL: a disabled case (Go's nil channel) */
  int dir;            /* GORO_SELECT_RECV or GORO_SELECT_SEND */
  void *elem;         /* value to send, or where to receive (may be NULL) */
  bool ok;            /* out, receive cases: false when closed and drained */
} goro_select_case;

/*
** Wait until one of the `n` cases can proceed and perform it; among ready
** cases one is chosen uniformly at random.  `*chosen` is set to its index.
** With `block` false, returns GORO_EAGAIN (and *chosen = -1) when none is
** ready (Go's default case).  Returns GORO_ECLOSED when the chosen case is a
** send on a closed channel (Go panics there), GORO_EINVAL for bad cases,
** GORO_EDEADLK for a blocking select with no enabled case from a foreign
** thread (Go's select{} blocks forever).
*/
int goro_select(goro_select_case *cases, int n, bool block, int *chosen);

/* A hint without locks: could one of the cases proceed now?  False means
** that, a moment ago, none could (each channel was seen not ready at some
** instant); a caller about to block can skip a non-blocking attempt. */
bool goro_select_maybe_ready(const goro_select_case *cases, int n);

/*
** Continuation forms, for goroutines that park with goro_park_k.  Each
** either completes at once and returns its result as the blocking form
** does, or parks the goroutine without its stack and never returns; the
** goroutine then restarts at k(karg), which calls goro_chanop_finish(op)
** for the result.  `op`, the elements, the `ok` flag and the cases must
** outlive the park.  Only from a goroutine.
*/
typedef struct goro_chanop {
  int kind;                    /* private, like every field */
  goro_select_case *cases;
  int ncases, norder;
  bool *ok;
  uint16_t *order;             /* select: poll order, then lock order */
  uint16_t inorder[16];
} goro_chanop;

int goro_chan_send_k(goro_chan *c, const void *elem, goro_chanop *op,
                     goro_fn k, void *karg);
int goro_chan_recv_k(goro_chan *c, void *elem, bool *ok, goro_chanop *op,
                     goro_fn k, void *karg);
int goro_select_k(goro_select_case *cases, int n, bool block, int *chosen,
                  goro_chanop *op, goro_fn k, void *karg);
/* After the restart: the operation's result, as the blocking form gives
** it (for a select, *chosen is set too). */
int goro_chanop_finish(goro_chanop *op, int *chosen);

/* }====================================================== */


/*
** {======================================================
** Time and I/O: the poller (netpoll/, on libuv)
** =======================================================
*/

/* Monotonic clock, nanoseconds. */
int64_t goro_now(void);

/*
** A wait on the poller: a sleep, or a file descriptor becoming ready.  The
** fields are private.  Blocking forms keep it on the caller's stack; the
** continuation forms (for goro_park_k) need it to outlive the park.
*/
typedef struct goro_pollop {
  int kind;
  int result;
  int events;
  int64_t when;                /* deadline, goro_now() clock; 0: none */
  struct goro_fd *fd;
  goro_g *g;
  struct goro_pollop *next;    /* the poller's request queue */
  void *timer;                 /* the poller's timer handle */
  struct goro_pollop *target;  /* a cancel request's wait */
  int cancel;                  /* the poller's (atomic): a foreign waiter's interrupt */
} goro_pollop;

/* Park the caller (a goroutine, or a foreign thread) for at least `ns`. */
int goro_sleep(int64_t ns);
int goro_sleep_k(int64_t ns, goro_pollop *op, goro_fn k, void *karg);
/* After the restart of a _k form: its result (GORO_OK, GORO_ETIMEDOUT,
** GORO_ECLOSED). */
int goro_pollop_finish(goro_pollop *op);

/*
** A non-blocking file descriptor watched by the poller.  Try the syscall
** first; on EAGAIN, goro_fd_wait parks the caller until the fd is ready
** (GORO_OK), the deadline passes (GORO_ETIMEDOUT; deadline 0: none), or
** goro_fd_close is called (GORO_ECLOSED).  One reader and one writer may
** wait at a time, as in Go.
*/
enum { GORO_READ = 1, GORO_WRITE = 2 };
typedef struct goro_fd goro_fd;
goro_fd *goro_fd_open(int fd);             /* sets O_NONBLOCK; NULL: ENOMEM */
int goro_fd_fileno(goro_fd *f);
int goro_fd_wait(goro_fd *f, int events, int64_t deadline);
/* goro_fd_wait in two steps: prepare takes the wait's reference on f (false
** if f is closed already), so that f stays valid until the wait, which may
** start later, ends: for a caller that must let go of what keeps f alive
** in between (the Lua binding's main thread releases its token). */
bool goro_fd_wait_prepare(goro_fd *f, int events, int64_t deadline, goro_pollop *op);
int goro_fd_wait_prepared(goro_pollop *op);
int goro_fd_wait_k(goro_fd *f, int events, int64_t deadline, goro_pollop *op,
                   goro_fn k, void *karg);
/* Wake its waiters with GORO_ECLOSED, close the fd, free f. */
void goro_fd_close(goro_fd *f);

/*
** Timers that act on the poller's thread: after `ns`, and then every
** `period` ns if period > 0, fn(ud, now) is called there.  fn must not
** block (a non-blocking send on a channel is the usual thing: Go's
** time.After, Timer and Ticker).  A pending timer counts as a possible
** waker for deadlock detection.
*/
typedef struct goro_timer goro_timer;
typedef void (*goro_timer_fn)(void *ud, int64_t now);
goro_timer *goro_timer_start(int64_t ns, int64_t period, goro_timer_fn fn, void *ud);
/* True if it stopped a pending timer.  A stopped timer may be reset. */
bool goro_timer_stop(goro_timer *t);
/* Stop it and start it again: fires after ns.  True if it was pending. */
bool goro_timer_reset(goro_timer *t, int64_t ns);
/* Stop it and free it (fn is not called after this returns). */
void goro_timer_free(goro_timer *t);

/* getaddrinfo on the poller's thread pool: the caller parks, its thread
** and P go on with other goroutines.  Returns getaddrinfo's code (0 ok). */
int goro_getaddrinfo(const char *node, const char *service,
                     const struct addrinfo *hints, struct addrinfo **res);

/* }====================================================== */


/*
** {======================================================
** Tokens: code that must not run on two threads at once
** =======================================================
*/

/*
** A token is an exclusive right to run, passed between goroutines (and
** foreign threads) in FIFO order.  A goroutine spawned with a token, or
** that acquired one, runs only while it owns it: an M that picks it while
** another owns the token queues it on the token instead of blocking, and
** whenever the owner stops running (parks, yields, is preempted, ends) the
** token passes to the first in its queue.  The Lua binding gives each Lua
** state one, so that Lua code never runs on two threads at once while Lua
** goroutines still move between Ms.
**
** A foreign thread that owns a token and holds it for more than 10 ms while
** others wait for it is reported to the preemption hook with goid 0.
*/
typedef struct goro_token goro_token;

goro_token *goro_token_new(void);
void goro_token_free(goro_token *t);       /* fatal if anyone waits on it */
/* Wait for the token (parking, from a goroutine).  Owned already: no-op. */
void goro_token_acquire(goro_token *t);
/* Give it up, to the first waiter if any.  The caller must own it.  A
** goroutine that releases its token is no longer bound to it. */
void goro_token_release(goro_token *t);
bool goro_token_owned(goro_token *t);      /* by the caller */
/*
** Close a token: end every goroutine spawned bound to it, as if each had
** vanished where it stands (their frames are not unwound).  The caller
** must be a foreign thread that owns t.  Goroutines parked on channels
** are taken off them now (a select's other cases too); runnable ones are
** dropped when next picked; one waiting on a timer, an fd or another
** event is dropped when that wait ends.  For each goroutine dropped,
** discard(its goro_getlocal slot, ud) is called, on some thread, so that
** the embedder can free what it kept for it.  t is freed with the last
** of them; the caller must not use it after this call.
*/
typedef void (*goro_discard_fn)(void *local, void *ud);
void goro_token_close(goro_token *t, goro_discard_fn discard, void *ud);
bool goro_token_contended(goro_token *t);  /* somebody waits for it */

/* }====================================================== */


/*
** {======================================================
** Observability and hooks
** =======================================================
*/

typedef struct goro_stats_t {
  int64_t goroutines;    /* live goroutines */
  int threads;           /* Ms created and not exited */
  int idlethreads;       /* Ms parked without work */
  int procs;             /* Ps */
  int idleprocs;         /* Ps without an M */
  int spinning;          /* Ms spinning for work */
  int insyscall;         /* Ms inside entersyscall/exitsyscall */
  int64_t runqueue;      /* length of the global run queue */
  uint64_t switches;     /* goroutine switches (into a goroutine) */
  uint64_t steals;       /* successful steals from another P */
  uint64_t handoffs;     /* Ps retaken from syscalls by sysmon */
  uint64_t preemptions;  /* preemption requests made by sysmon */
  uint64_t spawned;      /* goroutines ever started */
  int64_t stacks;        /* native stacks held by goroutines, and by a few
                         ** finished ones kept for reuse (one parked by
                         ** goro_park_k, or not yet run, holds none) */
} goro_stats_t;

void goro_stats(goro_stats_t *out);

/*
** The live goroutines, for a goroutine dump (Go's traceback of all
** goroutines) and for tests that wait until a goroutine is blocked.  The
** state of a G read while it runs may be a moment old; a waiting one's
** `waitreason` is Go's words for what it waits on: "chan receive",
** "chan send", "select", "select (no cases)", "sleep", "IO wait",
** "semacquire" (a channel marked by goro_chan_setwaitreason).
*/
enum {
  GORO_GSTATE_RUNNABLE = 1,  /* ready, waiting for a P (or its token) */
  GORO_GSTATE_RUNNING,       /* on an M */
  GORO_GSTATE_SYSCALL,       /* in goro_entersyscall; no P */
  GORO_GSTATE_WAITING        /* parked until something readies it */
};

typedef struct goro_ginfo {
  int64_t id;
  int state;                 /* GORO_GSTATE_* */
  const char *waitreason;    /* WAITING: a static string; else NULL */
  int64_t waitsince;         /* WAITING: goro_now() when the wait was first
                             ** observed by these functions (Go stamps it
                             ** lazily too), so a lower bound; else 0 */
} goro_ginfo;

/* Fill out[0..max) with the live goroutines (foreign threads' waiters are
** not goroutines); returns how many there are, which may exceed max. */
int goro_goroutines(goro_ginfo *out, int max);

/* The goroutine `id`: false when it has ended (or never existed). */
bool goro_goroutine(int64_t id, goro_ginfo *out);

/* The same for g, a goroutine or a foreign thread's waiter (goro_self()),
** which a thread can read from another: its id is 0; it is RUNNING, or
** WAITING when the thread is blocked in the runtime ("token": waiting for
** a goro_token).  False for a goroutine that has ended. */
bool goro_g_info(goro_g *g, goro_ginfo *out);

/* "runnable", "running", "syscall", "waiting". */
const char *goro_gstate_name(int state);

/*
** Called by sysmon (on its own thread) after it marked goroutine `goid`,
** running on OS thread `thread`, for preemption.  C tasks notice the mark at
** goro_yield/goro_preempt_point by themselves; an embedder whose goroutines
** cannot poll (a Lua VM) uses the hook to interrupt the thread, e.g. with a
** signal.  The hook must not block.  NULL removes it.
*/
/*
** Deadlock detection, off by default: a C program may have threads the
** runtime does not know about that will wake its goroutines.  With a
** handler set, when every M is idle, no goroutine is runnable, no timer or
** I/O wait is pending, and every foreign thread that uses the runtime is
** blocked in it, the handler is called (on some thread); it is expected not
** to return (Go prints "all goroutines are asleep - deadlock!" and exits).
*/
typedef void (*goro_deadlock_handler)(void *ud);
void goro_set_deadlock_handler(goro_deadlock_handler fn, void *ud);

typedef void (*goro_preempt_hook)(pthread_t thread, int64_t goid, void *ud);
void goro_set_preempt_hook(goro_preempt_hook hook, void *ud);

/* }====================================================== */

#ifdef __cplusplus
}
#endif

#endif
