/*
** chan.c — channels, as Go's runtime/chan.go.
**
** A channel is a lock, a ring buffer of `dataqsiz` elements of `elemsize`
** bytes, and two FIFO queues of sudogs: goroutines blocked sending and
** blocked receiving.  Invariants (under the lock):
**   at least one of recvq and sendq is empty (a receiver and a sender
**     would have met), except when one select waits on both ends of the
**     channel: its two sudogs cannot meet each other;
**   a buffered channel with waiting receivers has an empty buffer, one with
**     waiting senders a full buffer.
** So an operation only ever looks at the other side's queue, then at the
** buffer.  A value goes straight from a sender to a waiting receiver's
** memory (and back), never through the buffer, and the waiter is readied
** after the channel is unlocked.
**
** A goroutine in a select waits on several channels at once with one sudog
** on each; the first channel to dequeue one of them wins the select by a
** CAS on G.selectdone, and the others skip its sudogs (waitq_dequeue).
*/
#include <stdlib.h>
#include <string.h>

#include "chan.h"


/*
** {======================================================
** sudogs: a per-P cache, since every blocking operation needs one
** =======================================================
*/

/*
** Go's acquireSudog/releaseSudog.  Each P keeps up to SUDOG_CACHE free
** sudogs, touched only by the M that holds the P, so the common case takes
** no lock and makes no call to malloc.  A G often parks on one P and
** resumes on another (the waker's runnext), so sudogs drift from P to P:
** like Go, a P that runs dry takes half a cache from a central list, and a
** P whose cache is full gives half of it back.  Threads without a P
** (foreign threads) use the central list directly.  Go's GC empties the
** central list now and then (clearpools); without one, it is capped and
** what goes beyond is freed.
*/

enum { SUDOG_CENTRAL_MAX = 16 * SUDOG_CACHE };

static goro_mutex sudoglock = GORO_MUTEX_INIT;
static sudog *sudogcentral;      /* linked by waitlink */
static int nsudogcentral;

/* Pop one sudog from the central list, or NULL. */
static sudog *central_get(void) {
  goro_mutex_lock(&sudoglock);
  sudog *s = sudogcentral;
  if (s) {
    sudogcentral = s->waitlink;
    nsudogcentral--;
  }
  goro_mutex_unlock(&sudoglock);
  return s;
}

/* Push the list first..last (n sudogs) to the central list; free the
** sudogs that do not fit. */
static void central_put(sudog *first, sudog *last, int n) {
  goro_mutex_lock(&sudoglock);
  if (nsudogcentral + n <= SUDOG_CENTRAL_MAX) {
    last->waitlink = sudogcentral;
    sudogcentral = first;
    nsudogcentral += n;
    first = NULL;
  }
  goro_mutex_unlock(&sudoglock);
  while (first) {   /* over the cap: free outside the lock */
    sudog *next = first->waitlink;
    free(first);
    first = next;
  }
}

static bool waitq_contains(waitq *q, sudog *sg);
static void release_to_cache(sudog *s);

sudog *goro_acquire_sudog(void) {
  M *mp = goro_getm();
  P *pp = mp ? mp->p : NULL;
  sudog *s = NULL;
  if (pp) {
    if (pp->sudogcache == NULL) {
      /* Refill half the local cache from the central one, in one lock. */
      goro_mutex_lock(&sudoglock);
      while (pp->nsudog < SUDOG_CACHE / 2 && sudogcentral) {
        sudog *t = sudogcentral;
        sudogcentral = t->waitlink;
        nsudogcentral--;
        t->waitlink = pp->sudogcache;
        pp->sudogcache = t;
        pp->nsudog++;
      }
      goro_mutex_unlock(&sudoglock);
    }
    if ((s = pp->sudogcache) != NULL) {
      pp->sudogcache = s->waitlink;
      pp->nsudog--;
    }
  } else {
    s = central_get();
  }
  if (s == NULL && (s = malloc(sizeof *s)) == NULL)
    goro_throw("out of memory allocating a sudog");
  memset(s, 0, sizeof *s);
  return s;
}

