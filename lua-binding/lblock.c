/*
** lblock.c — how Lua code blocks (the three paths of lgoro.h), how a Lua
** goroutine or the main thread is preempted, and the coroutine library
** wrapped so that both know which Lua thread is running.
**
** Nothing blocks inside a finaliser (Lua's collector is stopped for every
** goroutine while one runs) nor while the state closes: that raises.
** Preemption is sysmon's request, then SIGURG to the thread, whose handler
** arms a count hook in the Lua thread that thread runs while it owns the
** token; SIGURGs that carry no request of ours go to the host's handler.
*/
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "lgoro.h"

extern void (*lgoro_run_fn)(void *);

static bool interrupt_pending(lua_State *L);


/*
** {======================================================
** Blocking
** =======================================================
*/

/* The operation of lg, in its blocking form: the native and main paths. */
static int run_blocking(LG *lg) {
  switch (lg->op) {
    case OP_YIELD:
      goro_yield();   /* the main thread's yield is its token hand-off */
      return GORO_OK;
    case OP_SEND:
      return goro_chan_send(lg->c, &lg->val);
    case OP_RECV:
      return goro_chan_recv(lg->c, &lg->val, &lg->ok);
    case OP_SELECT:
      return goro_select(lg->cases, lg->ncases, true, &lg->chosen);
    case OP_SLEEP:
      return goro_sleep(lg->ns);
    case OP_FDWAIT:
      if (lg == &lg->U->main)
        return goro_fd_wait_prepared(&lg->pop);   /* see lgoro_block_now */
      return goro_fd_wait(lg->fd, lg->events, lg->deadline);
    default:
      return GORO_EINVAL;
  }
}

/*
** Lua stops its collector while a finaliser runs, for every goroutine: a
** finaliser that blocked would stop collection for as long as it waits.
** So blocking in a finaliser raises instead (Lua turns the error into a
** warning).  Lua 5.4.4 says when one runs, in O(1): lua_gc answers -1 to
** any request while a finaliser runs, including those lua_close runs.
** Older 5.4 releases cannot tell; there only the close is caught, by
** closing_walk.
*/

/* lua_close unwinds the main thread and then runs every finaliser straight
** from its base: a __gc metamethod with no Lua function below it.  While
** Lua runs normally the main chunk is always below.  A walk of the whole
** stack: only for a finaliser, or an old Lua. */
static bool closing_walk(lua_State *L) {
  lua_Debug ar;
  int level = 0;
  while (lua_getstack(L, level + 1, &ar))
    level++;
  if (!lua_getstack(L, level, &ar) || !lua_getinfo(L, "n", &ar))
    return false;
  return ar.name && ar.namewhat && strcmp(ar.namewhat, "metamethod") == 0 &&
         strcmp(ar.name, "__gc") == 0;
}

static bool in_finaliser(lua_State *L) {
#if LUA_VERSION_RELEASE_NUM >= 50404
  return lua_gc(L, LUA_GCISRUNNING) < 0;
#else
  return closing_walk(L);
#endif
}

/*
** Does the Lua state close (lua_close)?  From the universe's own __gc on,
** U->closing says so; before it, lua_close runs the other finalisers from
** the main thread's base, with no frame below the __gc, which a
** finaliser run by an ordinary collection never is (the main chunk, or a
** goroutine's function, is below it).  Objects made then are never
** finalised (Lua marks none for finalisation while it closes), so goro
** makes none that hold resources of its own: the constructors ask here.
*/
bool lgoro_closing(lua_State *L, Universe *U) {
  return U->closing || (L == U->L && in_finaliser(L) && closing_walk(L));
}

