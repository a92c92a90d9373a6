/*
** lsync.c — go.waitgroup and go.mutex, built on channels so that they
** block the way channels do, on every path (lgoro.h), and are served FIFO.
**
**   mutex      a channel of capacity 1: lock sends, unlock receives.
**   waitgroup  a counter and a "done" channel that is closed when the
**              counter falls to zero; wait receives from it.  The channel
**              is the userdata's user value, so a waiter's Lua stack keeps
**              it alive; after it is closed, the next add makes a new one.
**
** Methods check `self` (luaL_checkudata).  A mutex finalised while Lua can
** still reach it (resurrected by another finaliser, or __gc called by
** hand) is inert: c == NULL, every method raises.  A waitgroup has no
** finaliser, but its done channel does: a waitgroup whose channel was
** finalised raises in the same way.
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
  Mutex *mu = luaL_checkudata(L, 1, LGORO_MUTEX);
  if (mu->c == NULL)
    luaL_error(L, "goro: mutex used after it was finalised");
  return mu->c;
}

static int l_mutex(lua_State *L) {
  if (lgoro_closing(L, lgoro_universe(L)))   /* see lgoro_newchan */
    return luaL_error(L, "goro: the Lua state is closing");
  Mutex *mu = lua_newuserdatauv(L, sizeof *mu, 0);
  memset(mu, 0, sizeof *mu);
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
  Mutex *mu = luaL_checkudata(L, 1, LGORO_MUTEX);
  goro_chan *c = mu->c;
  mu->c = NULL;
  if (c)
    lgoro_chan_dispose(lgoro_universe(L), c);
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

/* The done channel on top of the stack, the user value of wg. */
static goro_chan *wgchan(lua_State *L) {
  LChan *ch = luaL_testudata(L, -1, LGORO_CHAN);
  if (ch == NULL || ch->c == NULL)
    luaL_error(L, "goro: waitgroup used after it was finalised");
  return ch->c;
}

/* The done channel of wg at index 1, made if needed; pushed. */
static goro_chan *donechan(lua_State *L) {
  if (lua_getiuservalue(L, 1, 1) == LUA_TNIL) {
    lua_pop(L, 1);
    goro_chan_setwaitreason(lgoro_newchan(L, 0)->c, "semacquire");
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  return wgchan(L);
}

static void add(lua_State *L, WaitGroup *wg, lua_Integer n) {
  lua_Integer c;
  if (__builtin_add_overflow(wg->count, n, &c))
    luaL_error(L, "sync: WaitGroup counter overflow");
  if (c < 0)
    luaL_error(L, "sync: negative WaitGroup counter");
  if (wg->count == 0 && c == 0)
    return;
  goro_chan *done = donechan(L);   /* checked before anything changes */
  wg->count = c;
  if (c == 0) {
    /* Wake every waiter; the next round gets a new channel. */
    goro_chan_close(done);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
  }
  lua_pop(L, 1);
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
  luaL_setfuncs(L, wg_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, l_mutex, 1);
  lua_setfield(L, module, "mutex");
  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, l_waitgroup, 1);
  lua_setfield(L, module, "waitgroup");
}
