/*
** lsync.c — go.waitgroup and go.mutex, built on channels so that they
** block the way channels do, on every path (lgoro.h), and are served FIFO.
**
**   mutex      a channel of capacity 1: lock sends, unlock receives.
**   waitgroup  a counter and a "done" channel that is closed when the
**              counter falls to zero; wait receives from it.  The channel
**              is the userdata's user value, so a waiter's Lua stack keeps
**              it alive; after it is closed, the next add makes a new one.
*/
#include <string.h>

#include "lgoro.h"

typedef struct Mutex {
  goro_chan *c;
} Mutex;

typedef struct WaitGroup {
  lua_Integer count;
} WaitGroup;


/*
** {======================================================
** go.mutex
** =======================================================
*/

static goro_chan *checkmutex(lua_State *L) {
  return ((Mutex *)luaL_checkudata(L, 1, LGORO_MUTEX))->c;
}

static int l_mutex(lua_State *L) {
  Mutex *mu = lua_newuserdatauv(L, sizeof *mu, 0);
  mu->c = NULL;
  luaL_setmetatable(L, LGORO_MUTEX);
  mu->c = goro_chan_new(sizeof(lvalue), 1);
  if (mu->c == NULL)
    return luaL_error(L, "goro: out of memory");
  goro_chan_setwaitreason(mu->c, "semacquire");   /* Go's word in a dump */
  return 1;
}

static int lock_results(lua_State *L, LG *lg, int rc) {
  (void)L; (void)lg; (void)rc;
  return 0;
}

/* mu:lock() */
static int mutex_lock(lua_State *L) {
  goro_chan *c = checkmutex(L);
  LG *lg = lgoro_current(L);
  memset(&lg->val, 0, sizeof lg->val);
  if (goro_chan_trysend(c, &lg->val) == GORO_OK)
    return 0;
  lg->c = c;
  return lgoro_block(L, lg, OP_SEND, lock_results);
}

/* mu:trylock() -> boolean */
static int mutex_trylock(lua_State *L) {
  goro_chan *c = checkmutex(L);
  lvalue v;
  memset(&v, 0, sizeof v);
  lua_pushboolean(L, goro_chan_trysend(c, &v) == GORO_OK);
  return 1;
}

/* mu:unlock(): as in Go, any goroutine may unlock; an unlocked one is an
** error. */
static int mutex_unlock(lua_State *L) {
  goro_chan *c = checkmutex(L);
  lvalue v;
  bool ok;
  if (goro_chan_tryrecv(c, &v, &ok) != GORO_OK)
    return luaL_error(L, "sync: unlock of unlocked mutex");
  return 0;
}

static int mutex_gc(lua_State *L) {
  Mutex *mu = lua_touserdata(L, 1);
  if (mu->c && goro_chan_waiting(mu->c))
    lgoro_orphan(lgoro_universe(L), mu->c);
  else
    goro_chan_free(mu->c);
  mu->c = NULL;
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** go.waitgroup
** =======================================================
*/

static WaitGroup *checkwg(lua_State *L) {
  return luaL_checkudata(L, 1, LGORO_WAITGROUP);
}

static int l_waitgroup(lua_State *L) {
  WaitGroup *wg = lua_newuserdatauv(L, sizeof *wg, 1);
  wg->count = 0;
  luaL_setmetatable(L, LGORO_WAITGROUP);
  return 1;
}

/* The done channel of wg at index 1, made if needed; pushed. */
static goro_chan *donechan(lua_State *L) {
  if (lua_getiuservalue(L, 1, 1) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    lua_getfield(L, lua_upvalueindex(2), "chan");   /* go.chan */
    lua_call(L, 0, 1);
    goro_chan_setwaitreason(lgoro_checkchan(L, -1), "semacquire");
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  return lgoro_checkchan(L, -1);
}

static void add(lua_State *L, WaitGroup *wg, lua_Integer n) {
  lua_Integer c;
  if (__builtin_add_overflow(wg->count, n, &c))
    luaL_error(L, "sync: WaitGroup counter overflow");
  if (c < 0)
    luaL_error(L, "sync: negative WaitGroup counter");
  if (wg->count == 0 && c > 0) {
    donechan(L);
    lua_pop(L, 1);
  }
  wg->count = c;
  if (c == 0 && n != 0) {
    /* Wake every waiter; the next round gets a new channel. */
    if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA)
      goro_chan_close(lgoro_checkchan(L, -1));
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
  }
}

/* wg:add(n) */
static int wg_add(lua_State *L) {
  WaitGroup *wg = checkwg(L);
  add(L, wg, luaL_checkinteger(L, 2));
  return 0;
}

/* wg:done() */
static int wg_done(lua_State *L) {
  add(L, checkwg(L), -1);
  return 0;
}

static int wait_results(lua_State *L, LG *lg, int rc) {
  (void)rc;
  lvalue_release(L, &lg->val);
  return 0;
}

/* wg:wait() */
static int wg_wait(lua_State *L) {
  WaitGroup *wg = checkwg(L);
  if (wg->count == 0)
    return 0;
  goro_chan *c = donechan(L);   /* stays on the stack while we wait */
  LG *lg = lgoro_current(L);
  lg->c = c;
  return lgoro_block(L, lg, OP_RECV, wait_results);
}

static int wg_tostring(lua_State *L) {
  lua_pushfstring(L, "goro.waitgroup(%I)", checkwg(L)->count);
  return 1;
}

/* }====================================================== */


void lgoro_open_sync(lua_State *L, Universe *U) {
  static const luaL_Reg mutex_methods[] = {
    {"lock", mutex_lock},
    {"unlock", mutex_unlock},
    {"trylock", mutex_trylock},
    {NULL, NULL}
  };
  static const luaL_Reg wg_methods[] = {
    {"add", wg_add},
    {"done", wg_done},
    {"wait", wg_wait},
    {NULL, NULL}
  };
  int module = lua_gettop(L);

  luaL_newmetatable(L, LGORO_MUTEX);
  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, mutex_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_createtable(L, 0, 3);
  lua_pushlightuserdata(L, U);
  luaL_setfuncs(L, mutex_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, LGORO_WAITGROUP);
  lua_pushcfunction(L, wg_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_createtable(L, 0, 3);
  lua_pushlightuserdata(L, U);
  lua_pushvalue(L, module);
  luaL_setfuncs(L, wg_methods, 2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, l_mutex, 1);
  lua_setfield(L, module, "mutex");
  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, l_waitgroup, 1);
  lua_setfield(L, module, "waitgroup");
}
