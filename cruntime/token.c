/*
** token.c — tokens: an exclusive right to run, passed in FIFO order.
**
** A Lua state is not thread-safe, so its goroutines must never run two at
** a time, yet they should stay ordinary goroutines: in the Ps' run queues,
** stolen, migrating between Ms.  A token squares the two.  A G bound to a
** token (G.token) runs only while it owns it, and owns it only while it
** runs:
**
**   claim     before execute() switches to a bound G, g0 takes the token
**             for it.  If another owns it, the G is queued on the token,
**             still runnable, and the M goes on with other work: a P is
**             never blocked waiting for a token.
**   release   whenever the owner switches back to g0 (park, yield,
**             preemption, exit, a syscall that lost its P), g0 hands the
**             token to the first queued G and puts that G on its own P's
**             runnext: the holder's M drains the queue, so the token stays
**             on one thread while Lua work lasts instead of bouncing.
**
** Foreign threads (the Lua host's main thread) take part too: they wait in
** the same queue, parked on their semaphore (goro_token_acquire), and a
** goroutine may leave its token around long C work (goro_token_release),
** so that Lua goes on meanwhile.  A foreign owner is not switched out by a
** scheduler; sysmon tells the preemption hook about one that keeps the
** token for 10 ms while others wait.
**
** The owner word holds the owner G (or foreign waiter) and a WAITERS bit,
** so that an uncontended claim and release are one CAS each.  The bit is
** set and cleared only under the lock that guards the queue: a releaser
** whose CAS fails because of it takes the lock and hands over.
*/
#include <stdlib.h>

#include "scheduler.h"

#define sched goro_sched

enum { TOKEN_WAITERS = 1, TOKEN_PREEMPT_NS = 10 * 1000 * 1000 };

struct goro_token {
  _Atomic uintptr_t owner;     /* G* | TOKEN_WAITERS, 0 when free */
  goro_mutex lock;             /* guards the queue and TOKEN_WAITERS */
  G *head, *tail;              /* queued Gs and waiters, via schedlink */
  _Atomic uint32_t tick;       /* +1 per change of owner */
  _Atomic(pthread_t) ownerthread;  /* of a foreign owner, for sysmon */
  _Atomic bool foreignowner;
  uint32_t sysmontick;         /* sysmon's last observation */
  int64_t sysmonwhen;
  goro_token *next, *prev;     /* every token, for sysmon */

  /* goro_token_close: the token outlives its creator's close while Gs
  ** spawned with it are alive (they reference it until discarded). */
  _Atomic bool closed;
  _Atomic int64_t refs;        /* the creator's, and one per bound G */
  goro_discard_fn discard;     /* called with each discarded G's local */
  void *discard_ud;
};

static goro_mutex tokenslock = GORO_MUTEX_INIT;
static goro_token *tokens;
static _Atomic int nqueued;    /* Gs queued on all tokens */

static inline G *owner_of(uintptr_t w) {
  return (G *)(w & ~(uintptr_t)TOKEN_WAITERS);
}

goro_token *goro_token_new(void) {
  goro_token *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  atomic_init(&t->refs, 1);
  goro_mutex_lock(&tokenslock);
  t->next = tokens;
  if (tokens) tokens->prev = t;
  tokens = t;
  goro_mutex_unlock(&tokenslock);
  return t;
}

static void token_destroy(goro_token *t) {
  goro_mutex_lock(&tokenslock);
  if (t->prev) t->prev->next = t->next; else tokens = t->next;
  if (t->next) t->next->prev = t->prev;
  goro_mutex_unlock(&tokenslock);
  free(t);
}

void goro_token_free(goro_token *t) {
  if (t == NULL)
    return;
  goro_mutex_lock(&t->lock);
  if (t->head)
    goro_throw("goro_token_free: goroutines wait for the token");
  goro_mutex_unlock(&t->lock);
  token_destroy(t);
}

