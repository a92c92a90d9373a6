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
      return goro_fd_wait(lg->fd, lg->events, lg->deadline);
    case OP_WAITALL: {
      /* A goroutine waits with its thread, like a syscall: leave the token
      ** to the others meanwhile.  (The main thread has left it already.) */
      goro_token *t = lg->U->token;
      bool owned = goro_token_owned(t);
      if (owned) goro_token_release(t);
      goro_wait(-1);
      if (owned) goro_token_acquire(t);
      return GORO_OK;
    }
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

/* The continuation of a goroutine's yield: lg_run did the operation. */
static int lg_continue(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  LG *lg = goro_getlocal();
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
    lg->rc = run_blocking(lg);
    goro_token_acquire(U->token);
  } else if (L == lg->L && lua_isyieldable(L)) {
    return lua_yieldk(L, 0, 0, lg_continue);
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
    goro_token_release(U->token);
    rc = run_blocking(lg);
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
    case OP_WAITALL:
      lg->rc = run_blocking(lg);
      break;
    case OP_YIELD:
    default:
      /* go.yield, a preemption (no continuation then), or a yield some
      ** other C library made: let the others run. */
      goro_yield();
      lg->rc = GORO_OK;
      if (lg->op != OP_YIELD || lg->results == NULL)
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

static Universe *volatile sigU;
static struct sigaction oldurg;
static bool urg_installed;

/*
** SIGURG is shared with the host (a Go c-shared library preempts its own
** threads with it, from the same process, like us).  The handler takes a
** signal as ours only when a request of ours is pending for the thread it
** lands on, and passes every other one to the handler it displaced:
**
**   a goroutine   sysmon set the G's preempt flag before the signal; the
**                 request is pending until the hook is armed for it.
**   the main      sysmon reports a foreign owner with goid 0: on_preempt
**   thread        sets main_preempt_pending before the signal, and the
**                 handler takes it (one signal, one request).
*/
static _Atomic int main_preempt_pending;

/* Set on a thread while preempt_hook puts the displaced hook back: a
** signal landing then must not arm again, or its hook and the one being
** restored would mix (and leave the thread without preemption).  The
** thread is about to get off the CPU anyway. */
static __thread volatile sig_atomic_t restoring_hook;

/*
** The count hook: first thing the interrupted Lua thread runs.  It puts
** back the hook it displaced, then gets off the CPU: a goroutine yields
** (stackless when it can) to the global queue; the main thread hands the
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
  } else if (L == lg->L && lua_isyieldable(L)) {
    lg->op = OP_YIELD;
    lg->results = NULL;
    lua_yield(L, 0);
  } else {
    goro_yield();
  }
}

/*
** In the signal handler: is a preemption request of ours pending for this
** thread?  If so, take it, and arm the hook in the Lua thread this thread
** runs, when that is ours to touch: the thread runs it *and* owns the
** token now (a signal may land just after the main thread let the token
** go, or while a goroutine waits in go.wait without it: another thread
** may be running Lua then).  Only async-signal-safe work: lua_sethook is
** made for this (lua.c's Ctrl-C does the same).
*/
static bool take_preempt_request(void) {
  Universe *U = sigU;
  if (U == NULL)
    return false;
  LG *lg;
  if (goro_id() != 0) {
    if (!goro_preempt_requested())
      return false;
    lg = goro_getlocal();
    if (lg == NULL || lg->U != U)
      return true;   /* a goroutine that runs no Lua: nothing to arm */
    if (lg->running && lua_gethook(lg->running) == preempt_hook)
      return false;  /* taken already: this signal is someone else's */
  } else if (pthread_equal(pthread_self(), U->mainthread)) {
    if (!atomic_exchange(&main_preempt_pending, 0))
      return false;
    lg = &U->main;
  } else {
    return false;
  }
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
  if (goid == 0)
    atomic_store(&main_preempt_pending, 1);
  pthread_kill(thread, SIGURG);
}

void lgoro_preempt_install(Universe *U) {
  sigU = U;
  if (!urg_installed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigurg;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGURG, &sa, &oldurg) == 0)
      urg_installed = true;
  }
  goro_set_preempt_hook(on_preempt, NULL);
}

