/*
** lchan.c — channels and select for Lua: values in 16 bytes, channel
** objects, go.chan and go.select.
*/
#include <stdlib.h>
#include <string.h>

#include "lgoro.h"


/*
** {======================================================
** Values
** =======================================================
*/

/* Store the value at idx (not nil) into v.  Every type is accepted;
** what does not fit inline is anchored in the registry. */
void lvalue_from(lua_State *L, int idx, lvalue *v) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
      v->tag = lua_toboolean(L, idx) ? LV_TRUE : LV_FALSE;
      return;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        v->u.i = lua_tointeger(L, idx);
        v->tag = LV_INT;
      } else {
        v->u.n = lua_tonumber(L, idx);
        v->tag = LV_NUM;
      }
      return;
    case LUA_TLIGHTUSERDATA:
      v->u.p = lua_touserdata(L, idx);
      v->tag = LV_LIGHT;
      return;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      if (len <= 15) {
        memcpy((char *)v, s, len);
        v->tag = (uint8_t)(LV_STR + len);
        return;
      }
      break;
    }
    case LUA_TNIL:
      return;
    default:
      break;
  }
  lua_pushvalue(L, idx);
  v->u.ref = luaL_ref(L, LUA_REGISTRYINDEX);
  v->tag = LV_REF;
}

/* Push v and release what it holds. */
void lvalue_push(lua_State *L, lvalue *v) {
  switch (v->tag) {
    case LV_NIL: lua_pushnil(L); break;
    case LV_FALSE: lua_pushboolean(L, 0); break;
    case LV_TRUE: lua_pushboolean(L, 1); break;
    case LV_INT: lua_pushinteger(L, v->u.i); break;
    case LV_NUM: lua_pushnumber(L, v->u.n); break;
    case LV_LIGHT: lua_pushlightuserdata(L, v->u.p); break;
    case LV_REF:
      lua_rawgeti(L, LUA_REGISTRYINDEX, v->u.ref);
      luaL_unref(L, LUA_REGISTRYINDEX, v->u.ref);
      break;
    default:
      lua_pushlstring(L, (const char *)v, (size_t)(v->tag - LV_STR));
      break;
  }
  v->tag = LV_NIL;
}

void lvalue_release(lua_State *L, lvalue *v) {
  if (v->tag == LV_REF)
    luaL_unref(L, LUA_REGISTRYINDEX, v->u.ref);
  v->tag = LV_NIL;
}

/* }====================================================== */


/*
** {======================================================
** Channel objects
** =======================================================
*/

goro_chan *lgoro_checkchan(lua_State *L, int idx) {
  LChan *ch = luaL_checkudata(L, idx, LGORO_CHAN);
  return ch->c;
}

/* The channel `self` of a method, whose upvalue 2 is the metatable: one
** pointer comparison instead of luaL_checkudata's registry lookup. */
static goro_chan *checkself(lua_State *L) {
  LChan *ch = lua_touserdata(L, 1);
  if (ch && lua_getmetatable(L, 1)) {
    bool same = lua_rawequal(L, -1, lua_upvalueindex(2));
    lua_pop(L, 1);
    if (same)
      return ch->c;
  }
  return lgoro_checkchan(L, 1);   /* raises the usual error */
}

/* The channel at idx, or NULL; `mt` is the index of the channel
** metatable (a pointer comparison, not luaL_testudata's registry lookup). */
static goro_chan *testchan(lua_State *L, int idx, int mt) {
  LChan *ch = lua_touserdata(L, idx);
  if (ch == NULL || !lua_getmetatable(L, idx))
    return NULL;
  bool same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return same ? ch->c : NULL;
}

LChan *lgoro_newchan(lua_State *L, size_t cap) {
  LChan *ch = lua_newuserdatauv(L, sizeof *ch, 0);
  ch->c = NULL;
  ch->timer = NULL;
  luaL_setmetatable(L, LGORO_CHAN);
  ch->c = goro_chan_new(sizeof(lvalue), cap);
  if (ch->c == NULL)
    luaL_error(L, "goro: out of memory");
  return ch;
}

/* go.chan([cap]) */
static int l_chan(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, cap >= 0 && cap <= (1 << 30), 1, "capacity out of range");
  lgoro_newchan(L, (size_t)cap);
  return 1;
}

/*
** __gc: values still buffered give back their references.  A channel
** with waiters cannot be unreachable while Lua runs (each waiter's Lua
** stack holds it); at lua_close everything is finalised, so then it is
** left to the universe, which frees it once the runtime has stopped.
*/
static int chan_gc(lua_State *L) {
  LChan *ch = lua_touserdata(L, 1);
  if (ch->c == NULL)
    return 0;
  goro_timer_free(ch->timer);   /* no send from it after this */
  ch->timer = NULL;
  lvalue v;
  bool ok;
  while (goro_chan_tryrecv(ch->c, &v, &ok) == GORO_OK && ok)
    lvalue_release(L, &v);
  if (goro_chan_waiting(ch->c))
    lgoro_orphan(lgoro_universe(L), ch->c);
  else
    goro_chan_free(ch->c);
  ch->c = NULL;
  return 0;
}