/* A G spawned bound to t holds a reference until it is gone. */
void goro_token_ref(goro_token *t) {
  atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void goro_token_unref(goro_token *t) {
  if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
    token_destroy(t);
}

bool goro_token_closed(goro_token *t) {
  return atomic_load_explicit(&t->closed, memory_order_acquire);
}

/* gp, bound to the closed token t, is being dropped without running
** again: its embedder may free what its local slot points to. */
void goro_token_discard(goro_token *t, G *gp) {
  if (t->discard)
    t->discard(gp->local, t->discard_ud);
}

/* A new owner: remember who, for sysmon. */
static void owned_by(goro_token *t, G *gp) {
  atomic_store_explicit(&t->foreignowner, gp->foreign, memory_order_relaxed);
  if (gp->foreign)
    atomic_store_explicit(&t->ownerthread, gp->thread, memory_order_relaxed);
  atomic_fetch_add_explicit(&t->tick, 1, memory_order_relaxed);
}

/*
** Take t for gp, or queue gp on it.  With t->lock held.  Returns true when
** gp owns t.  The CAS that sets WAITERS races with an owner's fast release;
** whichever wins, the loop sees a consistent word.
*/
static bool claim_or_queue(goro_token *t, G *gp) {
  /* goro_token_close sets `closed` under t->lock: nothing is queued on a
  ** closed token, nor is its owner word touched (the closer releases it). */
  if (atomic_load_explicit(&t->closed, memory_order_relaxed))
    return false;
  uintptr_t me = (uintptr_t)gp;
  uintptr_t w = atomic_load(&t->owner);
  for (;;) {
    if (w == 0) {
      if (atomic_compare_exchange_weak(&t->owner, &w, me)) {
        owned_by(t, gp);
        return true;
      }
      continue;
    }
    if (owner_of(w) == gp)
      return true;
    if (atomic_compare_exchange_weak(&t->owner, &w, w | TOKEN_WAITERS))
      break;
  }
  gp->schedlink = NULL;
  if (t->tail) t->tail->schedlink = gp; else t->head = gp;
  t->tail = gp;
  atomic_fetch_add(&nqueued, 1);
  return false;
}

/* Fast path of claim: free, or ours already. */
static bool claim_fast(goro_token *t, G *gp) {
  uintptr_t w = 0;
  if (atomic_compare_exchange_strong(&t->owner, &w, (uintptr_t)gp)) {
    owned_by(t, gp);
    return true;
  }
  return owner_of(w) == gp;
}

int goro_token_claim(G *gp) {
  goro_token *t = gp->token;
  if (goro_token_closed(t))
    return TOKEN_CLOSED;   /* execute discards gp: see goro_token_close */
  if (claim_fast(t, gp))
    return TOKEN_OWNED;
  goro_mutex_lock(&t->lock);
  bool owned = claim_or_queue(t, gp);
  bool closed = !owned && atomic_load_explicit(&t->closed, memory_order_relaxed);
  goro_mutex_unlock(&t->lock);
  if (closed)
    return TOKEN_CLOSED;
  /* A foreign owner must be watched even when every P goes idle.  A
  ** Dekker pattern with sysmon's sleep: we count ourselves in nqueued then
  ** read its idle flag, it sets the flag then reads nqueued (all_idle).
  ** Both sides seq_cst, so at least one sees the other's write; a relaxed
  ** read here could miss the flag while sysmon missed us (arm64). */
  if (!owned && atomic_load(&goro_sysmon_idle))
    goro_sysmon_wake();
  return owned ? TOKEN_OWNED : TOKEN_QUEUED;
}

/*
** Give t up on behalf of gp, its owner: to nobody, or to the first queued.
** A queued G that was runnable (bounced by claim) goes to runnext of `pp`
** when there is one, else to the global queue; a parked one (in
** goro_token_acquire, a G or a foreign waiter) is readied.
*/
static void release(goro_token *t, G *gp, P *pp) {
  uintptr_t w = (uintptr_t)gp;
  if (atomic_compare_exchange_strong(&t->owner, &w, 0)) {
    atomic_fetch_add_explicit(&t->tick, 1, memory_order_relaxed);
    return;
  }
  if (owner_of(w) != gp)
    goro_throw("token released by a goroutine that does not own it");
  goro_mutex_lock(&t->lock);
  G *next = t->head;
  t->head = next->schedlink;
  if (t->head == NULL) t->tail = NULL;
  next->schedlink = NULL;
  atomic_fetch_sub(&nqueued, 1);
  uint32_t status = atomic_load(&next->status);
  atomic_store(&t->owner, (uintptr_t)next | (t->head ? TOKEN_WAITERS : 0));
  owned_by(t, next);
  goro_mutex_unlock(&t->lock);

  if (status == G_WAITING) {
    goro_goready(next);
  } else if (pp) {
    /* This M runs it next: nobody else could run it sooner. */
    runqput(pp, next, true);
  } else {
    goro_mutex_lock(&sched.lock);
    globrunqput(next);
    goro_mutex_unlock(&sched.lock);
    wakep();
  }
}

/*
** gp, bound to a token, has just become runnable (spawned or readied) by
** whoever runs now.  If that is the token's owner, gp cannot run before
** the owner lets go, so waking an M for it would only have the M queue it
** on the token and sleep again.  A goroutine owner keeps it on its own P
** (runnext) without waking anybody; a foreign owner queues it on the token
** at once.  Returns false when the caller does not own the token: then gp
** goes the usual way.
*/
bool goro_token_defer(G *gp, P *pp) {
  goro_token *t = gp->token;
  G *me = goro_getg_if_any();   /* on g0, or the poller's thread: nobody */
  if (me == NULL || goro_token_closed(t) ||
      owner_of(atomic_load_explicit(&t->owner, memory_order_relaxed)) != me)
    return false;
  if (pp) {
    runqput(pp, gp, true);
    return true;
  }
  goro_mutex_lock(&t->lock);
  bool owned = claim_or_queue(t, gp);
  bool closed = atomic_load_explicit(&t->closed, memory_order_relaxed);
  goro_mutex_unlock(&t->lock);
  if (closed)
    return false;   /* closed meanwhile (by its owner?): the usual way */
  if (owned)
    goro_throw("goro_token_defer: the token changed hands under its owner");
  if (atomic_load(&goro_sysmon_idle))   /* seq_cst: see goro_token_claim */
    goro_sysmon_wake();
  return true;
}

void goro_token_switched_out(G *gp, P *pp) {
  goro_token *t = gp->token;
  if (owner_of(atomic_load_explicit(&t->owner, memory_order_relaxed)) == gp)
    release(t, gp, pp);
}

static bool unlock_token(goro_g *g, void *arg) {
  (void)g;
  goro_mutex_unlock(&((goro_token *)arg)->lock);
  return true;
}

void goro_token_acquire(goro_token *t) {
  G *gp = goro_getg();
  if (!gp->foreign)
    RELAXED_STORE(gp->token, t);
  if (claim_fast(t, gp))
    return;
  goro_mutex_lock(&t->lock);
  if (claim_or_queue(t, gp)) {
    goro_mutex_unlock(&t->lock);
    return;
  }
  if (gp->foreign && atomic_load(&goro_sysmon_idle))   /* see goro_token_claim */
    goro_sysmon_wake();
  /* Readied by release, which made us the owner first. */
  goro_gopark(unlock_token, t, "token");
}

void goro_token_release(goro_token *t) {
  G *gp = goro_getg();
  M *mp = goro_getm();
  RELAXED_STORE(gp->token, NULL);
  release(t, gp, mp ? mp->p : NULL);
}

bool goro_token_owned(goro_token *t) {
  return owner_of(atomic_load(&t->owner)) == goro_getg();
}

bool goro_token_contended(goro_token *t) {
  return (atomic_load_explicit(&t->owner, memory_order_relaxed) & TOKEN_WAITERS) != 0;
}

/*
** Take the goroutines off t's queue (t->lock held), leaving its foreign
** waiters queued; returns them linked by schedlink.
*/
static G *take_goroutines(goro_token *t) {
  G *keep = NULL, **link = &keep, *last = NULL, *taken = NULL;
  for (G *gp = t->head, *next; gp; gp = next) {
    next = gp->schedlink;
    if (gp->foreign) {
      *link = gp;
      link = &gp->schedlink;
      last = gp;
    } else {
      atomic_fetch_sub(&nqueued, 1);
      gp->schedlink = taken;
      taken = gp;
    }
  }
  *link = NULL;
  t->head = keep;
  t->tail = last;
  return taken;
}

/*
** Shutdown: the goroutines are gone (freed), so drop them from every
** queue, and a goroutine owner with them.  Foreign waiters stay queued.
*/
void goro_token_shutdown(void) {
  goro_mutex_lock(&tokenslock);
  for (goro_token *t = tokens; t; t = t->next) {
    goro_mutex_lock(&t->lock);
    take_goroutines(t);
    G *owner = owner_of(atomic_load(&t->owner));
    if (owner && !owner->foreign)
      owner = NULL;
    atomic_store(&t->owner, (uintptr_t)owner | (t->head ? TOKEN_WAITERS : 0));
    goro_mutex_unlock(&t->lock);
  }
  goro_mutex_unlock(&tokenslock);
}

/*
** Close t, which the caller (a foreign thread) owns: end every goroutine
** spawned bound to it.  Owning t, the caller knows that none of them runs
** and that any readied meanwhile queues on t.  First the ones parked on
** channels are taken off the channels' queues and readied; then t is
** marked closed and its queue emptied onto the global run queue.  From
** then on any G bound to t that is picked to run is discarded instead
** (execute: discardg), and `discard` is told of it: a G waiting on a timer
** or an fd ends when that wait does, one waiting on nothing never.  The
** token itself is freed with the last of them.
*/
void goro_token_close(goro_token *t, goro_discard_fn discard, void *ud) {
  G *me = goro_getg();
  if (!me->foreign || owner_of(atomic_load(&t->owner)) != me)
    goro_throw("goro_token_close: the caller must be a foreign owner");
  t->discard = discard;
  t->discard_ud = ud;
  goro_cancel_chan_waits(t);

  goro_mutex_lock(&t->lock);
  atomic_store_explicit(&t->closed, true, memory_order_release);
  G *drop = take_goroutines(t);
  atomic_store(&t->owner, (uintptr_t)me | (t->head ? TOKEN_WAITERS : 0));
  goro_mutex_unlock(&t->lock);
  release(t, me, NULL);

  /* To the run queues, where execute discards them. */
  for (G *gp = drop, *next; gp; gp = next) {
    next = gp->schedlink;
    gp->schedlink = NULL;
    if (atomic_load(&gp->status) == G_WAITING) {
      goro_goready(gp);   /* parked in goro_token_acquire */
    } else {
      goro_mutex_lock(&sched.lock);
      globrunqput(gp);
      goro_mutex_unlock(&sched.lock);
      wakep();
    }
  }
  goro_token_unref(t);
}

/* Shutdown, once every G is freed: closed tokens have nobody left. */
void goro_token_shutdown_closed(void) {
  goro_mutex_lock(&tokenslock);
  for (goro_token *t = tokens, *next; t; t = next) {
    next = t->next;
    if (!atomic_load(&t->closed))
      continue;
    if (t->prev) t->prev->next = t->next; else tokens = t->next;
    if (t->next) t->next->prev = t->prev;
    free(t);
  }
  goro_mutex_unlock(&tokenslock);
}

/* seq_cst: sysmon reads it after setting goro_sysmon_idle (see
** goro_token_claim). */
bool goro_token_waiting(void) {
  return atomic_load(&nqueued) > 0;
}

/*
** sysmon: a foreign owner that has kept a contended token through a whole
** 10 ms slice is reported to the preemption hook (goid 0), which makes it
** let go (the Lua binding: a signal, then a count hook in the VM).
** Goroutine owners need nothing: their own 10 ms preemption switches them
** out, and that releases the token.
*/
int goro_token_sysmon(int64_t now) {
  int n = 0;
  goro_mutex_lock(&tokenslock);
  for (goro_token *t = tokens; t; t = t->next) {
    uint32_t tick = atomic_load_explicit(&t->tick, memory_order_relaxed);
    if (t->sysmontick != tick || !goro_token_contended(t) ||
        !atomic_load_explicit(&t->foreignowner, memory_order_relaxed)) {
      t->sysmontick = tick;
      t->sysmonwhen = now;
      continue;
    }
    if (now - t->sysmonwhen < TOKEN_PREEMPT_NS)
      continue;
    t->sysmonwhen = now;
    goro_call_preempt_hook(
        atomic_load_explicit(&t->ownerthread, memory_order_relaxed), 0);
    n++;
  }
  goro_mutex_unlock(&tokenslock);
  return n;
}