/*
** A channel lives while anything may still touch it: its creator (until
** goro_chan_free) and every sudog made for it, from the enqueue to the
** release.  So a select woken by one channel can relock all of its
** channels in its last pass, and a goroutine can be taken off a queue
** (goro_chan_cancel) or dropped at shutdown, even if the creator freed
** the channel meanwhile: Go's collector gives the same guarantee.
*/
void goro_chan_ref(goro_chan *c) {
  atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void chan_unref(goro_chan *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
    free(c);
}

/* Shutdown drops the sudogs of goroutines it frees: off their queue (no
** other thread is left to race with), and the channel's reference. */
void goro_sudog_drop(sudog *s) {
  goro_chan *c = s->c;
  if (c) {
    if (waitq_contains(&c->recvq, s))
      waitq_remove(&c->recvq, s);
    else if (waitq_contains(&c->sendq, s))
      waitq_remove(&c->sendq, s);
    chan_unref(c);
  }
  free(s);
}

void goro_release_sudog(sudog *s) {
  /* As Go's releaseSudog: a sudog still linked into a wait queue or a
  ** G's list would corrupt them once reused. */
  if (s->next != NULL || s->prev != NULL)
    goro_throw("goro_release_sudog: sudog still on a wait queue");
  if (s->waitlink != NULL)
    goro_throw("goro_release_sudog: sudog still on a G's waiting list");
  goro_chan *c = s->c;
  s->g = NULL;
  s->elem = NULL;
  s->c = NULL;
  release_to_cache(s);
  if (c)
    chan_unref(c);   /* last: it may free the channel */
}

static void release_to_cache(sudog *s) {
  M *mp = goro_getm();
  P *pp = mp ? mp->p : NULL;
  if (pp == NULL) {
    central_put(s, s, 1);
    return;
  }
  if (pp->nsudog >= SUDOG_CACHE) {
    /* Full: hand half of it over to the central list. */
    sudog *first = pp->sudogcache, *last = first;
    int n = 1;
    while (n < SUDOG_CACHE / 2) {
      last = last->waitlink;
      n++;
    }
    pp->sudogcache = last->waitlink;
    pp->nsudog -= n;
    last->waitlink = NULL;
    central_put(first, last, n);
  }
  s->waitlink = pp->sudogcache;
  pp->sudogcache = s;
  pp->nsudog++;
}

/* }====================================================== */


/*
** {======================================================
** Wait queues
** =======================================================
*/

void waitq_enqueue(waitq *q, sudog *sg) {
  sg->next = NULL;
  sg->prev = q->last;
  if (q->last)
    q->last->next = sg;
  else
    CHAN_STORE(q->first, sg);
  q->last = sg;
}

/*
** Take sg off q, if it is still there.  A select's sudog may already be
** gone: a waker that lost the selectdone race took it off and dropped it
** (waitq_dequeue).  Then prev and next are both NULL, as for the only
** element; q->first tells the two apart (Go's dequeueSudoG).
*/
void waitq_remove(waitq *q, sudog *sg) {
  if (sg->prev == NULL && sg->next == NULL && q->first != sg)
    return;
  if (sg->prev) sg->prev->next = sg->next; else CHAN_STORE(q->first, sg->next);
  if (sg->next) sg->next->prev = sg->prev; else q->last = sg->prev;
  sg->next = sg->prev = NULL;
}

/*
** The first waiter that can still be woken.  A select's sudog whose G has
** already been won by another case is dropped: between that win and the
** G's relocking of its channels to remove its sudogs, they are stale.
*/
sudog *waitq_dequeue(waitq *q) {
  for (;;) {
    sudog *sg = q->first;
    if (sg == NULL)
      return NULL;
    waitq_remove(q, sg);
    if (sg->isselect) {
      uint32_t zero = 0;
      if (!atomic_compare_exchange_strong(&sg->g->selectdone, &zero, 1))
        continue;
    }
    return sg;
  }
}

static bool waitq_contains(waitq *q, sudog *sg) {
  for (sudog *s = q->first; s; s = s->next)
    if (s == sg)
      return true;
  return false;
}

/* Take sg off whichever queue of its channel holds it.  True if it was
** on one.  With sg->c locked. */
static bool unqueue(sudog *sg) {
  goro_chan *c = sg->c;
  if (waitq_contains(&c->recvq, sg))
    waitq_remove(&c->recvq, sg);
  else if (waitq_contains(&c->sendq, sg))
    waitq_remove(&c->sendq, sg);
  else
    return false;
  return true;
}

/*
** Take gp, parked in a channel operation or a select, off the queues
** (goro_token_close).  It races with wakers exactly as they race with
** each other: a select is won by the CAS on selectdone, a plain
** operation by whoever takes its sudog off the queue under the lock.
** True: the caller won, nobody else will ready gp.  The walk of a queue
** is linear, but this is no hot path.
*/
bool goro_chan_cancel(G *gp) {
  sudog *first = gp->waiting;
  if (first->isselect) {
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong(&gp->selectdone, &zero, 1))
      return false;
    for (sudog *s = first; s; s = s->waitlink) {
      goro_mutex_lock(&s->c->lock);
      unqueue(s);
      goro_mutex_unlock(&s->c->lock);
    }
    return true;
  }
  goro_chan *c = first->c;
  goro_mutex_lock(&c->lock);
  bool won = unqueue(first);
  goro_mutex_unlock(&c->lock);
  return won;
}

