/*
** chan.h — the channel structure, shared by chan.c and select.c.
*/
#ifndef GORO_CHAN_H
#define GORO_CHAN_H

#include <string.h>

#include "runtime.h"

/* A FIFO of waiting sudogs (Go's waitq). */
typedef struct waitq {
  sudog *first, *last;
} waitq;

struct goro_chan {
  _Atomic int refs;      /* the creator's, and one per sudog on it */
  goro_mutex lock;       /* guards every field below */
  size_t qcount;         /* elements in buf */
  size_t dataqsiz;       /* capacity of buf */
  size_t elemsize;
  size_t sendx, recvx;   /* ring indices into buf */
  bool closed;
  waitq recvq;           /* blocked receivers */
  waitq sendq;           /* blocked senders */
  char *buf;             /* dataqsiz * elemsize bytes, after the struct */
  const char *waitreason;/* its waiters' reason instead of "chan send" and
                         ** "chan receive" (goro_chan_setwaitreason) */
};

void waitq_enqueue(waitq *q, sudog *sg);
sudog *waitq_dequeue(waitq *q);
void waitq_remove(waitq *q, sudog *sg);

/* With c->lock held: hand a value to, or take one from, a waiting sudog,
** unlock c, and ready the waiter.  Return with c unlocked. */
void chan_send_to(goro_chan *c, sudog *sg, const void *ep);
void chan_recv_from(goro_chan *c, sudog *sg, void *ep);

/* goro_chanop.kind of a pending operation. */
enum { OP_SEND_KIND = 1, OP_RECV_KIND, OP_SELECT_KIND };

/* select.c: pass 3 of a select, after its park. */
int goro_selectop_finish(goro_chanop *op, int *chosen);

/*
** qcount, closed and the queues' heads are read without the lock by the
** non-blocking fast paths (Go's empty() and full()), so every write to
** them is an atomic store; under the lock they are read plainly.
*/
#define CHAN_LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define CHAN_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* Go's empty(c) and full(c): could a receive, or a send, not proceed? */
static inline bool chan_empty(goro_chan *c) {
  return c->dataqsiz == 0 ? CHAN_LOAD(c->sendq.first) == NULL
                          : CHAN_LOAD(c->qcount) == 0;
}

static inline bool chan_full(goro_chan *c) {
  return c->dataqsiz == 0 ? CHAN_LOAD(c->recvq.first) == NULL
                          : CHAN_LOAD(c->qcount) == c->dataqsiz;
}

static inline char *chanbuf(goro_chan *c, size_t i) {
  return c->buf + i * c->elemsize;
}

/* Copy one element.  A NULL destination discards it (a receive that
** ignores the value); a NULL source is the zero value (a send of "nothing",
** as on a channel used only to signal). */
static inline void elemcopy(goro_chan *c, void *dst, const void *src) {
  if (dst == NULL || c->elemsize == 0)
    return;
  if (src)
    memcpy(dst, src, c->elemsize);
  else
    memset(dst, 0, c->elemsize);
}

static inline void elemclear(goro_chan *c, void *dst) {
  if (dst && c->elemsize)
    memset(dst, 0, c->elemsize);
}

#endif
