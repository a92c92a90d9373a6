/*
** runq.c — the run queues: each P's lock-free ring with its runnext slot,
** and the global queue under sched.lock (Go's proc.go runqput/runqget/
** runqgrab/runqsteal and globrunqput/globrunqget).
**
** The local ring is a single-producer, multi-consumer queue: only the
** owning P appends (at runqtail); the owner and thieves take from runqhead
** with a CAS.  runqtail is published with a store-release after the slot is
** written, so a consumer that load-acquires the tail sees the G.  A thief may
** read a slot that the owner is overwriting when the thief's CAS is about to
** fail anyway; the slots are atomics (relaxed) so that this benign race is
** not undefined behaviour and ThreadSanitizer stays quiet about it.
*/
#include "scheduler.h"

#include <unistd.h>

#define LOADACQ(x)    atomic_load_explicit(&(x), memory_order_acquire)
#define LOADRLX(x)    atomic_load_explicit(&(x), memory_order_relaxed)
#define STOREREL(x,v) atomic_store_explicit(&(x), (v), memory_order_release)
#define STORERLX(x,v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

static bool cas_rel(_Atomic uint32_t *p, uint32_t old, uint32_t new) {
  return atomic_compare_exchange_strong_explicit(p, &old, new,
      memory_order_release, memory_order_relaxed);
}

/*
** How many consecutive runs may come from runnext while the ring holds
** work.  runnext lets a G readied by the running G run next, so a ping-pong
** pair stays on one P and hot in cache; but two Gs that keep readying each
** other would starve the ring (and Go only bounds it by the 10 ms time
** slice they share).  After this many, the ring's head goes first.
*/
enum { RUNNEXT_MAX = 3 };

bool runqempty(P *pp) {
  /* The tail is re-read so that a runnext kicked into the ring between
  ** our loads is not missed (Go's runqempty). */
  for (;;) {
    uint32_t head = LOADACQ(pp->runqhead);
    uint32_t tail = LOADACQ(pp->runqtail);
    G *next = atomic_load_explicit(&pp->runnext, memory_order_acquire);
    if (tail == LOADACQ(pp->runqtail))
      return head == tail && next == NULL;
  }
}

uint32_t runqlen(P *pp) {
  uint32_t n = LOADACQ(pp->runqtail) - LOADACQ(pp->runqhead);
  return n > RUNQ_SIZE ? 0 : n;
}

/* Move half of the full ring plus gp to the global queue. */
static bool runqputslow(P *pp, G *gp, uint32_t h, uint32_t t) {
  G *batch[RUNQ_SIZE / 2 + 1];
  uint32_t n = (t - h) / 2;
  if (n != RUNQ_SIZE / 2)
    goro_throw("runqputslow: queue is not full");
  for (uint32_t i = 0; i < n; i++)
    batch[i] = LOADRLX(pp->runq[(h + i) % RUNQ_SIZE]);
  if (!cas_rel(&pp->runqhead, h, h + n))
    return false;   /* thieves took some: there is room again */
  batch[n] = gp;
  for (uint32_t i = 0; i < n; i++)
    batch[i]->schedlink = batch[i + 1];
  batch[n]->schedlink = NULL;
  goro_mutex_lock(&goro_sched.lock);
  globrunqputbatch(batch[0], batch[n], (int64_t)n + 1);
  goro_mutex_unlock(&goro_sched.lock);
  return true;
}

void runqput(P *pp, G *gp, bool next) {
  if (next) {
    /* Kick the old runnext to the tail of the ring. */
    G *old = atomic_exchange_explicit(&pp->runnext, gp, memory_order_acq_rel);
    if (old == NULL)
      return;
    gp = old;
  }
  for (;;) {
    uint32_t h = LOADACQ(pp->runqhead);
    uint32_t t = LOADRLX(pp->runqtail);
    if (t - h < RUNQ_SIZE) {
      STORERLX(pp->runq[t % RUNQ_SIZE], gp);
      STOREREL(pp->runqtail, t + 1);
      return;
    }
    if (runqputslow(pp, gp, h, t))
      return;
  }
}

/* Put a linked batch of n Gs on the local ring, the rest globally. */
void runqputbatch(P *pp, G *head, int n) {
  uint32_t h = LOADACQ(pp->runqhead);
  uint32_t t = LOADRLX(pp->runqtail);
  uint32_t room = RUNQ_SIZE - (t - h);
  int put = 0;
  while (head && (uint32_t)put < room) {
    G *gp = head;
    head = gp->schedlink;
    STORERLX(pp->runq[(t + put) % RUNQ_SIZE], gp);
    put++;
  }
  STOREREL(pp->runqtail, t + put);
  if (head) {
    G *tail = head;
    while (tail->schedlink) tail = tail->schedlink;
    goro_mutex_lock(&goro_sched.lock);
    globrunqputbatch(head, tail, n - put);
    goro_mutex_unlock(&goro_sched.lock);
  }
}