/* gp is being dropped (discardg): a select woken by one case still has
** sudogs queued on the others, which its last pass would have taken off. */
void goro_chan_unqueue_all(G *gp) {
  for (sudog *s = gp->waiting; s; s = s->waitlink) {
    goro_mutex_lock(&s->c->lock);
    unqueue(s);
    goro_mutex_unlock(&s->c->lock);
  }
}

bool goro_chan_cancel_park(G *gp, void *unused) {
  (void)unused;
  return goro_chan_cancel(gp);
}

/* }====================================================== */


/* Go's makechan.  The buffer follows the header in one allocation (Go
** does this for element types without pointers, i.e. always here).  Go
** caps elements at 64 KiB because its copies are typed; a C blob has no
** such reason, so only the size arithmetic is checked. */
goro_chan *goro_chan_new(size_t elemsize, size_t cap) {
  if (elemsize && cap > (SIZE_MAX - sizeof(goro_chan)) / elemsize)
    return NULL;
  goro_chan *c = calloc(1, sizeof *c + cap * elemsize);
  if (!c)
    return NULL;
  atomic_init(&c->refs, 1);
  c->elemsize = elemsize;
  c->dataqsiz = cap;
  c->buf = (char *)(c + 1);
  return c;
}

void goro_chan_setwaitreason(goro_chan *c, const char *reason) {
  c->waitreason = reason;
}

const char *goro_chan_waitreason(goro_chan *c) {
  return c->waitreason;
}

/* Go has a garbage collector instead.  A sudog on a queue points into
** the channel's waiter, and the waiter will relock the channel: freeing
** it now would be a use after free, so it is a fatal error. */
void goro_chan_free(goro_chan *c) {
  if (c != NULL)
    chan_unref(c);
}

/* Go reads qcount without the lock: a racy snapshot is all len(c) can
** promise anyway.  Like len and cap of a nil channel in Go, NULL gives 0. */
size_t goro_chan_len(goro_chan *c) {
  if (c == NULL)
    return 0;
  return CHAN_LOAD(c->qcount);
}

bool goro_chan_waiting(goro_chan *c) {
  if (c == NULL)
    return false;
  goro_mutex_lock(&c->lock);
  bool w = c->recvq.first || c->sendq.first;
  goro_mutex_unlock(&c->lock);
  return w;
}

