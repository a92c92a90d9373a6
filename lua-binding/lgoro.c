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

static void waitall_check(Universe *U);

Universe *lgoro_universe(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* The goroutine (or the main thread) running this Lua code. */
LG *lgoro_current(lua_State *L) {
  if (lgoro_universe(L)->closing)
    luaL_error(L, "goro: the Lua state is closing");
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
    return "running";
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
** The runtime's life: shared by every Lua state of the process
** =======================================================
*/

/*
** The runtime is the process's: several Lua states may use it at once
** (a C host running one per thread), and a C host may have started it
** itself.  A universe joins it on first need and leaves it when its state
** closes; closing ends that universe's goroutines only (its token is
** closed, see universe_gc).  The last universe to leave stops the
** runtime, unless the binding did not start it.
*/
static pthread_mutex_t runtime_lock = PTHREAD_MUTEX_INITIALIZER;
static int runtime_users;     /* universes that joined it */
static bool runtime_ours;     /* started by the binding, not by a C host */
static Universe *dumped;      /* whose Lua stacks a deadlock report shows */


void lgoro_ensure_runtime(lua_State *L, Universe *U) {
  if (U->closing)
    luaL_error(L, "goro: the Lua state is closing");
  if (U->joined && goro_running())
    return;
  pthread_mutex_lock(&runtime_lock);
  int rc = GORO_OK;
  if (!goro_running()) {
    rc = goro_init(U->nprocs);
    if (rc == GORO_OK)
      runtime_ours = true;
    else if (rc == GORO_ESTATE)
      rc = GORO_OK;   /* a C host started it meanwhile */
  }
  if (rc == GORO_OK) {
    if (!U->joined) {
      U->joined = true;
      runtime_users++;
    }
    if (dumped == NULL)
      dumped = U;
    goro_set_deadlock_handler(on_deadlock, dumped);
  }
  pthread_mutex_unlock(&runtime_lock);
  if (rc != GORO_OK)
    luaL_error(L, "goro: cannot start the runtime: %s", goro_strerror(rc));
}

/* U's state closes: the last universe out stops the runtime it started. */
static void runtime_leave(Universe *U) {
  pthread_mutex_lock(&runtime_lock);
  U->joined = false;
  if (dumped == U) {
    dumped = NULL;   /* the next universe to need the runtime takes over */
    goro_set_deadlock_handler(on_deadlock, NULL);
  }
  if (--runtime_users == 0 && runtime_ours) {
    goro_set_deadlock_handler(NULL, NULL);
    goro_shutdown();
    runtime_ours = false;
  }
  pthread_mutex_unlock(&runtime_lock);
}

/* Can go.gomaxprocs restart the runtime?  Only if U is its only user
** and the binding started it. */
static bool runtime_restartable(Universe *U) {
  pthread_mutex_lock(&runtime_lock);
  bool yes = runtime_ours && runtime_users == (U->joined ? 1 : 0);
  pthread_mutex_unlock(&runtime_lock);
  return yes;
}

/* A channel collected while goroutines still wait on it: only possible
** when lua_close finalises everything.  Freed when the universe closes. */
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

static void lg_free(LG *lg) {
  free(lg->sel.cases);
  free(lg);
}

/* goro_token_close's discard: a goroutine of a closed universe is gone.
** Only its LG is left to free: its Lua thread went with the state. */
static void discard_lg(void *local, void *ud) {
  (void)ud;
  if (local)
    lg_free(local);
}


/*
** __gc of the universe, the first object the module made, so the last
** that lua_close finalises: every channel's __gc has run.  Close the
** token: the universe's goroutines end where they stand (their Lua
** threads go with the state), the other states' go on.  Then leave the
** runtime, and free what the Lua state does not own.
*/
static int universe_gc(lua_State *L) {
  Universe *U = lua_touserdata(L, 1);
  if (U->closing)
    return 0;
  U->closing = true;
  if (goro_id() != 0)
    return 0;   /* os.exit(n, true) in a goroutine: the process is ending */
  lgoro_preempt_remove(U);
  lgoro_interrupt_remove(U);
  if (U->joined && goro_running() && goro_token_owned(U->token)) {
    goro_token_close(U->token, discard_lg, NULL);
    U->all = NULL;   /* each LG is the discard's to free */
  } else {
    /* The runtime never ran, or was stopped under us: no goroutine is
    ** left to run. */
    for (LG *lg = U->all, *next; lg; lg = next) {
      next = lg->next;
      lg_free(lg);
    }
    U->all = NULL;
    goro_token_free(U->token);
  }
  U->token = NULL;
  for (LG *lg = U->free, *next; lg; lg = next) {
    next = lg->next;
    lg_free(lg);
  }
  U->free = NULL;
  for (int i = 0; i < U->norphans; i++)
    goro_chan_free(U->orphans[i]);
  free(U->orphans);
  U->orphans = NULL;
  lgoro_waitall_free(U);
  goro_chan_free(U->never);
  U->never = NULL;
  free(U->main.sel.cases);
  U->main.sel.cases = NULL;
  goro_setlocal(NULL);
  goro_forget_thread();
  if (U->joined)
    runtime_leave(U);
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
  lgoro_interrupt_install(U);
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
  if (lg->fresh) {
    lg->fresh = false;
    nargs = lgoro_unguard(L, nargs);
  }
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
  lg_free(lg);
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
  U->nlive--;
  waitall_check(U);
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

/*
** The native stack of a Lua goroutine.  Lua stops C recursion by count
** (LUAI_MAXCCALLS, 200 levels, 220 while handling an error), assuming a
** thread's stack of megabytes; measured with lua5.4 5.4.4 on x86-64, the
** deepest standard-library path (string.gsub with a function replacement,
** about 2 KiB a level) takes 420 KiB to reach its "C stack overflow".  So
** 1 MiB: Lua always raises its own error first, with room to spare, and the
** guard page stays the last line.  Only touched pages cost memory, and a
** parked Lua goroutine holds no stack at all (README, "stacks").
*/
#define LG_STACKSIZE (1024 * 1024)

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
  if (!lua_checkstack(co, n + 1)) {
    lg_put(U, lg);
    return luaL_error(L, "goro: too many arguments");
  }
  lua_xmove(L, co, n);   /* the function and its arguments */
  lua_pushcfunction(co, lgoro_start_guard);   /* lblock.c, coroutine.* */
  lg->fresh = true;
  goro_spawn_opts opts = { U->token, lg, LG_STACKSIZE };
  int64_t id = goro_spawn_ex(lg_run, lg, &opts);
  if (id < 0) {
    lua_settop(co, 0);
    lg_put(U, lg);
    return luaL_error(L, "goro: cannot spawn: %s", goro_strerror((int)id));
  }
  /* It cannot run before we give up the token: safe to finish it now. */
  lg->id = id;
  U->nlive++;
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

/* The goroutines of this Lua state: another state's, or a C host's C
** tasks, are none of its business (and go.wait does not wait for them). */
static int l_numgoroutine(lua_State *L) {
  lua_pushinteger(L, lgoro_universe(L)->nlive);
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
  if (U->closing)
    return luaL_error(L, "goro: the Lua state is closing");
  int prev = goro_running() ? goro_gomaxprocs() : (U->nprocs ? U->nprocs : default_procs());
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "must be between 1 and 1024");
    if (goro_running() && n != prev) {
      if (U->nlive > 0)
        return luaL_error(L, "gomaxprocs: cannot change the number of Ps "
                             "while goroutines are alive");
      if (goro_getlocal() != &U->main)
        return luaL_error(L, "gomaxprocs: only the main thread can change it");
      if (!runtime_restartable(U))
        return luaL_error(L, "gomaxprocs: cannot change the number of Ps "
                             "while another Lua state or the host uses the runtime");
      /* The last goroutine to end woke go.wait just before its G exits. */
      goro_wait(-1);
      goro_shutdown();
    }
    U->nprocs = (int)n;
  }
  lua_pushinteger(L, prev);
  return 1;
}

/*
** go.wait(): park until every other goroutine of this Lua state has ended
** or is itself in go.wait (Go has no such call; it is a WaitGroup over all
** of them).  Waiters receive from a channel of the universe that is closed
** when that holds, so they block the way a receive does on every path and
** count as blocked for the deadlock check; each round of waiters has its
** own channel (a WaitAll), freed by the last waiter to wake.  Everything
** here runs with the universe's token held.
*/
struct WaitAll {
  goro_chan *c;
  int refs;                 /* waiters that have not woken yet */
  WaitAll *next;            /* the universe's rounds not yet freed */
};

/* Wake every waiter if nothing else is left to wait for. */
static void waitall_check(Universe *U) {
  WaitAll *w = U->waitall;
  if (w == NULL || U->nlive != U->nwaitall)
    return;
  U->waitall = NULL;
  U->nwaitall = 0;
  goro_chan_close(w->c);
}

static void waitall_unref(Universe *U, WaitAll *w) {
  if (--w->refs > 0 || w == U->waitall)
    return;
  WaitAll **p = &U->waitrounds;
  while (*p != w)
    p = &(*p)->next;
  *p = w->next;
  goro_chan_free(w->c);
  free(w);
}

void lgoro_waitall_free(Universe *U) {
  for (WaitAll *w = U->waitrounds, *next; w; w = next) {
    next = w->next;
    goro_chan_free(w->c);
    free(w);
  }
  U->waitrounds = NULL;
  U->waitall = NULL;
}

static int wait_results(lua_State *L, LG *lg, int rc) {
  (void)L; (void)rc;
  WaitAll *w = lg->waitall;
  lg->waitall = NULL;
  waitall_unref(lg->U, w);
  return 0;
}

static int l_wait(lua_State *L) {
  LG *lg = lgoro_current(L);
  Universe *U = lg->U;
  if (!goro_running())
    return 0;
  bool goroutine = lg != &U->main;
  if (U->nlive - U->nwaitall - (goroutine ? 1 : 0) == 0) {
    /* Everybody else waits already: this was what they waited for. */
    if (U->waitall) {
      U->nwaitall += goroutine;
      waitall_check(U);
    }
    return 0;
  }
  WaitAll *w = U->waitall;
  if (w == NULL) {
    w = calloc(1, sizeof *w);
    if (w == NULL || (w->c = goro_chan_new(sizeof(lvalue), 0)) == NULL) {
      free(w);
      return luaL_error(L, "goro: out of memory");
    }
    goro_chan_setwaitreason(w->c, "semacquire");   /* as Go's WaitGroup */
    w->next = U->waitrounds;
    U->waitrounds = w;
    U->waitall = w;
  }
  w->refs++;
  U->nwaitall += goroutine;
  lg->waitall = w;
  lg->c = w->c;
  return lgoro_block(L, lg, OP_RECV, wait_results);
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
  lua_pushliteral(L, LGORO_VERSION);
  lua_setfield(L, -2, "_VERSION");
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