static int send_results(lua_State *L, LG *lg, int rc) {
  if (rc == GORO_ECLOSED) {
    lvalue_release(L, &lg->val);
    return luaL_error(L, "send on closed channel");
  }
  return 0;
}

/* ch:send(v) */
static int chan_send(lua_State *L) {
  goro_chan *c = checkself(L);
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "non-nil value");
  LG *lg = lgoro_current(L);
  lvalue v;
  lvalue_from(L, 2, &v);
  int rc = goro_chan_trysend(c, &v);
  if (rc != GORO_EAGAIN) {
    lg->val = v;
    return send_results(L, lg, rc);
  }
  lg->c = c;
  lg->val = v;
  return lgoro_block(L, lg, OP_SEND, send_results);
}

static int recv_results(lua_State *L, LG *lg, int rc) {
  (void)rc;
  lvalue_push(L, &lg->val);
  lua_pushboolean(L, lg->ok);
  return 2;
}

/* ch:recv() -> v, ok */
static int chan_recv(lua_State *L) {
  goro_chan *c = checkself(L);
  LG *lg = lgoro_current(L);
  if (goro_chan_tryrecv(c, &lg->val, &lg->ok) == GORO_OK)
    return recv_results(L, lg, GORO_OK);
  lg->c = c;
  return lgoro_block(L, lg, OP_RECV, recv_results);
}

static int chan_close(lua_State *L) {
  goro_chan *c = lgoro_checkchan(L, 1);
  if (goro_chan_close(c) == GORO_ECLOSED)
    return luaL_error(L, "close of closed channel");
  return 0;
}

static int chan_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)goro_chan_len(lgoro_checkchan(L, 1)));
  return 1;
}

static int chan_cap(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)goro_chan_cap(lgoro_checkchan(L, 1)));
  return 1;
}

static int iter_results(lua_State *L, LG *lg, int rc) {
  (void)rc;
  lvalue_push(L, &lg->val);   /* nil once closed and drained */
  return 1;
}

/* The iterator of ch:iter(): called as f(ch). */
static int chan_iter_next(lua_State *L) {
  goro_chan *c = checkself(L);
  LG *lg = lgoro_current(L);
  if (goro_chan_tryrecv(c, &lg->val, &lg->ok) == GORO_OK)
    return iter_results(L, lg, GORO_OK);
  lg->c = c;
  return lgoro_block(L, lg, OP_RECV, iter_results);
}

/* for v in ch:iter() do ... end */
static int chan_iter(lua_State *L) {
  lgoro_checkchan(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 1);
  return 2;
}