size_t goro_chan_cap(goro_chan *c) {
  return c ? c->dataqsiz : 0;   /* fixed at creation: no lock */
}

/* Go's chanparkcommit: the park's unlock callback.  The channel stays
** locked until the waiter's state is saved, so a waker that finds its
** sudog on the queue can ready it at once. */
static bool chanparkcommit(goro_g *g, void *lock) {
  (void)g;
  goro_mutex_unlock(lock);
  return true;
}

/*
** Go's send: hand `ep` straight to a receiver that was waiting (it is off
** the queue already), with c locked.  The value goes into the receiver's
** own memory, never through the buffer.  Unlocks c, then readies the
** receiver: as Go, no G is readied with a channel lock held, since the
** readied G may start at once on another M and want that very lock.
*/
void chan_send_to(goro_chan *c, sudog *sg, const void *ep) {
  elemcopy(c, sg->elem, ep);
  G *gp = sg->g;
  sg->success = true;
  gp->param = sg;
  goro_mutex_unlock(&c->lock);
  goro_goready(gp);
}

/*
** Go's recv: take a value from a sender that was waiting (off the queue
** already), with c locked.  Unbuffered, it comes straight from the
** sender's memory.  Buffered, a waiting sender means a full buffer: the
** receiver takes the head, and the sender's value goes to the tail, which
** is the same slot now, so FIFO order holds across buffer and queue.
*/
void chan_recv_from(goro_chan *c, sudog *sg, void *ep) {
  if (c->dataqsiz == 0) {
    elemcopy(c, ep, sg->elem);
  } else {
    char *slot = chanbuf(c, c->recvx);
    elemcopy(c, ep, slot);
    elemcopy(c, slot, sg->elem);
    if (++c->recvx == c->dataqsiz)
      c->recvx = 0;
    c->sendx = c->recvx;   /* qcount stays dataqsiz */
  }
  G *gp = sg->g;
  sg->success = true;
  gp->param = sg;
  goro_mutex_unlock(&c->lock);
  goro_goready(gp);
}

/*
** The second half of Go's chansend and chanrecv, in two steps around the
** park: chanwait enqueues the caller on `q` of c (locked) with a sudog on
** G.waiting; chanwoken, once a partner or a close has taken it off,
** returns true when woken by a partner, false when woken by close.
*/
static void chanwait(goro_chan *c, waitq *q, void *ep) {
  G *gp = goro_getg();
  sudog *mysg = goro_acquire_sudog();
  mysg->elem = ep;
  mysg->g = gp;
  mysg->c = c;
  goro_chan_ref(c);
  gp->waiting = mysg;
  gp->param = NULL;
  waitq_enqueue(q, mysg);
}

static bool chanwoken(const char *reason) {
  /* The waker set param and success before readying us; nobody else
  ** refers to the sudog any more. */
  G *gp = goro_getg();
  sudog *mysg = gp->waiting;
  if (mysg == NULL || gp->param != mysg)
    goro_throw("%s: G waiting list is corrupted", reason);
  bool success = mysg->success;
  gp->waiting = NULL;
  gp->param = NULL;
  goro_release_sudog(mysg);
  return success;
}

/* How a blocking operation parks: NULL for the ordinary park, which keeps
** the stack, or the continuation of goro_park_k. */
typedef struct parkk {
  goro_chanop *op;
  goro_fn k;
  void *karg;
} parkk;

/* Park on q of c.  CHAN_WOKEN by a partner, CHAN_CLOSED by close, or
** CHAN_INTERRUPTED (a foreign thread, goro_interrupt): off the queue then,
** nothing done. */
enum { CHAN_CLOSED, CHAN_WOKEN, CHAN_INTERRUPTED };