/* Why lg, running L, may not block now, or NULL.  Goroutines must not run
** while lua_close frees the state, so the main thread then keeps its
** token: that one gets its own message. */
static const char *cannot_block(lua_State *L, LG *lg) {
  bool ismain = lg == &lg->U->main;
  if (ismain && lg->U->closing)
    return "goro: cannot block while the Lua state closes";
  if (!in_finaliser(L))
    return NULL;
  if (ismain && closing_walk(L))
    return "goro: cannot block while the Lua state closes";
  return "goro: cannot block in a finaliser";
}

/* Refuse lg's pending operation: release the values it holds, then raise
** msg. */
static int refuse(lua_State *L, LG *lg, const char *msg) {
  if (lg->op == OP_SEND) {
    lvalue_release(L, &lg->val);
  } else if (lg->op == OP_SELECT) {
    for (int i = 0; i < lg->ncases; i++)
      if (lg->cases[i].c && lg->cases[i].dir == GORO_SELECT_SEND)
        lvalue_release(L, &lg->vals[i]);
    if (lg->cases == lg->sel.cases)
      lg->sel.busy = false;
  }
  lg->op = OP_NONE;
  return luaL_error(L, "%s", msg);
}

/* The continuation of a goroutine's yield: lg_run did the operation.
** Resumed by anyone else (the library's coroutine.resume, saved before
** require), it drops that resume's arguments and yields again: the
** goroutine stays parked (see coroutine.* below).  ctx: L's top. */
static int lg_continue(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  LG *lg = goro_getlocal();
  if (lg == NULL || lg->L != L) {
    if (lg) lg->refused = L;   /* for auxresume, in coroutine.* below */
    lua_settop(L, (int)ctx);
    return lua_yieldk(L, 0, ctx, lg_continue);
  }
  lg->op = OP_NONE;
  return lg->results(L, lg, lg->rc);
}

/*
** Block lg, running Lua thread L, in operation `op` (its operands already
** in lg); `results` pushes what the Lua function returns.
*/
int lgoro_block(lua_State *L, LG *lg, int op, lg_results results) {
  Universe *U = lg->U;
  lg->op = op;
  lg->results = results;
  const char *why = cannot_block(L, lg);
  if (why) {
    if (op == OP_YIELD) {   /* nothing to wait for: a yield can be skipped */
      lg->op = OP_NONE;
      return results(L, lg, GORO_OK);
    }
    return refuse(L, lg, why);
  }
  if (lg == &U->main) {
    lgoro_ensure_runtime(L, U);
    goro_token_release(U->token);
    do
      lg->rc = run_blocking(lg);
    while (lg->rc == GORO_EINTR && !interrupt_pending(L));
    goro_token_acquire(U->token);
    if (lg->rc == GORO_EINTR) {
      lg->op = OP_NONE;
      return 0;   /* the host's hook takes it from here (lua.c: "interrupted!") */
    }
  } else if (L == lg->L && lua_isyieldable(L)) {
    return lua_yieldk(L, 0, lua_gettop(L), lg_continue);
  } else {
    lg->rc = run_blocking(lg);
  }
  lg->op = OP_NONE;
  return results(L, lg, lg->rc);
}

/* Can lg, running L, take the yield path? */
bool lgoro_yieldable(lua_State *L, LG *lg) {
  return lg != &lg->U->main && L == lg->L && lua_isyieldable(L);
}

/* Block now in lg->op, on the native or main path, and return its result
** (for loops that retry a syscall after each wait). */
int lgoro_block_now(lua_State *L, LG *lg, int op) {
  Universe *U = lg->U;
  lg->op = op;
  int rc;
  const char *why = cannot_block(L, lg);
  if (why)
    return refuse(L, lg, why);
  if (lg == &U->main) {
    lgoro_ensure_runtime(L, U);
    /* The fd's reference is taken while the token keeps the socket open:
    ** without it a goroutine could close it, and the poller free it, in
    ** the moment between the release and the wait. */
    if (op == OP_FDWAIT &&
        !goro_fd_wait_prepare(lg->fd, lg->events, lg->deadline, &lg->pop)) {
      lg->op = OP_NONE;
      return GORO_ECLOSED;
    }
    goro_token_release(U->token);
    rc = run_blocking(lg);
    while (rc == GORO_EINTR && !interrupt_pending(L)) {
      if (op == OP_FDWAIT &&
          !goro_fd_wait_prepare(lg->fd, lg->events, lg->deadline, &lg->pop)) {
        rc = GORO_ECLOSED;
        break;
      }
      rc = run_blocking(lg);
    }
    goro_token_acquire(U->token);
  } else {
    rc = run_blocking(lg);
  }
  lg->op = OP_NONE;
  return rc;
}

