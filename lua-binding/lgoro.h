/*
** lgoro.h — the Lua binding's shared definitions.
**
** One Lua state ("universe") has one token (cruntime/token.c): only its
** owner runs Lua code.  A Lua goroutine is a G bound to that token whose
** code is a Lua thread; it starts and continues by lua_resume (lg_run).
** When it must block it takes one of three paths (lblock.c):
**
**   yield    from its own Lua thread where Lua can yield: lua_yieldk back
**            to lg_run, which performs the operation in its continuation
**            form (goro_chan_recv_k, ...).  Parked so, it keeps no native
**            stack, only its Lua thread.
**   native   anywhere else (a nested coroutine, a C boundary such as a
**            table.sort comparator): the blocking C call parks the G with
**            its stack, which later resumes on whatever M.
**   main     on the host's main thread: release the token, block the
**            thread, take the token back.
*/
#ifndef LGORO_H
#define LGORO_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include <lua.h>
#include <lauxlib.h>

#include "goro.h"

#define LGORO_VERSION "goro 0.1.0"

#define LGORO_CHAN "goro.chan"
#define LGORO_WAITGROUP "goro.waitgroup"
#define LGORO_MUTEX "goro.mutex"

/*
** A Lua value in a channel: 16 bytes.  Nil, booleans, numbers, light
** userdata and strings of up to 15 bytes travel inline; everything else is
** a registry reference, taken by the sender and released by the receiver
** (or by the channel's __gc, for values still buffered).  All zero bytes
** is nil: what a receive on a closed channel gets.
*/
typedef struct lvalue {
  union {
    lua_Integer i;
    lua_Number n;
    void *p;
    int ref;
  } u;
  char more[7];             /* with u: 15 bytes of a short string */
  uint8_t tag;
} lvalue;

enum {
  LV_NIL, LV_FALSE, LV_TRUE, LV_INT, LV_NUM, LV_LIGHT, LV_REF,
  LV_STR = 16               /* LV_STR + length, for length 0..15 */
};

typedef struct Universe Universe;
typedef struct LG LG;

typedef struct WaitAll WaitAll;

/* The pending blocking operation of a goroutine or the main thread. */
enum {
  OP_NONE, OP_YIELD, OP_SEND, OP_RECV, OP_SELECT, OP_SLEEP, OP_FDWAIT
};

/* Push the results of a finished operation (or raise its error). */
typedef int (*lg_results)(lua_State *L, LG *lg, int rc);

/* A select's cases and their values, sized for n cases. */
typedef struct selbuf {
  int cap;
  bool busy;                /* in use by a select in progress */
  goro_select_case *cases;
  lvalue *vals;
} selbuf;

struct LG {
  Universe *U;
  lua_State *L;             /* its own Lua thread (the main LG: U->L) */
  lua_State *running;       /* the Lua thread running now: L or a nested
                            ** coroutine; the preemption signal hooks it */
  int ref;                  /* registry anchor of L */
  int64_t id;
  int nargs;                /* arguments of the first resume */
  bool fresh;               /* not run yet: lgoro_start_guard on top */
  lua_State *refused;       /* a goroutine's thread that refused this one's
                            ** resume (lblock.c, coroutine.*) */

  /* the pending operation, for the yield path and the results */
  int op;
  int rc;
  lg_results results;
  goro_chan *c;
  lvalue val;
  bool ok;
  int chosen;
  goro_select_case *cases;
  lvalue *vals;
  int ncases;
  bool block;
  int64_t ns;               /* OP_SLEEP */
  goro_fd *fd;              /* OP_FDWAIT: fd, events, deadline */
  int events;
  int64_t deadline;
  size_t netdone;           /* bytes written so far (conn:write) */
  WaitAll *waitall;         /* go.wait: the round it waits in */
  union {                   /* one operation at a time */
    goro_chanop cop;
    goro_pollop pop;
  };
  selbuf sel;               /* cached select buffers */

  _Atomic int preempt_pending;  /* the main LG: sysmon asked (lblock.c) */

  /* the count hook a preemption displaced, put back by ours */
  lua_Hook savedhook;
  int savedmask, savedcount;

  LG *prev, *next;          /* the universe's live goroutines */
};

struct Universe {
  lua_State *L;             /* the host's main thread */
  goro_token *token;
  LG main;                  /* the main thread's state */
  pthread_t mainthread;
  Universe *nextopen;       /* the open universes (lblock.c, preemption) */
  goro_g *mainwaiter;       /* its waiter G, for its state in a dump */
  int onerror;              /* registry ref of go.onerror's function */
  int threads;              /* registry ref: weak set of goroutine threads */
  int nprocs;               /* requested Ps; 0: default */
  LG *all;                  /* live goroutines */
  LG *free;                 /* finished ones, kept with their Lua thread */
  int nfree;
  goro_chan **orphans;      /* channels collected while waited on */
  int norphans, maxorphans;
  goro_chan *never;         /* received from by select{} : never sent to */
  int nlive;                /* goroutines spawned and not ended */
  int nwaitall;             /* of them, those waiting in go.wait */
  WaitAll *waitall;         /* the round go.wait callers wait in now */
  WaitAll *waitrounds;      /* every round not freed yet */
  bool joined;              /* counted among the runtime's users */
  bool closing;
};

/* lgoro.c */
Universe *lgoro_universe(lua_State *L);   /* the upvalue of every function */
LG *lgoro_current(lua_State *L);
void lgoro_ensure_runtime(lua_State *L, Universe *U);
void lgoro_orphan(Universe *U, goro_chan *c);
void lgoro_waitall_free(Universe *U);

/* lblock.c */
int lgoro_block(lua_State *L, LG *lg, int op, lg_results results);
bool lgoro_yieldable(lua_State *L, LG *lg);
bool lgoro_closing(lua_State *L, Universe *U);
int lgoro_block_now(lua_State *L, LG *lg, int op);
void lgoro_without_token(lua_State *L, LG *lg, void (*fn)(void *), void *arg);
void lgoro_run_op_k(LG *lg);              /* lg_run: after a yield */
bool lgoro_finish_op_k(LG *lg);           /* lg_run: after a restart */
void lgoro_preempt_install(Universe *U);
void lgoro_preempt_remove(Universe *U);
void lgoro_interrupt_install(Universe *U);
void lgoro_interrupt_remove(Universe *U);
void lgoro_open_coroutine(lua_State *L, Universe *U);
int lgoro_start_guard(lua_State *L);
int lgoro_unguard(lua_State *L, int nargs);
void lgoro_goroutine_ended(LG *lg);

/* A channel object; `timer` sends to it (go.after, go.timer, go.ticker). */
typedef struct LChan {
  goro_chan *c;
  goro_timer *timer;
} LChan;

/* lchan.c */
LChan *lgoro_newchan(lua_State *L, size_t cap);   /* pushed */
void lvalue_from(lua_State *L, int idx, lvalue *v);
void lvalue_push(lua_State *L, lvalue *v);     /* and release it */
void lvalue_release(lua_State *L, lvalue *v);
void lgoro_open_chan(lua_State *L, Universe *U);
goro_chan *lgoro_checkchan(lua_State *L, int idx);
void lgoro_chan_dispose(Universe *U, goro_chan *c);   /* free or orphan */

/* ltime.c */
void lgoro_open_time(lua_State *L, Universe *U);

/* lnet.c */
void lgoro_open_net(lua_State *L, Universe *U);

/* lsync.c */
void lgoro_open_sync(lua_State *L, Universe *U);

#endif
