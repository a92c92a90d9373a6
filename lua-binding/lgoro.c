/*
** lgoro.c — the goro module: the universe of a Lua state, spawning and
** running Lua goroutines, and the functions of `go` itself.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lgoro.h"

#define UNIVERSE_KEY "goro.universe"

Universe *lgoro_universe(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* The goroutine (or the main thread) running this Lua code. */
LG *lgoro_current(lua_State *L) {
  LG *lg = goro_getlocal();
  if (lg == NULL || lg->U != lgoro_universe(L))
    luaL_error(L, "goro: called from a thread that is not the Lua state's "
                  "main thread nor one of its goroutines");
  return lg;
}


/*
** {======================================================
** The runtime's life: started on first need, stopped by lua_close
** =======================================================
*/

/* Go's fatal "all goroutines are asleep": nothing can run ever again. */
static void on_deadlock(void *ud) {
  (void)ud;
  fflush(stdout);
  fputs("fatal error: all goroutines are asleep - deadlock!\n", stderr);
  fflush(stderr);
  _exit(2);
}

void lgoro_ensure_runtime(lua_State *L, Universe *U) {
  if (goro_running())
    return;
  int rc = goro_init(U->nprocs);
  if (rc != GORO_OK && rc != GORO_ESTATE)
    luaL_error(L, "goro: cannot start the runtime: %s", goro_strerror(rc));
  goro_set_deadlock_handler(on_deadlock, U);
}

/* A channel collected while goroutines still wait on it: only possible
** when lua_close finalises everything.  Freed after the runtime stops. */
void lgoro_orphan(Universe *U, goro_chan *c) {
  if (U->norphans == U->maxorphans) {
    int n = U->maxorphans ? 2 * U->maxorphans : 16;
    goro_chan **a = realloc(U->orphans, (size_t)n * sizeof *a);
    if (a == NULL)
      return;   /* leak it rather than free it under a waiter */
    U->orphans = a;
    U->maxorphans = n;
  }
  U->orphans[U->norphans++] = c;
}

/*
** __gc of the universe, the first object the module made, so the last
** that lua_close finalises: every channel's __gc has run.  Stop the
** runtime (goroutines still parked are dropped without running again),
** then free what the Lua state does not own.
*/
static int universe_gc(lua_State *L) {
  Universe *U = lua_touserdata(L, 1);
  U->closing = true;
  if (goro_id() != 0)
    return 0;   /* os.exit(n, true) in a goroutine: the process is ending */
  lgoro_preempt_remove();
  goro_set_deadlock_handler(NULL, NULL);
  goro_shutdown();
  for (LG *lg = U->all, *next; lg; lg = next) {
    next = lg->next;
    free(lg->sel.cases);
    free(lg);
  }
  U->all = NULL;
  for (LG *lg = U->free, *next; lg; lg = next) {
    next = lg->next;
    free(lg->sel.cases);
    free(lg);
  }
  U->free = NULL;
  for (int i = 0; i < U->norphans; i++)
    free(U->orphans[i]);   /* no waiter can touch them now */
  free(U->orphans);
  free(U->main.sel.cases);
  free(U->never);   /* not goro_chan_free: its waiters are gone */
  goro_setlocal(NULL);
  goro_token_release(U->token);
  goro_token_free(U->token);
  return 0;
}

/* The universe of L, made on first require.  Leaves it on the stack. */
static Universe *universe_open(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, UNIVERSE_KEY) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (goro_getlocal() != NULL)
    luaL_error(L, "goro: this thread already runs another Lua state's goro");
  Universe *U = lua_newuserdatauv(L, sizeof *U, 0);
  memset(U, 0, sizeof *U);
  U->L = L;
  U->onerror = LUA_NOREF;
  U->mainthread = pthread_self();
  U->main.U = U;
  U->main.L = L;
  U->main.running = L;
  U->main.ref = LUA_NOREF;
  U->token = goro_token_new();
  U->never = goro_chan_new(sizeof(lvalue), 0);
  if (U->token == NULL || U->never == NULL)
    luaL_error(L, "goro: out of memory");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, universe_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, UNIVERSE_KEY);

  /* The weak set of goroutine threads that Lua code has seen. */
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  U->threads = luaL_ref(L, LUA_REGISTRYINDEX);

  /* The main thread runs Lua: it owns the token from now on. */
  goro_token_acquire(U->token);
  goro_setlocal(&U->main);
  lgoro_preempt_install(U);
  return U;
}

/* }====================================================== */


/*
** {======================================================
** Lua goroutines
** =======================================================
*/

