/*
** chan.c — channels, as Go's runtime/chan.go.
**
** A channel is a lock, a ring buffer of `dataqsiz` elements of `elemsize`
** bytes, and two FIFO queues of sudogs: goroutines blocked sending and
** blocked receiving.  Invariants (under the lock):
**   at least one of recvq and sendq is empty (a receiver and a sender
**     would have met);
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

sudog *goro_acquire_sudog(void) {
  M *mp = goro_getm();
  P *pp = mp ? mp->p : NULL;
  sudog *s;
  if (pp && pp->sudogcache) {
    s = pp->sudogcache;
    pp->sudogcache = s->waitlink;
    pp->nsudog--;
  } else {
    s = malloc(sizeof *s);
    if (!s)
      goro_throw("out of memory allocating a sudog");
  }
  memset(s, 0, sizeof *s);
  return s;
}

void goro_release_sudog(sudog *s) {
  M *mp = goro_getm();
  P *pp = mp ? mp->p : NULL;
  if (pp && pp->nsudog < SUDOG_CACHE) {
    s->waitlink = pp->sudogcache;
    pp->sudogcache = s;
    pp->nsudog++;
  } else {
    free(s);
  }
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
    q->first = sg;
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
  if (sg->prev) sg->prev->next = sg->next; else q->first = sg->next;
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

/* }====================================================== */


goro_chan *goro_chan_new(size_t elemsize, size_t cap) {
  if (elemsize > (1u << 16))
    return NULL;   /* Go's limit too: big values belong behind a pointer */
  if (elemsize && cap > (SIZE_MAX - sizeof(goro_chan)) / elemsize)
    return NULL;
  goro_chan *c = calloc(1, sizeof *c + cap * elemsize);
  if (!c)
    return NULL;
  c->elemsize = elemsize;
  c->dataqsiz = cap;
  c->buf = (char *)(c + 1);
  return c;
}

void goro_chan_free(goro_chan *c) {
  if (c == NULL)
    return;
  goro_mutex_lock(&c->lock);
  if (c->recvq.first || c->sendq.first)
    goro_throw("goro_chan_free: channel freed while goroutines wait on it");
  goro_mutex_unlock(&c->lock);
  free(c);
}

size_t goro_chan_len(goro_chan *c) {
  goro_mutex_lock(&c->lock);
  size_t n = c->qcount;
  goro_mutex_unlock(&c->lock);
  return n;
}

size_t goro_chan_cap(goro_chan *c) {
  return c->dataqsiz;
}

/* The park's unlock callback: the channel is unlocked once the waiter is
** safely parked, so a waker that finds its sudog can ready it. */
static bool chanparkcommit(goro_g *g, void *lock) {
  (void)g;
  goro_mutex_unlock(lock);
  return true;
}

void chan_send_to(goro_chan *c, sudog *sg, const void *ep) {
  elemcopy(c, sg->elem, ep);
  G *gp = sg->g;
  sg->success = true;
  gp->param = sg;
  goro_mutex_unlock(&c->lock);
  goro_goready(gp);
}

void chan_recv_from(goro_chan *c, sudog *sg, void *ep) {
  if (c->dataqsiz == 0) {
    elemcopy(c, ep, sg->elem);
  } else {
    /* The buffer is full (a sender waits).  Take its head, and put the
    ** sender's value at the tail, which is the same slot. */
    char *slot = chanbuf(c, c->recvx);
    elemcopy(c, ep, slot);
    elemcopy(c, slot, sg->elem);
    if (++c->recvx == c->dataqsiz)
      c->recvx = 0;
    c->sendx = c->recvx;
  }
  G *gp = sg->g;
  sg->success = true;
  gp->param = sg;
  goro_mutex_unlock(&c->lock);
  goro_goready(gp);
}

static int chansend(goro_chan *c, const void *ep, bool block) {
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
    c->qcount++;
    goro_mutex_unlock(&c->lock);
    return GORO_OK;
  }
  if (!block) {
    goro_mutex_unlock(&c->lock);
    return GORO_EAGAIN;
  }

  G *gp = goro_getg();
  sudog *mysg = goro_acquire_sudog();
  mysg->elem = (void *)ep;
  mysg->g = gp;
  mysg->c = c;
  gp->waiting = mysg;
  gp->param = NULL;
  waitq_enqueue(&c->sendq, mysg);
  goro_gopark(chanparkcommit, &c->lock, "chan send");

  /* Woken by a receiver (success) or by close. */
  bool closed = !mysg->success;
  gp->waiting = NULL;
  gp->param = NULL;
  goro_release_sudog(mysg);
  return closed ? GORO_ECLOSED : GORO_OK;
}

static int chanrecv(goro_chan *c, void *ep, bool *ok, bool block) {
  bool received;
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
    c->qcount--;
    goro_mutex_unlock(&c->lock);
    received = true;
    goto done;
  }
  if (!block) {
    goro_mutex_unlock(&c->lock);
    return GORO_EAGAIN;
  }

  G *gp = goro_getg();
  sudog *mysg = goro_acquire_sudog();
  mysg->elem = ep;
  mysg->g = gp;
  mysg->c = c;
  gp->waiting = mysg;
  gp->param = NULL;
  waitq_enqueue(&c->recvq, mysg);
  goro_gopark(chanparkcommit, &c->lock, "chan receive");

  /* Woken by a sender (the value is in *ep) or by close (*ep zeroed). */
  received = mysg->success;
  gp->waiting = NULL;
  gp->param = NULL;
  goro_release_sudog(mysg);

done:
  if (ok)
    *ok = received;
  return GORO_OK;
}

int goro_chan_send(goro_chan *c, const void *elem) {
  return chansend(c, elem, true);
}

int goro_chan_trysend(goro_chan *c, const void *elem) {
  return chansend(c, elem, false);
}

int goro_chan_recv(goro_chan *c, void *elem, bool *ok) {
  return chanrecv(c, elem, ok, true);
}

int goro_chan_tryrecv(goro_chan *c, void *elem, bool *ok) {
  return chanrecv(c, elem, ok, false);
}

/*
** Close: every receiver wakes with the zero value and ok = false, every
** blocked sender with GORO_ECLOSED.  The waiters are collected under the
** lock and readied after it, as in Go (a readied G may run at once on
** another M and want the lock).
*/
int goro_chan_close(goro_chan *c) {
  goro_mutex_lock(&c->lock);
  if (c->closed) {
    goro_mutex_unlock(&c->lock);
    return GORO_ECLOSED;
  }
  c->closed = true;
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