/* Run fn(arg), which blocks its thread without Lua (DNS), with the token
** left to the others if this is the main thread.  A goroutine parks in fn
** like any goroutine, and its token goes on at the switch. */
void lgoro_without_token(lua_State *L, LG *lg, void (*fn)(void *), void *arg) {
  Universe *U = lg->U;
  const char *why = cannot_block(L, lg);
  if (why)
    luaL_error(L, "%s", why);
  if (lg == &U->main) {
    lgoro_ensure_runtime(L, U);
    goro_token_release(U->token);
    fn(arg);
    goro_token_acquire(U->token);
  } else {
    fn(arg);
  }
}

/*
** In lg_run, after the goroutine yielded for lg->op: do it.  A channel
** operation that must wait parks with goro_park_k and never returns; the
** G restarts in lg_run, which calls lgoro_finish_op_k.
*/
void lgoro_run_op_k(LG *lg) {
  void (*k)(void *) = lgoro_run_fn;
  switch (lg->op) {
    case OP_SEND:
      lg->rc = goro_chan_send_k(lg->c, &lg->val, &lg->cop, k, lg);
      break;
    case OP_RECV:
      lg->rc = goro_chan_recv_k(lg->c, &lg->val, &lg->ok, &lg->cop, k, lg);
      break;
    case OP_SELECT:
      lg->rc = goro_select_k(lg->cases, lg->ncases, true, &lg->chosen,
                             &lg->cop, k, lg);
      break;
    case OP_SLEEP:
      lg->rc = goro_sleep_k(lg->ns, &lg->pop, k, lg);
      break;
    case OP_FDWAIT:
      lg->rc = goro_fd_wait_k(lg->fd, lg->events, lg->deadline, &lg->pop, k, lg);
      break;
    case OP_YIELD:   /* go.yield: let the others run */
      goro_yield();
      lg->rc = GORO_OK;
      break;
    default:
      /* A yield goro did not ask for (the library's coroutine.yield saved
      ** before require, another C library): nobody may resume the thread
      ** meanwhile (see coroutine.* below), so lg_run resumes it at once. */
      lg->rc = GORO_OK;
      lg->op = OP_NONE;
      break;
  }
}

/* In lg_run, first thing: a G restarted after goro_park_k finishes its
** operation; the continuation then pushes the results. */
bool lgoro_finish_op_k(LG *lg) {
  switch (lg->op) {
    case OP_SEND: case OP_RECV: case OP_SELECT:
      if (lg->cop.kind == 0)
        return false;
      lg->rc = goro_chanop_finish(&lg->cop, &lg->chosen);
      return true;
    case OP_SLEEP: case OP_FDWAIT:
      if (lg->pop.kind == 0)
        return false;
      lg->rc = goro_pollop_finish(&lg->pop);
      return true;
    default:
      return false;
  }
}

/* }====================================================== */


/*
** {======================================================
** Preemption: sysmon -> SIGURG -> a count hook in the running Lua thread
** =======================================================
*/

/* The handler is the process's, installed while any universe is open;
** the main LG of the universe opened on this thread, if any, is the
** thread's own (initial-exec TLS: safe to read in a signal handler). */
static pthread_mutex_t urg_lock = PTHREAD_MUTEX_INITIALIZER;
static int urg_users;
static struct sigaction oldurg;
static bool urg_installed;
static __thread LG *host_lg;