/* errstring's protected part: the __tostring of value 1, or nothing. */
static int call_tostring(lua_State *L) {
  if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
    return 1;
  return 0;
}

/*
** Format an error value the way lua.c does.  A __tostring that raises
** must not cost the report its traceback: it is called protected, and its
** failure becomes part of the message.
*/
static const char *errstring(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING)
    return lua_tostring(L, idx);
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);   /* converted in place: not the caller's value */
    return lua_tostring(L, -1);
  }
  lua_pushcfunction(L, call_tostring);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *why = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                     : luaL_typename(L, -1);
    return lua_pushfstring(L, "(error object is a %s value; its __tostring "
                              "raised: %s)", luaL_typename(L, idx), why);
  }
  if (lua_type(L, -1) == LUA_TSTRING)
    return lua_tostring(L, -1);
  return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

/* go.onerror's default: Go's unrecovered panic. */
static int default_onerror(lua_State *L) {
  const char *msg = errstring(L, 1);
  const char *tb = lua_tostring(L, 2);
  fflush(stdout);
  fprintf(stderr, "goroutine %lld failed: %s\n%s\n",
          (long long)lua_tointeger(L, 3), msg, tb ? tb : "");
  fflush(stderr);
  _exit(2);
}

/*
** What report_error does on a goroutine's thread outside lua_resume must
** not raise: there is no protected call around it, and Lua would throw
** the error into the main thread's innermost pcall, from this thread.  So
** every step that allocates (and may fail for want of memory, or run a
** finaliser) runs in a lua_pcall of one of these two functions, and
** report_error itself only pushes values that need no memory.
*/

/* The dead thread's traceback (from the frame below this call) and its
** error (argument 1), anchored together: returns the registry reference. */
static int capture_error(lua_State *L) {
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  luaL_traceback(L, L, NULL, 1);
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
  return 1;
}

/* handler(err, traceback, id), with a traceback that could not be taken
** replaced by a note saying so. */
static int call_handler(lua_State *L) {
  if (lua_isnil(L, 3))
    lua_pushliteral(L, "stack traceback:\n\t(unavailable: out of memory)");
  else
    lua_pushvalue(L, 3);
  lua_replace(L, 3);
  lua_call(L, 3, 0);
  return 0;
}

/* The value at idx as a C string, for a last-resort report: no memory
** needed, no metamethod run (buf: room for a number). */
static const char *plainstring(lua_State *L, int idx, char buf[64]) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      return lua_tostring(L, idx);
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        snprintf(buf, 64, LUA_INTEGER_FMT, lua_tointeger(L, idx));
      else
        snprintf(buf, 64, LUA_NUMBER_FMT, lua_tonumber(L, idx));
      return buf;
    default:
      snprintf(buf, 64, "(error object is a %s value)", luaL_typename(L, idx));
      return buf;
  }
}

/*
** An error escaped goroutine lg.  Its thread is dead with the error on
** top and its frames still there for the traceback.  Then the thread is
** reset (closing its to-be-closed variables) and the handler runs on it.
** Out of memory, the traceback may be missing, but the error (Lua's
** preallocated "not enough memory") still reaches the handler: the reset
** leaves it on the stack, and releases the goroutine's own memory.
*/
static void report_error(LG *lg) {
  lua_State *L = lg->L;
  Universe *U = lg->U;
  int anchor = LUA_NOREF;
  if (lua_checkstack(L, 2)) {   /* which never raises */
    lua_pushcfunction(L, capture_error);
    lua_pushvalue(L, -2);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK)
      anchor = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_resetthread(L);   /* leaves the error (or a __close's) at 1 */
  /* stack: err  handler err traceback id */
  if (anchor != LUA_NOREF) {
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, anchor);
    lua_rawgeti(L, 1, 1);
    lua_replace(L, 1);
  } else {
    lua_settop(L, 1);
  }
  lua_pushcfunction(L, call_handler);
  if (U->onerror != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, U->onerror);
  else
    lua_pushcfunction(L, default_onerror);
  lua_pushvalue(L, 1);
  if (anchor != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, anchor);
    lua_rawgeti(L, -1, 2);
    lua_replace(L, -2);
    luaL_unref(L, LUA_REGISTRYINDEX, anchor);   /* needs no memory */
  } else {
    lua_pushnil(L);
  }
  lua_pushinteger(L, (lua_Integer)lg->id);
  lg->running = L;
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    char errbuf[64], whybuf[64];
    fflush(stdout);
    if (U->onerror == LUA_NOREF)   /* the default itself failed (memory) */
      fprintf(stderr, "goroutine %lld failed: %s\n(no traceback: %s)\n",
              (long long)lg->id, plainstring(L, 1, errbuf),
              plainstring(L, -1, whybuf));
    else
      fprintf(stderr, "goroutine %lld: error in go.onerror handler: %s\n",
              (long long)lg->id, plainstring(L, -1, whybuf));
    fflush(stderr);
    _exit(2);
  }
  lua_settop(L, 0);
}