G *runqget(P *pp, bool *inherit) {
  G *next = atomic_load_explicit(&pp->runnext, memory_order_acquire);
  if (next && (pp->runnextstreak < RUNNEXT_MAX ||
               LOADACQ(pp->runqhead) == LOADRLX(pp->runqtail))) {
    if (atomic_compare_exchange_strong_explicit(&pp->runnext, &next, NULL,
            memory_order_acq_rel, memory_order_relaxed)) {
      pp->runnextstreak++;
      *inherit = true;      /* shares the time slice of the G that readied it */
      return next;
    }
  }
  pp->runnextstreak = 0;
  *inherit = false;
  for (;;) {
    uint32_t h = LOADACQ(pp->runqhead);
    uint32_t t = LOADRLX(pp->runqtail);
    if (t == h)
      break;
    G *gp = LOADRLX(pp->runq[h % RUNQ_SIZE]);
    if (cas_rel(&pp->runqhead, h, h + 1))
      return gp;
  }
  /* The ring is empty; a runnext we skipped because of the streak cap is
  ** still ours to run. */
  next = atomic_load_explicit(&pp->runnext, memory_order_acquire);
  if (next && atomic_compare_exchange_strong_explicit(&pp->runnext, &next,
                  NULL, memory_order_acq_rel, memory_order_relaxed)) {
    pp->runnextstreak = 1;
    *inherit = true;
    return next;
  }
  return NULL;
}

/*
** Take half of victim's ring into `batch` (which is the thief's own ring,
** starting at slot batchhead).  Returns how many.  With stealnext, the
** victim's runnext may be taken when its ring is empty.
*/
static uint32_t runqgrab(P *pp, _Atomic(G *) *batch, uint32_t batchhead,
                         bool stealnext) {
  for (;;) {
    uint32_t h = LOADACQ(pp->runqhead);
    uint32_t t = LOADACQ(pp->runqtail);
    uint32_t n = t - h;
    n = n - n / 2;
    if (n == 0) {
      if (!stealnext)
        return 0;
      G *next = atomic_load_explicit(&pp->runnext, memory_order_acquire);
      if (next == NULL)
        return 0;
      if (atomic_load_explicit(&pp->status, memory_order_relaxed) == P_RUNNING) {
        /* pp is running and has just readied `next`; it is probably about
        ** to park and run `next` itself.  Give it a moment to do so, or
        ** a ping-pong pair gets split across threads (Go sleeps 3 µs). */
        usleep(3);
      }
      if (!atomic_compare_exchange_strong_explicit(&pp->runnext, &next, NULL,
              memory_order_acq_rel, memory_order_relaxed))
        continue;
      STORERLX(batch[batchhead % RUNQ_SIZE], next);
      return 1;
    }
    if (n > RUNQ_SIZE / 2)
      continue;   /* read an inconsistent head and tail */
    for (uint32_t i = 0; i < n; i++)
      STORERLX(batch[(batchhead + i) % RUNQ_SIZE],
               LOADRLX(pp->runq[(h + i) % RUNQ_SIZE]));
    if (cas_rel(&pp->runqhead, h, h + n))
      return n;
  }
}

G *runqsteal(P *pp, P *victim, bool stealnext) {
  uint32_t t = LOADRLX(pp->runqtail);
  uint32_t n = runqgrab(victim, pp->runq, t, stealnext);
  if (n == 0)
    return NULL;
  n--;
  G *gp = LOADRLX(pp->runq[(t + n) % RUNQ_SIZE]);
  if (n > 0)
    STOREREL(pp->runqtail, t + n);
  return gp;
}


/*
** Move everything on pp's queue to the global queue (sched.lock held).  For
** a P that has no M to run it and cannot get one (the thread cap): it can
** go idle, and its Gs wait where any M that comes back will find them.
*/
void runqdrain(P *pp) {
  bool inherit;
  G *gp;
  while ((gp = runqget(pp, &inherit)) != NULL)
    globrunqput(gp);
}

/*
** {======================================================
** Global run queue (sched.lock held)
** =======================================================
*/

void globrunqput(G *gp) {
  gp->schedlink = NULL;
  if (goro_sched.runqtail)
    goro_sched.runqtail->schedlink = gp;
  else
    goro_sched.runqhead = gp;
  goro_sched.runqtail = gp;
  atomic_fetch_add_explicit(&goro_sched.runqsize, 1, memory_order_relaxed);
}

void globrunqputbatch(G *head, G *tail, int64_t n) {
  tail->schedlink = NULL;
  if (goro_sched.runqtail)
    goro_sched.runqtail->schedlink = head;
  else
    goro_sched.runqhead = head;
  goro_sched.runqtail = tail;
  atomic_fetch_add_explicit(&goro_sched.runqsize, n, memory_order_relaxed);
}

static G *globrunqpop(void) {
  G *gp = goro_sched.runqhead;
  goro_sched.runqhead = gp->schedlink;
  if (goro_sched.runqhead == NULL)
    goro_sched.runqtail = NULL;
  atomic_fetch_sub_explicit(&goro_sched.runqsize, 1, memory_order_relaxed);
  return gp;
}

/*
** Take a fair share of the global queue for pp: one G to run now, the rest
** onto pp's ring.  max > 0 bounds the count (Go's globrunqget).
*/
G *globrunqget(P *pp, int max) {
  int64_t size = atomic_load_explicit(&goro_sched.runqsize, memory_order_relaxed);
  if (size == 0)
    return NULL;
  int64_t n = size / goro_sched.nprocs + 1;
  if (n > size) n = size;
  if (max > 0 && n > max) n = max;
  if (n > RUNQ_SIZE / 2) n = RUNQ_SIZE / 2;
  G *gp = globrunqpop();
  for (n--; n > 0; n--)
    runqput(pp, globrunqpop(), false);
  return gp;
}

/* }====================================================== */