/*
** SIGURG is shared with the host (a Go c-shared library preempts its own
** threads with it, from the same process, like us).  The handler takes a
** signal as ours only when a request of ours is pending for the thread it
** lands on, and passes every other one to the handler it displaced:
**
**   a goroutine   sysmon set the G's preempt flag before the signal; the
**                 request is pending until the hook is armed for it.
**   the main      sysmon reports a foreign owner with goid 0: on_preempt
**   thread        sets preempt_pending in the main LG of that thread's
**                 universe before the signal, and the handler takes it
**                 (one signal, one request).
*/
static Universe *open_universes;   /* under urg_lock, by nextopen */

/* Set on a thread while preempt_hook puts the displaced hook back: a
** signal landing then must not arm again, or its hook and the one being
** restored would mix (and leave the thread without preemption).  The
** thread is about to get off the CPU anyway. */
static __thread volatile sig_atomic_t restoring_hook;

/*
** The count hook: first thing the interrupted Lua thread runs.  It puts
** back the hook it displaced, then gets off the CPU: a goroutine yields
** (with its stack) to the global queue; the main thread hands the
** token to the goroutines waiting for it and queues for it again.
*/
static void preempt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  LG *lg = goro_getlocal();
  if (lg == NULL)
    return;
  restoring_hook = 1;
  atomic_signal_fence(memory_order_seq_cst);
  lua_sethook(L, lg->savedhook, lg->savedmask, lg->savedcount);
  lg->savedhook = NULL;
  atomic_signal_fence(memory_order_seq_cst);
  restoring_hook = 0;
  /* Not inside a finaliser (Lua runs no hook in one, but may in a
  ** coroutine it resumes): the others would run while the collector is
  ** stopped, and could not block meanwhile.  This also keeps the main
  ** thread's token to the end of a close. */
  if (in_finaliser(L))
    return;
  Universe *U = lg->U;
  if (lg == &U->main) {
    if (goro_token_owned(U->token) && goro_token_contended(U->token) &&
        !U->closing) {
      goro_token_release(U->token);
      goro_token_acquire(U->token);
    }
  } else {
    /* Not a yield from the hook even where it could: a thread that yielded
    ** in a hook resumes straight into its Lua code, whoever resumes it
    ** (see coroutine.* below).  A preempted goroutine keeps its stack
    ** until it runs again, as in Go. */
    goro_yield();
  }
}

/*
** In the signal handler: is a preemption request of ours pending for this
** thread?  If so, take it, and arm the hook in the Lua thread this thread
** runs, when that is ours to touch: the thread runs it *and* owns the
** token now (a signal may land just after the main thread let the token
** go, or while a goroutine waits without it: another thread may be
** running Lua then).  Only async-signal-safe work: lua_sethook is made
** for this (lua.c's Ctrl-C does the same).
*/
static bool take_preempt_request(void) {
  LG *lg;
  if (goro_id() != 0) {
    if (!goro_preempt_requested())
      return false;
    lg = goro_getlocal();
    if (lg == NULL)
      return true;   /* a goroutine that runs no Lua: nothing to arm */
    if (lg->running && lua_gethook(lg->running) == preempt_hook)
      return false;  /* taken already: this signal is someone else's */
  } else {
    lg = host_lg;
    if (lg == NULL || !atomic_exchange(&lg->preempt_pending, 0))
      return false;
  }
  Universe *U = lg->U;
  if (U->closing || restoring_hook || lg->running == NULL ||
      !goro_token_owned(U->token))
    return true;
  lua_State *L = lg->running;
  lua_Hook h = lua_gethook(L);
  if (h == preempt_hook)
    return true;
  lg->savedhook = h;
  lg->savedmask = lua_gethookmask(L);
  lg->savedcount = lua_gethookcount(L);
  lua_sethook(L, preempt_hook, LUA_MASKCOUNT, 1);
  return true;
}