/*
** The body of every Lua goroutine, on a G bound to the universe's token:
** resume its thread until it ends.  Each yield is a blocking operation
** asked for by a goro function (lblock.c), done here in its continuation
** form: when it parks, this stack is dropped and the G starts over here,
** with the operation to finish, once it is readied.
*/
static void lg_run(void *arg) {
  LG *lg = arg;
  lua_State *L = lg->L;
  int nargs = lg->nargs;
  lg->nargs = 0;
  lgoro_finish_op_k(lg);
  for (;;) {
    int nres;
    lg->running = L;
    int status = lua_resume(L, NULL, nargs, &nres);
    nargs = 0;
    if (status != LUA_YIELD) {
      if (status != LUA_OK)
        report_error(lg);
      break;
    }
    lua_pop(L, nres);
    lgoro_run_op_k(lg);   /* may not return: then lg_run starts over */
  }
  lgoro_goroutine_ended(lg);
}

/*
** A goroutine ended: keep its LG and Lua thread for the next spawn (a
** finished thread is as good as new once its stack is cleared), up to
** LG_FREE_MAX of them; that spares the allocation of both and the GC of
** the thread, the bulk of a spawn's cost.
*/
enum { LG_FREE_MAX = 1024 };

static void lg_put(Universe *U, LG *lg) {
  if (U->nfree < LG_FREE_MAX && lua_status(lg->L) == LUA_OK) {
    lua_settop(lg->L, 0);
    lg->next = U->free;
    U->free = lg;
    U->nfree++;
    return;
  }
  luaL_unref(lg->L, LUA_REGISTRYINDEX, lg->ref);
  free(lg->sel.cases);
  free(lg);
}

void lgoro_goroutine_ended(LG *lg) {
  Universe *U = lg->U;
  /* First, so that a preemption signal (lblock.c, arm) arriving before the
  ** G itself ends finds no goroutine rather than a recycled one. */
  goro_setlocal(NULL);
  if (lg->prev) lg->prev->next = lg->next; else U->all = lg->next;
  if (lg->next) lg->next->prev = lg->prev;
  lg->prev = NULL;
  lg_put(U, lg);
}

/* An LG with a Lua thread for a new goroutine, on top of L's stack. */
static LG *lg_get(lua_State *L, Universe *U) {
  LG *lg = U->free;
  if (lg) {
    U->free = lg->next;
    U->nfree--;
    selbuf sel = lg->sel;
    lua_State *co = lg->L;
    int ref = lg->ref;
    memset(lg, 0, sizeof *lg);
    lg->sel = sel;
    lg->sel.busy = false;
    lg->L = co;
    lg->ref = ref;
    lua_sethook(co, NULL, 0, 0);   /* one a preemption left armed */
    return lg;
  }
  lg = calloc(1, sizeof *lg);
  if (lg == NULL)
    luaL_error(L, "goro: out of memory");
  lg->L = lua_newthread(L);
  lg->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return lg;
}

void (*lgoro_run_fn)(void *) = lg_run;

/* A callable: a function, or a value with a __call metamethod. */
static void checkcallable(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TFUNCTION)
    return;
  if (luaL_getmetafield(L, arg, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  luaL_typeerror(L, arg, "function");
}

/* go.spawn(fn, ...) and go(fn, ...) */
static int l_spawn(lua_State *L) {
  Universe *U = lgoro_universe(L);
  checkcallable(L, 1);
  int n = lua_gettop(L);
  lgoro_ensure_runtime(L, U);
  LG *lg = lg_get(L, U);
  lua_State *co = lg->L;
  lg->U = U;
  lg->nargs = n - 1;
  if (!lua_checkstack(co, n)) {
    lg_put(U, lg);
    return luaL_error(L, "goro: too many arguments");
  }
  lua_xmove(L, co, n);   /* the function and its arguments */
  goro_spawn_opts opts = { U->token, lg };
  int64_t id = goro_spawn_ex(lg_run, lg, &opts);
  if (id < 0) {
    lua_settop(co, 0);
    lg_put(U, lg);
    return luaL_error(L, "goro: cannot spawn: %s", goro_strerror((int)id));
  }
  /* It cannot run before we give up the token: safe to finish it now. */
  lg->id = id;
  lg->next = U->all;
  if (U->all) U->all->prev = lg;
  U->all = lg;
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

/* go(fn, ...): the module's __call; drop the module table first, so that
** argument errors count from the function. */
static int l_call(lua_State *L) {
  lua_remove(L, 1);
  return l_spawn(L);
}

/* }====================================================== */


/*
** {======================================================
** go.*
** =======================================================
*/

static int l_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)goro_id());
  return 1;
}