static int chan_tostring(lua_State *L) {
  goro_chan *c = lgoro_checkchan(L, 1);
  lua_pushfstring(L, "goro.chan(%d): %p", (int)goro_chan_cap(c), (void *)c);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** select
** =======================================================
*/

/* Room for n cases: lg's own buffers when free, else (a select inside a
** finaliser that interrupted a select) a userdata left on the stack. */
static void selbuf_get(lua_State *L, LG *lg, int n) {
  selbuf *b = &lg->sel;
  if (!b->busy) {
    if (b->cap < n) {
      int cap = n < 8 ? 8 : n;
      void *p = realloc(b->cases, (size_t)cap * (sizeof(goro_select_case) + sizeof(lvalue)));
      if (p == NULL)
        luaL_error(L, "goro: out of memory");
      b->cases = p;
      b->cap = cap;
    }
    b->vals = (lvalue *)(b->cases + b->cap);
    b->busy = true;
    lg->cases = b->cases;
    lg->vals = b->vals;
  } else {
    goro_select_case *p = lua_newuserdatauv(L, (size_t)n * (sizeof *p + sizeof(lvalue)), 0);
    lg->cases = p;
    lg->vals = (lvalue *)(p + n);
  }
}

static void selbuf_put(LG *lg) {
  if (lg->cases == lg->sel.cases)
    lg->sel.busy = false;
}

/* After a select: release the values of the sends that did not happen. */
static void release_unsent(lua_State *L, LG *lg, int except) {
  for (int i = 0; i < lg->ncases; i++)
    if (i != except && lg->cases[i].c && lg->cases[i].dir == GORO_SELECT_SEND)
      lvalue_release(L, &lg->vals[i]);
}

static int select_results(lua_State *L, LG *lg, int rc) {
  int i = lg->chosen;
  if (rc == GORO_EAGAIN) {             /* default: nothing was ready */
    release_unsent(L, lg, -1);
    selbuf_put(lg);
    lua_pushnil(L);
    return 1;
  }
  release_unsent(L, lg, rc == GORO_OK ? i : -1);
  goro_select_case *cas = &lg->cases[i];
  if (rc == GORO_ECLOSED) {
    selbuf_put(lg);
    return luaL_error(L, "send on closed channel");
  }
  lua_pushinteger(L, i + 1);
  if (cas->dir == GORO_SELECT_SEND) {
    selbuf_put(lg);
    return 1;
  }
  lvalue_push(L, &lg->vals[i]);
  lua_pushboolean(L, cas->ok);
  selbuf_put(lg);
  return 3;
}

/*
** go.select{ a, b, {c, v}, false, default = true } -> i, v, ok
** Checked fully before any value is stored, so that a bad case raises
** with nothing to release.
*/
static int l_select(lua_State *L) {
  const int mt = lua_upvalueindex(2);
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  luaL_argcheck(L, n <= 65535, 1, "too many cases");
  lua_getfield(L, 1, "default");
  bool block = !lua_toboolean(L, -1);
  lua_pop(L, 1);
  for (int i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 1, i);
    if (t == LUA_TTABLE) {
      lua_rawgeti(L, -1, 1);
      if (testchan(L, -1, mt) == NULL)
        return luaL_error(L, "bad argument #1 to 'select' (case %d: send "
                             "case {ch, value} without a channel)", i);
      if (lua_rawgeti(L, -2, 2) == LUA_TNIL)
        return luaL_error(L, "bad argument #1 to 'select' (case %d: send "
                             "of nil)", i);
      lua_pop(L, 2);
    } else if (!(t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) &&
               testchan(L, -1, mt) == NULL) {
      return luaL_error(L, "bad argument #1 to 'select' (case %d: channel, "
                           "{channel, value} or false expected, got %s)",
                        i, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  LG *lg = lgoro_current(L);
  selbuf_get(L, lg, n);
  lg->ncases = n;
  for (int i = 0; i < n; i++) {
    goro_select_case *cas = &lg->cases[i];
    lvalue *v = &lg->vals[i];
    memset(v, 0, sizeof *v);
    int t = lua_rawgeti(L, 1, i + 1);
    if (t == LUA_TTABLE) {
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      *cas = (goro_select_case){ testchan(L, -2, mt), GORO_SELECT_SEND, v, false };
      lvalue_from(L, -1, v);
      lua_pop(L, 2);
    } else if (t == LUA_TBOOLEAN) {
      *cas = (goro_select_case){ NULL, GORO_SELECT_RECV, v, false };
    } else {
      *cas = (goro_select_case){ testchan(L, -1, mt), GORO_SELECT_RECV, v, false };
    }
    lua_pop(L, 1);
  }
  /* A select that will block anyway skips the non-blocking attempt (a
  ** round of locking every channel) when no case looks ready. */
  int rc = GORO_EAGAIN;
  if (!block || goro_select_maybe_ready(lg->cases, n))
    rc = goro_select(lg->cases, n, false, &lg->chosen);
  if (rc == GORO_ENOMEM || rc == GORO_EINVAL) {
    release_unsent(L, lg, -1);
    selbuf_put(lg);
    return luaL_error(L, "select: %s", goro_strerror(rc));
  }
  if (rc != GORO_EAGAIN || !block)
    return select_results(L, lg, rc);
  for (int i = 0; i < n; i++)
    if (lg->cases[i].c)
      return lgoro_block(L, lg, OP_SELECT, select_results);
  /* No case at all: Go's select {} blocks for good.  So does a receive
  ** from a channel nobody else can reach, and the deadlock check still
  ** sees the main thread blocked. */
  selbuf_put(lg);
  lg->c = lg->U->never;
  return lgoro_block(L, lg, OP_RECV, recv_results);
}

/* }====================================================== */


void lgoro_open_chan(lua_State *L, Universe *U) {
  static const luaL_Reg methods[] = {
    {"send", chan_send},
    {"recv", chan_recv},
    {"close", chan_close},
    {"len", chan_len},
    {"cap", chan_cap},
    {NULL, NULL}
  };
  luaL_newmetatable(L, LGORO_CHAN);
  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, chan_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, chan_len, 1);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, chan_tostring);
  lua_setfield(L, -2, "__tostring");
  int mt = lua_gettop(L);
  lua_createtable(L, 0, 6);
  lua_pushlightuserdata(L, U);
  lua_pushvalue(L, mt);
  luaL_setfuncs(L, methods, 2);
  lua_pushlightuserdata(L, U);
  lua_pushlightuserdata(L, U);
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, chan_iter_next, 2);
  lua_pushcclosure(L, chan_iter, 2);
  lua_setfield(L, -2, "iter");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, l_chan, 1);
  lua_setfield(L, -2, "chan");
  lua_pushlightuserdata(L, U);
  luaL_getmetatable(L, LGORO_CHAN);
  lua_pushcclosure(L, l_select, 2);
  lua_setfield(L, -2, "select");
}