static void on_sigurg(int sig, siginfo_t *si, void *uc) {
  int saved = errno;
  if (!take_preempt_request()) {
    if (oldurg.sa_flags & SA_SIGINFO) {
      if (oldurg.sa_sigaction)
        oldurg.sa_sigaction(sig, si, uc);
    } else if (oldurg.sa_handler != SIG_DFL && oldurg.sa_handler != SIG_IGN) {
      oldurg.sa_handler(sig);
    }
  }
  errno = saved;
}

/* sysmon's hook: interrupt the thread (an M, or the main thread owning
** the token), its request marked first so that the handler knows the
** signal for ours.  SIGURG, as Go since 1.14. */
static void on_preempt(pthread_t thread, int64_t goid, void *ud) {
  (void)ud;
  if (goid == 0) {
    pthread_mutex_lock(&urg_lock);
    for (Universe *U = open_universes; U; U = U->nextopen)
      if (pthread_equal(U->mainthread, thread))
        atomic_store(&U->main.preempt_pending, 1);
    pthread_mutex_unlock(&urg_lock);
  }
  pthread_kill(thread, SIGURG);
}

void lgoro_preempt_install(Universe *U) {
  host_lg = &U->main;
  pthread_mutex_lock(&urg_lock);
  U->nextopen = open_universes;
  open_universes = U;
  if (urg_users++ == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigurg;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGURG, &sa, &oldurg) == 0)
      urg_installed = true;
  }
  goro_set_preempt_hook(on_preempt, NULL);
  pthread_mutex_unlock(&urg_lock);
}

void lgoro_preempt_remove(Universe *U) {
  if (host_lg == &U->main)
    host_lg = NULL;
  pthread_mutex_lock(&urg_lock);
  for (Universe **p = &open_universes; *p; p = &(*p)->nextopen)
    if (*p == U) {
      *p = U->nextopen;
      break;
    }
  if (--urg_users == 0) {
    goro_set_preempt_hook(NULL, NULL);
    if (urg_installed) {
      sigaction(SIGURG, &oldurg, NULL);
      urg_installed = false;
    }
  }
  pthread_mutex_unlock(&urg_lock);
}

/* }====================================================== */


/*
** {======================================================
** Interrupts: SIGINT while the main thread waits in goro
** =======================================================
*/

/*
** lua.c stops a running script on SIGINT with a count hook that raises
** "interrupted!"; a hook cannot act while the main thread sleeps in goro,
** so goro chains a handler of its own in front of the host's: it runs
** the host's handler, then interrupts this thread's wait (goro_interrupt,
** async-signal-safe).  The blocking call then returns to Lua if the host
** left a hook to act (interrupt_pending), or waits again if it did not.
** Installed only over a host handler (lua.c installs one around the
** script): with SIG_DFL, SIGINT ends the process as it always did.  The
** host may put its own back meanwhile (lua.c resets SIGINT to SIG_DFL in
** its handler, so that a second Ctrl-C kills): goro restores the host's
** only where its own is still installed.
*/
static pthread_mutex_t int_lock = PTHREAD_MUTEX_INITIALIZER;
static int int_users;
static struct sigaction oldint;
static bool int_installed;
static __thread goro_g *host_waiter;   /* this thread's, while a universe is open */

static bool interrupt_pending(lua_State *L) {
  lua_Hook h = lua_gethook(L);
  return h != NULL && h != preempt_hook;
}

static void on_sigint(int sig, siginfo_t *si, void *uc) {
  int saved = errno;
  if (oldint.sa_flags & SA_SIGINFO)
    oldint.sa_sigaction(sig, si, uc);
  else
    oldint.sa_handler(sig);
  goro_interrupt(host_waiter);
  errno = saved;
}