static int noresults(lua_State *L, LG *lg, int rc) {
  (void)L; (void)lg; (void)rc;
  return 0;
}

static int l_yield(lua_State *L) {
  LG *lg = lgoro_current(L);
  if (lg == &lg->U->main && !goro_token_contended(lg->U->token))
    return 0;   /* nobody waits for the token: nothing to yield to */
  return lgoro_block(L, lg, OP_YIELD, noresults);
}

static int l_numgoroutine(lua_State *L) {
  lua_pushinteger(L, goro_running() ? (lua_Integer)goro_numgoroutine() : 0);
  return 1;
}

static int default_procs(void) {
  const char *s = getenv("GORO_MAXPROCS");
  long n = s ? strtol(s, NULL, 10) : 0;
  if (n > 0 && n <= 1024)
    return (int)n;
  n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)(n > 1024 ? 1024 : n) : 1;
}

/*
** go.gomaxprocs([n]).  Before the runtime starts, n is what it will start
** with.  Once it runs, the number of Ps is fixed while goroutines are
** alive; with none, the runtime stops and starts again with n on next use.
*/
static int l_gomaxprocs(lua_State *L) {
  Universe *U = lgoro_universe(L);
  int prev = goro_running() ? goro_gomaxprocs() : (U->nprocs ? U->nprocs : default_procs());
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "must be between 1 and 1024");
    if (goro_running() && n != prev) {
      if (goro_numgoroutine() > 0)
        return luaL_error(L, "gomaxprocs: cannot change the number of Ps "
                             "while goroutines are alive");
      if (goro_getlocal() != &U->main)
        return luaL_error(L, "gomaxprocs: only the main thread can change it");
      goro_shutdown();
    }
    U->nprocs = (int)n;
  }
  lua_pushinteger(L, prev);
  return 1;
}

static int l_wait(lua_State *L) {
  LG *lg = lgoro_current(L);
  if (!goro_running())
    return 0;
  return lgoro_block(L, lg, OP_WAITALL, noresults);
}

static int l_onerror(lua_State *L) {
  Universe *U = lgoro_universe(L);
  if (!lua_isnil(L, 1))
    checkcallable(L, 1);
  lua_settop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, U->onerror);
  U->onerror = lua_isnil(L, 1) ? LUA_NOREF : luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int l_stats(lua_State *L) {
  goro_stats_t st;
  goro_stats(&st);
  lua_createtable(L, 0, 14);
#define FIELD(name, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, name))
  FIELD("goroutines", st.goroutines);
  FIELD("threads", st.threads);
  FIELD("idlethreads", st.idlethreads);
  FIELD("procs", goro_running() ? st.procs : 0);
  FIELD("idleprocs", st.idleprocs);
  FIELD("spinning", st.spinning);
  FIELD("insyscall", st.insyscall);
  FIELD("runqueue", st.runqueue);
  FIELD("switches", st.switches);
  FIELD("steals", st.steals);
  FIELD("preemptions", st.preemptions);
  FIELD("handoffs", st.handoffs);
  FIELD("spawned", st.spawned);
  FIELD("stacks", st.stacks);
#undef FIELD
  return 1;
}

static const luaL_Reg funcs[] = {
  {"spawn", l_spawn},
  {"id", l_id},
  {"yield", l_yield},
  {"numgoroutine", l_numgoroutine},
  {"gomaxprocs", l_gomaxprocs},
  {"wait", l_wait},
  {"onerror", l_onerror},
  {"stats", l_stats},
  {NULL, NULL}
};

int luaopen_goro(lua_State *L) {
  Universe *U = universe_open(L);
  lua_createtable(L, 0, 24);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lgoro_open_chan(L, U);
  lgoro_open_sync(L, U);
  lgoro_open_time(L, U);
  lgoro_open_net(L, U);
  lgoro_open_coroutine(L, U);
  /* go(fn, ...) as go.spawn(fn, ...) */
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -3);
  lua_pushcclosure(L, l_call, 1);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
  return 1;
}