void lgoro_preempt_remove(void) {
  goro_set_preempt_hook(NULL, NULL);
  if (urg_installed) {
    sigaction(SIGURG, &oldurg, NULL);
    urg_installed = false;
  }
  sigU = NULL;
}

/* }====================================================== */


/*
** {======================================================
** coroutine.*: tracking the running Lua thread
** =======================================================
*/

/* Is co a goroutine's own thread?  Lua code can only get one through
** coroutine.running, which records it in the universe's weak set. */
static bool is_goroutine_thread(lua_State *L, Universe *U, lua_State *co) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, U->threads);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  bool yes = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return yes;
}

static lua_State *checkco(lua_State *L, Universe *U) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  if (is_goroutine_thread(L, U, co))
    luaL_argerror(L, 1, "a goroutine's thread is not a coroutine");
  return co;
}

/* Status of co as coroutine.status reports it. */
static const char *costatus(lua_State *L, lua_State *co) {
  if (L == co)
    return "running";
  switch (lua_status(co)) {
    case LUA_YIELD:
      return "suspended";
    case LUA_OK: {
      lua_Debug ar;
      if (lua_getstack(co, 0, &ar))
        return "normal";
      return lua_gettop(co) == 0 ? "dead" : "suspended";
    }
    default:
      return "dead";
  }
}

/*
** Resume co with narg values from L: the standard library's semantics,
** with the calling goroutine's `running` pointing at co meanwhile, so
** that a preemption signal hooks the thread that really runs.
*/
static int auxresume(lua_State *L, Universe *U, lua_State *co, int narg) {
  const char *st = costatus(L, co);
  if (strcmp(st, "suspended") != 0) {
    lua_pushfstring(L, "cannot resume %s coroutine", st);
    return -1;
  }
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  LG *lg = goro_getlocal();
  if (lg && lg->U != U)
    lg = NULL;
  if (lg) lg->running = co;
  int nres;
  int status = lua_resume(co, L, narg, &nres);
  if (lg) lg->running = L;
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
  lua_State *co = checkco(L, U);
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
      lua_resetthread(co);                   /* close its variables */
      lua_xmove(co, L, 1);
      lua_remove(L, -2);
    }
    if (lua_type(L, -1) == LUA_TSTRING) {    /* add position info */
      luaL_where(L, 1);
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

/* A goroutine's own thread has nothing to yield to. */
static int co_yield(lua_State *L) {
  LG *lg = goro_getlocal();
  if (lg && lg->U == lgoro_universe(L) && lg->L == L && lg != &lg->U->main)
    return luaL_error(L, "attempt to yield from outside a coroutine");
  return lua_yield(L, lua_gettop(L));
}

static int co_isyieldable(lua_State *L) {
  lua_State *co = lua_isnone(L, 1) ? L : lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  LG *lg = goro_getlocal();
  bool own = lg && lg->U == lgoro_universe(L) && lg->L == co && lg != &lg->U->main;
  lua_pushboolean(L, !own && lua_isyieldable(co));
  return 1;
}

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

/* coroutine.close, refusing a goroutine's thread; upvalue 2 is the
** library's own close. */
static int co_close(lua_State *L) {
  checkco(L, lgoro_universe(L));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

void lgoro_open_coroutine(lua_State *L, Universe *U) {
  static const luaL_Reg wrapped[] = {
    {"resume", co_resume},
    {"wrap", co_wrap},
    {"yield", co_yield},
    {"isyieldable", co_isyieldable},
    {"running", co_running},
    {NULL, NULL}
  };
  lua_getglobal(L, "coroutine");
  if (!lua_istable(L, -1)) {   /* a sandbox without it: nothing to wrap */
    lua_pop(L, 1);
    return;
  }
  if (lua_getfield(L, -1, "close") == LUA_TFUNCTION) {
    lua_pushlightuserdata(L, U);
    lua_insert(L, -2);
    lua_pushcclosure(L, co_close, 2);
    lua_setfield(L, -2, "close");
  } else {
    lua_pop(L, 1);
  }
  lua_pushlightuserdata(L, U);
  luaL_setfuncs(L, wrapped, 1);
  lua_pop(L, 1);
}

/* }====================================================== */