void lgoro_interrupt_install(Universe *U) {
  (void)U;
  host_waiter = goro_self();
  pthread_mutex_lock(&int_lock);
  if (int_users++ == 0) {
    struct sigaction cur;
    if (sigaction(SIGINT, NULL, &cur) == 0 &&
        ((cur.sa_flags & SA_SIGINFO) ? cur.sa_sigaction != NULL
                                     : (cur.sa_handler != SIG_DFL &&
                                        cur.sa_handler != SIG_IGN))) {
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_sigaction = on_sigint;
      sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
      sigemptyset(&sa.sa_mask);
      oldint = cur;
      int_installed = sigaction(SIGINT, &sa, NULL) == 0;
    }
  }
  pthread_mutex_unlock(&int_lock);
}

void lgoro_interrupt_remove(Universe *U) {
  (void)U;
  host_waiter = NULL;
  pthread_mutex_lock(&int_lock);
  if (--int_users == 0 && int_installed) {
    struct sigaction cur;
    if (sigaction(SIGINT, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
        cur.sa_sigaction == on_sigint)
      sigaction(SIGINT, &oldint, NULL);
    int_installed = false;
  }
  pthread_mutex_unlock(&int_lock);
}

/* }====================================================== */


/*
** {======================================================
** coroutine.*: Lua 5.4's library, for goroutines
** =======================================================
*/

/*
** The wrappers give Lua 5.4's results and messages (lcorolib.c) with two
** additions.  They track the running Lua thread (lg->running) for the
** preemption signal.  And they know goroutines' threads: from Lua's point
** of view a goroutine's thread is a coroutine that is always active, like
** the main thread: "running" in its own goroutine, "normal" seen from
** anywhere else (parked, runnable, or about to start), "dead" once
** finished.  So resuming one gives Lua's "cannot resume non-suspended
** coroutine", closing one "cannot close a running/normal coroutine", and
** none is yieldable.
**
** A goroutine's thread that is running, or normal (under a nested
** coroutine, or preempted), is refused by Lua's own rules.  One parked on
** the yield path, or not started yet, has status LUA_YIELD, or the status
** of a coroutine about to start: the library's own functions, saved by a
** script before require "goro", would resume it, on another goroutine.  So
** no goroutine's thread is ever left resumable in a way that runs its
** code: its start is guarded (lgoro_start_guard), its blocking yields are
** continued by lg_continue, and both yield again at once unless its own
** goroutine resumes it, noting the refusal in the resumer's LG; and a
** preemption does not yield from the hook (a hook's yield resumes straight
** into the Lua code) but keeps the goroutine's stack.  auxresume turns a
** refusal into Lua's message; status, close and isyieldable tell such a
** thread by where it stopped (is_goroutine_thread).
*/

static int co_yield(lua_State *L);

/*
** Is co a goroutine's thread?  Those that Lua code got from the wrapped
** coroutine.running are in U->threads (so the set costs nothing to
** goroutines that never ask).  Others (from the library's own running,
** saved before require) are told by where they stopped: a goroutine's
** thread is suspended (LUA_YIELD) only inside one of goro's blocking
** functions (their upvalue 1 is U) or in the start guard, and a fresh one
** has the guard on top.  A suspended coroutine's yield is co_yield, also
** goro's, so that one is not.  Running or normal threads need no telling:
** Lua's own rules refuse them.
*/
static bool is_goroutine_thread(lua_State *L, Universe *U, lua_State *co) {
  if (co == U->L)
    return false;
  int st = lua_status(co);
  lua_Debug ar;
  if (st == LUA_OK && !lua_getstack(co, 0, &ar))   /* not started, or dead */
    return lua_gettop(co) > 0 && lua_tocfunction(co, -1) == lgoro_start_guard;
  if (st == LUA_YIELD && lua_getstack(co, 0, &ar) && lua_checkstack(co, 1) &&
      lua_getinfo(co, "f", &ar)) {
    lua_xmove(co, L, 1);   /* the function it yielded in */
    lua_CFunction f = lua_tocfunction(L, -1);
    bool yes = f == lgoro_start_guard;
    if (!yes && f != NULL && f != co_yield && lua_getupvalue(L, -1, 1) != NULL) {
      yes = lua_touserdata(L, -1) == (void *)U;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (yes)
      return true;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, U->threads);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  bool yes = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return yes;
}

/*
** The body of a goroutine's thread between go() and its first run, on
** top of its function and arguments: lua_resume calls the top value, so
** whoever resumes the thread then calls this and nothing else.  It yields
** back (lg_run brings it back with lgoro_unguard).
*/
static int start_guard_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  LG *lg = goro_getlocal();
  if (lg != NULL && lg->L == L)
    return 0;                  /* lgoro_unguard: leave the way to fn */
  if (lg) lg->refused = L;     /* for auxresume */
  lua_settop(L, 0);            /* the arguments of that resume */
  return lua_yieldk(L, 0, 0, start_guard_k);
}

int lgoro_start_guard(lua_State *L) {
  return start_guard_k(L, LUA_OK, 0);
}

static int closed_before_start(lua_State *L) {
  return luaL_error(L, "goro: the goroutine's thread was closed before it ran");
}

/*
** lg_run, first run of L: take the guard away, and return how many
** arguments fn gets.  If someone resumed the thread meanwhile, the guard
** yielded: resume it once more to end it.  If someone closed the thread
** (the library's coroutine.close), fn is gone: raise that instead.
*/
int lgoro_unguard(lua_State *L, int nargs) {
  if (lua_status(L) == LUA_YIELD) {
    /* The guard returns nothing: what lua_resume counts as its results
    ** is fn and its arguments, left below it. */
    int nres;
    if (lua_resume(L, NULL, 0, &nres) != LUA_OK)
      lua_settop(L, 0);
  } else if (lua_gettop(L) > 0 && lua_tocfunction(L, -1) == lgoro_start_guard) {
    lua_pop(L, 1);
  }
  if (lua_status(L) != LUA_OK || lua_gettop(L) != nargs + 1) {
    lua_resetthread(L);
    lua_settop(L, 0);
    lua_pushcfunction(L, closed_before_start);
    return 0;
  }
  return nargs;
}

enum { CO_RUNNING, CO_DEAD, CO_SUSPENDED, CO_NORMAL };
static const char *const statname[] =
  {"running", "dead", "suspended", "normal"};

/* Status of co as coroutine.status reports it (lcorolib's auxstatus),
** goroutines' threads being always active until they end. */
static int costatus(lua_State *L, Universe *U, lua_State *co) {
  if (L == co)
    return CO_RUNNING;
  bool goroutine = is_goroutine_thread(L, U, co);
  switch (lua_status(co)) {
    case LUA_YIELD:
      return goroutine ? CO_NORMAL : CO_SUSPENDED;
    case LUA_OK: {
      lua_Debug ar;
      if (lua_getstack(co, 0, &ar))
        return CO_NORMAL;
      if (lua_gettop(co) == 0)
        return CO_DEAD;
      return goroutine ? CO_NORMAL : CO_SUSPENDED;   /* about to start */
    }
    default:
      return CO_DEAD;
  }
}

static lua_State *getco(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "thread");
  return co;
}

