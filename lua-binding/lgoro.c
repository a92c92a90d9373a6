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
** The goroutine dump: go.status, go.stacks, the deadlock report
** =======================================================
*/

/*
** Go's traceback of all goroutines: for each, "goroutine N [state]:" and
** where it is.  The runtime reports every live G (goro_goroutines); the
** Lua stack of one of ours is its Lua thread, which nobody runs while the
** caller holds the universe's token: a parked goroutine's thread stands
** at its yield or in the C function that blocked, a runnable one waits for
** the token.  The main thread is "goroutine 0", as go.id() says there; it
** is not a G, so its state comes from its pending operation.
*/

/* A G's state in go.status's words, and the seconds it has waited. */
static const char *info_state(const goro_ginfo *info, double *waited) {
  *waited = 0;
  if (info->state != GORO_GSTATE_WAITING)
    return goro_gstate_name(info->state);
  *waited = (double)(goro_now() - info->waitsince) / 1e9;
  return info->waitreason ? info->waitreason : "waiting";
}

/* The state of the main thread, seen from another thread: its waiter's.
** Waiting for the token, it is as good as runnable. */
static const char *main_state(Universe *U, double *waited) {
  goro_ginfo info;
  *waited = 0;
  if (!goro_g_info(U->mainwaiter, &info) ||
      info.state != GORO_GSTATE_WAITING)
    /* go.wait() blocks the thread outside the scheduler (goro_wait) */
    return U->main.op == OP_WAITALL ? "wait" : "running";
  if (info.waitreason == NULL || strcmp(info.waitreason, "token") == 0)
    return "runnable";
  *waited = (double)(goro_now() - info.waitsince) / 1e9;
  return info.waitreason;
}

/* The state of goroutine id as go.status names it, with the seconds it has
** waited (0 unless waiting); NULL when it has ended.  `self`: the caller's
** LG. */
static const char *goroutine_state(Universe *U, LG *self, int64_t id,
                                   double *waited) {
  *waited = 0;
  if (id == 0)
    return self == &U->main ? "running" : main_state(U, waited);
  goro_ginfo info;
  if (!goro_goroutine(id, &info))
    return NULL;
  return info_state(&info, waited);
}

/* The LG of goroutine id in U, or NULL (a C task, another state's). */
static LG *find_lg(Universe *U, int64_t id) {
  for (LG *lg = U->all; lg; lg = lg->next)
    if (lg->id == id)
      return lg;
  return NULL;
}

/* "goroutine N [state]:" or, waiting a minute or more, Go's
** "goroutine N [state, M minutes]:" */
static void format_header(char *buf, size_t size, int64_t id,
                          const char *state, double waited) {
  long minutes = (long)(waited / 60);
  if (minutes >= 1)
    snprintf(buf, size, "goroutine %lld [%s, %ld minutes]:\n",
             (long long)id, state, minutes);
  else
    snprintf(buf, size, "goroutine %lld [%s]:\n", (long long)id, state);
}

static int compare_ginfo(const void *a, const void *b) {
  int64_t x = ((const goro_ginfo *)a)->id, y = ((const goro_ginfo *)b)->id;
  return (x > y) - (x < y);
}

/* The live goroutines, sorted by id, in a userdata pushed on L (so that an
** error frees it); their count in *n. */
static goro_ginfo *push_goroutines(lua_State *L, int *n) {
  int cap = goro_goroutines(NULL, 0) + 16;
  for (;;) {
    goro_ginfo *all = lua_newuserdatauv(L, (size_t)cap * sizeof *all, 0);
    *n = goro_goroutines(all, cap);
    if (*n <= cap) {
      qsort(all, (size_t)*n, sizeof *all, compare_ginfo);
      return all;
    }
    lua_pop(L, 1);
    cap = *n + 16;
  }
}

/* Append to b the traceback of Lua thread co (luaL_traceback's, without
** its "stack traceback:" line). */
static void add_traceback(luaL_Buffer *b, lua_State *L, lua_State *co,
                          int level) {
  luaL_traceback(L, co, NULL, level);
  const char *tb = lua_tostring(L, -1);
  const char *nl = strchr(tb, '\n');
  lua_pushstring(L, nl ? nl + 1 : "");
  lua_remove(L, -2);
  luaL_addvalue(b);
  luaL_addchar(b, '\n');
}

/* The traceback of lg, a goroutine of U that is not the caller: its
** running thread (a nested coroutine, when it blocked in one) and, if
** that is another, its own. */
static void add_lg_traceback(luaL_Buffer *b, lua_State *L, LG *lg) {
  lua_State *co = lg->running ? lg->running : lg->L;
  add_traceback(b, L, co, 0);
  if (co != lg->L) {
    luaL_addstring(b, "\t(in a coroutine resumed by:)\n");
    add_traceback(b, L, lg->L, 0);
  }
}