static int chanpark(goro_chan *c, waitq *q, void *ep, const char *reason,
                    const parkk *pk) {
  chanwait(c, q, ep);
  if (c->waitreason)
    reason = c->waitreason;   /* a mutex, a wait group: "semacquire" */
  if (pk)
    goro_park_k(chanparkcommit, &c->lock, reason, pk->k, pk->karg);
  if (goro_gopark_cancelable(chanparkcommit, &c->lock, reason,
                             goro_chan_cancel_park, NULL)) {
    G *gp = goro_getg();
    sudog *mysg = gp->waiting;
    gp->waiting = NULL;
    goro_release_sudog(mysg);
    return CHAN_INTERRUPTED;
  }
  return chanwoken(reason) ? CHAN_WOKEN : CHAN_CLOSED;
}

/*
** Go's chansend.  Closed: fail.  A receiver waiting: hand the value over.
** Room in the buffer: store it.  Otherwise wait (or, non-blocking, give
** up).  The order matters: a waiting receiver implies an empty buffer,
** so handing over first keeps FIFO order.
*/
static int chansend(goro_chan *c, const void *ep, bool block, const parkk *pk) {
  if (c == NULL)
    return GORO_EINVAL;   /* Go blocks forever on a nil channel */
  /* Go's fast path: a non-blocking send that sees an open, full channel
  ** fails without the lock.  Seen open after seen full, it was open when
  ** it was full: the send fails as of that moment. */
  if (!block && chan_full(c) && !__atomic_load_n(&c->closed, __ATOMIC_ACQUIRE))
    return GORO_EAGAIN;
  goro_mutex_lock(&c->lock);
  if (c->closed) {
    goro_mutex_unlock(&c->lock);
    return GORO_ECLOSED;
  }
  sudog *sg = waitq_dequeue(&c->recvq);
  if (sg) {
    chan_send_to(c, sg, ep);
    return GORO_OK;
  }
  if (c->qcount < c->dataqsiz) {
    elemcopy(c, chanbuf(c, c->sendx), ep);
    if (++c->sendx == c->dataqsiz)
      c->sendx = 0;
    CHAN_STORE(c->qcount, c->qcount + 1);
    goro_mutex_unlock(&c->lock);
    return GORO_OK;
  }
  if (!block) {
    goro_mutex_unlock(&c->lock);
    return GORO_EAGAIN;
  }
  /* The receiver copies from *ep while we are parked: it stays valid,
  ** being in the caller's frame (or, with pk, wherever the caller put it). */
  if (pk)
    pk->op->kind = OP_SEND_KIND;
  switch (chanpark(c, &c->sendq, (void *)ep, "chan send", pk)) {
    case CHAN_CLOSED: return GORO_ECLOSED;   /* closed while we waited (Go panics) */
    case CHAN_INTERRUPTED: return GORO_EINTR;
    default: return GORO_OK;
  }
}

/*
** Go's chanrecv.  Closed and drained: the zero value, ok = false.  A
** sender waiting: take its value (through the buffer if there is one).
** A value buffered: take it.  Otherwise wait.
*/
static int chanrecv(goro_chan *c, void *ep, bool *ok, bool block,
                    const parkk *pk) {
  bool received;
  if (c == NULL)
    return GORO_EINVAL;   /* Go blocks forever on a nil channel */
  /* The same for a receive from an open, empty channel (a closed one is
  ** never reopened, so "empty, then open" means both at the first look). */
  if (!block && chan_empty(c) && !__atomic_load_n(&c->closed, __ATOMIC_ACQUIRE))
    return GORO_EAGAIN;
  goro_mutex_lock(&c->lock);
  if (c->closed && c->qcount == 0) {
    goro_mutex_unlock(&c->lock);
    elemclear(c, ep);
    received = false;
    goto done;
  }
  sudog *sg = waitq_dequeue(&c->sendq);
  if (sg) {
    chan_recv_from(c, sg, ep);
    received = true;
    goto done;
  }
  if (c->qcount > 0) {
    elemcopy(c, ep, chanbuf(c, c->recvx));
    if (++c->recvx == c->dataqsiz)
      c->recvx = 0;
    CHAN_STORE(c->qcount, c->qcount - 1);
    goro_mutex_unlock(&c->lock);
    received = true;
    goto done;
  }
  if (!block) {
    goro_mutex_unlock(&c->lock);
    return GORO_EAGAIN;
  }
  /* A sender writes the value to *ep, or close zeroes it, before we are
  ** readied. */
  if (pk) {
    pk->op->kind = OP_RECV_KIND;
    pk->op->ok = ok;
  }
  switch (chanpark(c, &c->recvq, ep, "chan receive", pk)) {
    case CHAN_INTERRUPTED: return GORO_EINTR;
    case CHAN_WOKEN: received = true; break;
    default: received = false; break;
  }

done:
  if (ok)
    *ok = received;
  return GORO_OK;
}