/*
** Resume co with narg values from L: lcorolib's auxresume, with the
** calling goroutine's `running` pointing at co meanwhile, so that a
** preemption signal hooks the thread that really runs.  A goroutine's
** thread that is running or normal is refused by lua_resume itself; one
** parked or about to start is "resumed" into a guard that yields again at
** once (lg_continue, start_guard_k), which says so: Lua's message then.
** That costs a resume of a plain coroutine nothing.
*/
static int auxresume(lua_State *L, Universe *U, lua_State *co, int narg) {
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  LG *self = goro_getlocal();   /* the caller's, whatever its universe */
  LG *lg = self && self->U == U ? self : NULL;
  lua_State *was = lg ? lg->running : NULL;
  if (lg && co != L) lg->running = co;
  if (self) self->refused = NULL;
  int nres;
  int status = lua_resume(co, L, narg, &nres);
  if (lg) lg->running = was;
  if (status == LUA_YIELD && self && self->refused == co) {
    self->refused = NULL;
    lua_pop(co, nres);
    lua_pushliteral(L, "cannot resume non-suspended coroutine");
    return -1;
  }
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

static int co_resume(lua_State *L) {
  Universe *U = lgoro_universe(L);
  lua_State *co = getco(L);
  int r = auxresume(L, U, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int auxwrap(lua_State *L) {
  Universe *U = lgoro_universe(L);
  lua_State *co = lua_tothread(L, lua_upvalueindex(2));
  int r = auxresume(L, U, co, lua_gettop(L));
  if (r < 0) {
    int st = lua_status(co);
    if (st != LUA_OK && st != LUA_YIELD) {   /* error in the coroutine */
      st = lua_resetthread(co);              /* close its variables */
      lua_xmove(co, L, 1);
      lua_remove(L, -2);
    }
    if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);                      /* add position info */
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1));   /* the universe */
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, auxwrap, 2);
  return 1;
}