/* The dump, built with the collector stopped (see l_stacks). */
static int dump_all(lua_State *L) {
  Universe *U = lua_touserdata(L, 1);
  LG *self = goro_getlocal();
  int n;
  goro_ginfo *all = push_goroutines(L, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char header[160];
  /* The caller first, as Go prints the running goroutine first. */
  format_header(header, sizeof header, self->id, "running", 0);
  luaL_addstring(&b, header);
  add_traceback(&b, L, L, 1);
  if (self != &U->main) {
    luaL_addchar(&b, '\n');
    double waited;
    const char *state = main_state(U, &waited);
    format_header(header, sizeof header, 0, state, waited);
    luaL_addstring(&b, header);
    add_traceback(&b, L, U->L, 0);
  }
  for (int i = 0; i < n; i++) {
    if (all[i].id == self->id)
      continue;
    double waited;
    const char *state = info_state(&all[i], &waited);
    luaL_addchar(&b, '\n');
    format_header(header, sizeof header, all[i].id, state, waited);
    luaL_addstring(&b, header);
    LG *lg = find_lg(U, all[i].id);
    if (lg)
      add_lg_traceback(&b, L, lg);
    else
      luaL_addstring(&b, "\t(no Lua stack in this state: a C task, or a "
                         "goroutine of another Lua state)\n");
  }
  luaL_pushresult(&b);
  return 1;
}

/*
** go.stacks() -> string.  The collector is stopped meanwhile: the walk
** allocates, and a finaliser run by a step of it could block this
** goroutine (the others would then run, and end, under the walk).
*/
static int l_stacks(lua_State *L) {
  Universe *U = lgoro_universe(L);
  lgoro_current(L);
  bool collecting = lua_gc(L, LUA_GCISRUNNING);
  lua_gc(L, LUA_GCSTOP);
  lua_pushcfunction(L, dump_all);
  lua_pushlightuserdata(L, U);
  int status = lua_pcall(L, 1, 1, 0);
  if (collecting)
    lua_gc(L, LUA_GCRESTART);
  if (status != LUA_OK)
    return lua_error(L);
  return 1;
}

/* go.status() -> { [state] = count }: how many goroutines (not counting
** the main thread) are in each state, from one walk of the runtime's list:
** a test can see that 100,000 sleep at once without asking each. */
static int status_counts(lua_State *L) {
  int n;
  goro_ginfo *all = push_goroutines(L, &n);
  lua_createtable(L, 0, 4);
  for (int i = 0; i < n; i++) {
    double waited;
    const char *state = info_state(&all[i], &waited);
    lua_getfield(L, -1, state);
    lua_Integer count = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushinteger(L, count + 1);
    lua_setfield(L, -2, state);
  }
  return 1;
}

/*
** go.status(id) -> state, seconds: what goroutine id (0: the main thread)
** does now: "running", "runnable", "syscall", or, parked, Go's words for
** what it waits on ("chan receive", "chan send", "select", "sleep",
** "IO wait", "semacquire", "select (no cases)") and for how many seconds
** (at least: the runtime notices a wait's start lazily); nil once it ended.
*/
static int l_status(lua_State *L) {
  Universe *U = lgoro_universe(L);
  if (lua_isnoneornil(L, 1))
    return status_counts(L);
  lua_Integer id = luaL_checkinteger(L, 1);
  LG *self = lgoro_current(L);
  double waited;
  const char *state = goroutine_state(U, self, (int64_t)id, &waited);
  if (state == NULL) {
    luaL_pushfail(L);
    return 1;
  }
  lua_pushstring(L, state);
  lua_pushnumber(L, (lua_Number)waited);
  return 2;
}

/*
** The deadlock report's traceback of Lua thread co, to stderr, in
** luaL_traceback's format.  It must not allocate: see on_deadlock.  So it
** names functions only as lua_getinfo can without pushing anything.
*/
static void print_traceback(lua_State *co) {
  lua_Debug ar;
  for (int level = 0; level < 64 && lua_getstack(co, level, &ar); level++) {
    if (!lua_getinfo(co, "Slnt", &ar))
      break;
    fprintf(stderr, "\t%s:", ar.short_src);
    if (ar.currentline > 0)
      fprintf(stderr, "%d:", ar.currentline);
    if (*ar.namewhat != '\0')
      fprintf(stderr, " in %s '%s'\n", ar.namewhat, ar.name);
    else if (*ar.what == 'm')
      fputs(" in main chunk\n", stderr);
    else if (*ar.what == 'C')
      fputs(" in ?\n", stderr);
    else
      fprintf(stderr, " in function <%s:%d>\n", ar.short_src, ar.linedefined);
    if (ar.istailcall)
      fputs("\t(...tail calls...)\n", stderr);
  }
}

/*
** Go's fatal "all goroutines are asleep": nothing can run ever again.
** Then the dump, as Go prints it.  This runs on whatever thread noticed
** (an M going idle, the main thread parking, the poller), without the
** token, yet reading the Lua threads is safe: the runtime calls it only
** when every M is idle (no goroutine runs or is in a syscall), no run
** queue or token queue holds a G, no timer or I/O wait is pending and
** every thread that uses the runtime, the main one included, is parked in
** it; and it found that under its scheduler lock, which each of them took
** on the way to sleep, so what they wrote to the Lua state is visible
** here.  Nothing can wake any of them: no thread runs Lua while this
** reads, and this only reads (lua_getstack, lua_getinfo without pushing):
** no allocation, so no collector step and no finaliser.  Then _exit.
*/
static void on_deadlock(void *ud) {
  Universe *U = ud;
  fflush(stdout);
  fputs("fatal error: all goroutines are asleep - deadlock!\n", stderr);
  if (U != NULL) {
    double waited;
    const char *state = main_state(U, &waited);
    char header[160];
    format_header(header, sizeof header, 0, state, waited);
    fprintf(stderr, "\n%s", header);
    print_traceback(U->L);
    enum { DUMP_MAX = 1000 };   /* Go prints them all; a report needs less */
    static goro_ginfo all[DUMP_MAX];
    int n = goro_goroutines(all, DUMP_MAX);
    int shown = n < DUMP_MAX ? n : DUMP_MAX;
    qsort(all, (size_t)shown, sizeof *all, compare_ginfo);
    for (int i = 0; i < shown; i++) {
      state = info_state(&all[i], &waited);
      format_header(header, sizeof header, all[i].id, state, waited);
      fprintf(stderr, "\n%s", header);
      LG *lg = find_lg(U, all[i].id);
      if (lg == NULL) {
        fputs("\t(no Lua stack in this state: a C task, or a goroutine of "
              "another Lua state)\n", stderr);
        continue;
      }
      lua_State *co = lg->running ? lg->running : lg->L;
      print_traceback(co);
      if (co != lg->L) {
        fputs("\t(in a coroutine resumed by:)\n", stderr);
        print_traceback(lg->L);
      }
    }
    if (n > shown)
      fprintf(stderr, "\n... %d more goroutines\n", n - shown);
  }
  fflush(stderr);
  _exit(2);
}

/* }====================================================== */


/*
** {======================================================
** The runtime's life: started on first need, stopped by lua_close
** =======================================================
*/

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
  U->mainwaiter = goro_self();
  U->main.U = U;
  U->main.L = L;
  U->main.running = L;
  U->main.ref = LUA_NOREF;
  U->token = goro_token_new();
  U->never = goro_chan_new(sizeof(lvalue), 0);
  if (U->token == NULL || U->never == NULL)
    luaL_error(L, "goro: out of memory");
  goro_chan_setwaitreason(U->never, "select (no cases)");
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

/* Format an error value the way lua.c does. */
static const char *errstring(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
    return lua_tostring(L, idx);
  if (luaL_callmeta(L, idx, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
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
** An error escaped goroutine lg.  Its thread is dead with the error on
** top and its frames still there for the traceback.  Then the thread is
** reset (closing its to-be-closed variables) and the handler runs on it.
*/
static void report_error(LG *lg) {
  lua_State *L = lg->L;
  Universe *U = lg->U;
  luaL_traceback(L, L, NULL, 0);
  int tb = luaL_ref(L, LUA_REGISTRYINDEX);
  int err = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_resetthread(L);
  lua_settop(L, 0);
  if (U->onerror != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, U->onerror);
  else
    lua_pushcfunction(L, default_onerror);
  lua_rawgeti(L, LUA_REGISTRYINDEX, err);
  lua_rawgeti(L, LUA_REGISTRYINDEX, tb);
  lua_pushinteger(L, (lua_Integer)lg->id);
  luaL_unref(L, LUA_REGISTRYINDEX, err);
  luaL_unref(L, LUA_REGISTRYINDEX, tb);
  lg->running = L;
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    fflush(stdout);
    fprintf(stderr, "goroutine %lld: error in go.onerror handler: %s\n",
            (long long)lg->id, lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    fflush(stderr);
    _exit(2);
  }
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
  {"status", l_status},
  {"stacks", l_stacks},
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