int goro_chan_send(goro_chan *c, const void *elem) {
  return chansend(c, elem, true, NULL);
}

int goro_chan_trysend(goro_chan *c, const void *elem) {
  return chansend(c, elem, false, NULL);
}

int goro_chan_recv(goro_chan *c, void *elem, bool *ok) {
  return chanrecv(c, elem, ok, true, NULL);
}

int goro_chan_tryrecv(goro_chan *c, void *elem, bool *ok) {
  return chanrecv(c, elem, ok, false, NULL);
}

int goro_chan_send_k(goro_chan *c, const void *elem, goro_chanop *op,
                     goro_fn k, void *karg) {
  parkk pk = { op, k, karg };
  return chansend(c, elem, true, &pk);
}

int goro_chan_recv_k(goro_chan *c, void *elem, bool *ok, goro_chanop *op,
                     goro_fn k, void *karg) {
  parkk pk = { op, k, karg };
  return chanrecv(c, elem, ok, true, &pk);
}

/* After a goro_park_k in one of the above, on the fresh stack. */
int goro_chanop_finish(goro_chanop *op, int *chosen) {
  int kind = op->kind;
  op->kind = 0;
  switch (kind) {
    case OP_SEND_KIND:
      return chanwoken("chan send") ? GORO_OK : GORO_ECLOSED;
    case OP_RECV_KIND: {
      bool received = chanwoken("chan receive");
      if (op->ok)
        *op->ok = received;
      return GORO_OK;
    }
    case OP_SELECT_KIND:
      return goro_selectop_finish(op, chosen);
    default:
      goro_throw("goro_chanop_finish: no operation pending");
  }
}

/*
** Go's closechan.  Every receiver wakes with the zero value and ok =
** false, every blocked sender with GORO_ECLOSED.  As in Go since 1.17, a
** waiter woken by close finds its own sudog in G.param like any other,
** with success = false: a select then knows which case the close woke.
** The waiters are collected (through G.schedlink: a parked G is on no run
** queue) under the lock and readied after it, as in Go.  waitq_dequeue
** skips the sudogs of selects already won, so no G is collected twice,
** even one whose select waits on both queues of this channel.
*/
int goro_chan_close(goro_chan *c) {
  if (c == NULL)
    return GORO_EINVAL;   /* Go panics: close of nil channel */
  goro_mutex_lock(&c->lock);
  if (c->closed) {
    goro_mutex_unlock(&c->lock);
    return GORO_ECLOSED;
  }
  __atomic_store_n(&c->closed, true, __ATOMIC_RELEASE);
  G *glist = NULL;
  sudog *sg;
  while ((sg = waitq_dequeue(&c->recvq)) != NULL) {
    elemclear(c, sg->elem);
    sg->success = false;
    sg->g->param = sg;
    sg->g->schedlink = glist;
    glist = sg->g;
  }
  while ((sg = waitq_dequeue(&c->sendq)) != NULL) {
    sg->success = false;
    sg->g->param = sg;
    sg->g->schedlink = glist;
    glist = sg->g;
  }
  goro_mutex_unlock(&c->lock);
  while (glist) {
    G *gp = glist;
    glist = gp->schedlink;
    gp->schedlink = NULL;
    goro_goready(gp);
  }
  return GORO_OK;
}