/* A goroutine's own thread has nothing to yield to: as the main thread. */
static int co_yield(lua_State *L) {
  LG *lg = goro_getlocal();
  if (lg && lg->U == lgoro_universe(L) && lg->L == L && lg != &lg->U->main)
    return luaL_error(L, "attempt to yield from outside a coroutine");
  return lua_yield(L, lua_gettop(L));
}

static int co_isyieldable(lua_State *L) {
  Universe *U = lgoro_universe(L);
  lua_State *co = lua_isnone(L, 1) ? L : getco(L);
  LG *lg = goro_getlocal();
  bool own = lg && lg->U == U && lg->L == co && lg != &U->main;
  lua_pushboolean(L, lua_isyieldable(co) && !own &&
                     !is_goroutine_thread(L, U, co));
  return 1;
}

static int co_status(lua_State *L) {
  Universe *U = lgoro_universe(L);
  lua_State *co = getco(L);
  lua_pushstring(L, statname[costatus(L, U, co)]);
  return 1;
}

/* coroutine.running, which remembers the goroutine threads it gives. */
static int co_running(lua_State *L) {
  Universe *U = lgoro_universe(L);
  int ismain = lua_pushthread(L);
  LG *lg = goro_getlocal();
  if (lg && lg->U == U && lg->L == L && lg != &U->main) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, U->threads);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  lua_pushboolean(L, ismain);
  return 2;
}

static int co_close(lua_State *L) {
  Universe *U = lgoro_universe(L);
  lua_State *co = getco(L);
  int status = costatus(L, U, co);
  switch (status) {
    case CO_DEAD: case CO_SUSPENDED: {
      if (lua_resetthread(co) == LUA_OK) {
        lua_pushboolean(L, 1);
        return 1;
      }
      lua_pushboolean(L, 0);
      lua_xmove(co, L, 1);   /* its error */
      return 2;
    }
    default:
      return luaL_error(L, "cannot close a %s coroutine", statname[status]);
  }
}

void lgoro_open_coroutine(lua_State *L, Universe *U) {
  static const luaL_Reg wrapped[] = {
    {"resume", co_resume},
    {"wrap", co_wrap},
    {"yield", co_yield},
    {"isyieldable", co_isyieldable},
    {"status", co_status},
    {"running", co_running},
    {"close", co_close},
    {NULL, NULL}
  };
  lua_getglobal(L, "coroutine");
  if (!lua_istable(L, -1)) {   /* a sandbox without it: nothing to wrap */
    lua_pop(L, 1);
    return;
  }
  lua_pushlightuserdata(L, U);
  luaL_setfuncs(L, wrapped, 1);
  lua_pop(L, 1);
}

/* }====================================================== */
