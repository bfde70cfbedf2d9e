/* fuzz_json.c - libFuzzer target: the JSON codec agrees with itself.
 *
 * For any text amc_json_decode takes (value v), the canonical encoding c
 * of v must:
 *   - come out the same when encoded again (the key cache then hits), and
 *     through a memo (twice: the second time from the memo) and a tape;
 *   - decode to a value equal to v, with amc_json_decode and with the
 *     canonical fast path alike (same tables, same key order: lua_same);
 *   - encode again to c (canonical is a fixed point);
 *   - re-indent (amc_json_pretty_canonical) to what amc_json_encode_pretty
 *     prints for v.
 * The same value built otherwise (tables filled after their creation, arrays
 * from either end, some without the array metatable: see rebuild) must
 * encode to c as well, with the same tape.
 * amc_json_strings_at must not misbehave on any text, and the text as a
 * JSON file loads as its spans do (loader_spans.h). canon.h's direct
 * path must store what the loader stores wherever it takes a text
 * (canon_same.h): the text as an item and as a whole file's value, each
 * span the text is cut into (as the fs source loads a file), and the text
 * as an object's spec; whatever amc_canon_json takes, amc_json_decode
 * takes. A value the encoder
 * refuses (a number JSON cannot hold) is fine; anything else aborts (the
 * fuzzer keeps the input). The stack must be as it was after each call. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canon_same.h"
#include "json.h"
#include "loader_spans.h"
#include "lua_same.h"
#include "util/buf.h"

static lua_State *L;
static canon_same_t cs;

static void must(int ok) {
  if (!ok)
    abort();
}

static int same_bytes(const amc_buf_t *a, const amc_buf_t *b) {
  return a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

static void count_string(const char *s, size_t len, void *ud) {
  (void)s;
  *(size_t *)ud += len;
}

/* Pushes a copy of the value at idx built otherwise than the decoders
 * build it: arrays with some of their elements in the table's hash part
 * (created for part of them, the rest set from the last one down, so
 * that lua_next meets them out of order, or in order up to a point: the
 * encoder's second walk), or grown from empty from the middle out; non-
 * empty arrays lose the array metatable every other level (they are
 * arrays by their keys then); objects grow from empty. Its canonical
 * encoding is the original's. */
static void rebuild(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) {
    lua_pushvalue(L, idx);
    return;
  }
  luaL_checkstack(L, 8, "rebuild");
  int marked = lua_getmetatable(L, idx);
  if (!marked) {
    lua_newtable(L);
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pushvalue(L, -2);
      rebuild(L, -2, depth + 1);
      lua_rawset(L, t);
      lua_pop(L, 1);
    }
    return;
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  int how = depth % 3;
  lua_Integer in_array = how == 0 ? n / 2 : how == 1 ? 0 : n;
  if (how == 2)
    lua_newtable(L);
  else
    lua_createtable(L, (int)in_array, (int)(n - in_array));
  int t = lua_gettop(L);
  for (lua_Integer j = 0; j < n; j++) {
    lua_Integer i = how == 2       ? (j % 2 ? n / 2 - j / 2 : n / 2 + 1 + j / 2)
                    : j < in_array ? j + 1
                                   : n - (j - in_array);
    lua_rawgeti(L, idx, i);
    rebuild(L, -1, depth + 1);
    lua_rawseti(L, t, i);
    lua_pop(L, 1);
  }
  if (n == 0 || depth % 2 == 0) {
    lua_pushvalue(L, t - 1); /* the metatable */
    lua_setmetatable(L, t);
  }
  lua_remove(L, t - 1);
}

/* The token kinds of v's canonical tape (no memo). */
static int tape_kinds(lua_State *L, int v, amc_buf_t *out, amc_buf_t *kinds) {
  amc_json_tape_t tape = AMC_JSON_TAPE_INIT;
  char err[512];
  int rc = amc_json_encode_tape(L, v, out, NULL, &tape, err, sizeof err);
  for (size_t i = 0; rc == 0 && i < tape.n; i++)
    amc_buf_putc(kinds, (char)('A' + tape.tok[i].kind));
  if (tape.failed)
    rc = -1;
  amc_json_tape_free(&tape);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
    cs.direct = amc_canon_new();
    cs.ref = amc_canon_new();
  }
  const char *text = (const char *)data;
  whole_vs_spans(L, text, size, 1);
  char err[512];
  {
    amc_loader_span_t item = {text, size, 0, 3}, file = {text, size, 0, 0};
    must(canon_same(L, &cs, "f.json", &item, 1) >= 0);
    must(canon_same(L, &cs, "f.json", &file, 1) >= 0);
    amc_loader_span_t *spans = NULL;
    long n = amc_loader_split(text, size, 1, &spans);
    for (long i = 0; i < n; i++)
      must(canon_same(L, &cs, "f.json", &spans[i], 1) >= 0);
    free(spans);
    amc_buf_t w = AMC_BUF_INIT;
    canon_wrap_json(&w, text, size);
    amc_loader_span_t ws = {w.data, w.len, 0, 1};
    must(canon_same(L, &cs, "w.json", &ws, 1) >= 0);
    amc_buf_free(&w);
    /* what the direct parser takes, the decoder takes exactly when no
     * key repeats (the loader's envelope check relies on it); what the
     * direct path takes, the decoder takes (the fs source's error
     * pre-check relies on it) */
    int top0 = lua_gettop(L);
    amc_canon_obj_t o;
    if (amc_canon_parse_json(cs.direct, text, size) == 0)
      must((amc_json_decode(L, text, size, err, sizeof err) == 0) ==
           (amc_canon_unique_keys(cs.direct) == 0));
    lua_settop(L, top0);
    if (amc_canon_json(cs.direct, text, size, NULL, &o) == 0)
      must(amc_json_decode(L, text, size, err, sizeof err) == 0);
    lua_settop(L, top0);
  }
  size_t total = 0;
  static const char *const path[] = {"metadata", "name"};
  amc_json_strings_at(text, size, path, 2, count_string, &total);
  amc_json_strings_at(text, size, path, 1, count_string, &total);

  int top = lua_gettop(L);
  if (amc_json_decode(L, text, size, err, sizeof err) != 0) {
    must(lua_gettop(L) == top);
    return 0;
  }
  int v = lua_gettop(L);
  amc_buf_t c = AMC_BUF_INIT, again = AMC_BUF_INIT, memo1 = AMC_BUF_INIT,
            memo2 = AMC_BUF_INIT, taped = AMC_BUF_INIT, fixed = AMC_BUF_INIT,
            pretty = AMC_BUF_INIT, repretty = AMC_BUF_INIT;
  if (amc_json_encode(L, v, &c, err, sizeof err) != 0)
    goto done; /* e.g. a number out of range: refused, not a crash */
  /* The other buffers start with room and junk in it: an encoder's
   * fixed-size copies then run, and a byte they fail to write shows. */
  amc_buf_t *room[] = {&again, &memo1, &memo2, &taped, &fixed};
  for (size_t i = 0; i < sizeof room / sizeof *room; i++)
    memset(amc_buf_reserve(room[i], 2 * c.len + 4096), '#', 2 * c.len + 4096);
  must(lua_gettop(L) == v);
  must(amc_json_encode(L, v, &again, err, sizeof err) == 0);
  must(same_bytes(&c, &again));

  amc_json_memo_t *m = amc_json_memo_new();
  must(m != NULL);
  must(amc_json_encode_memo(L, v, &memo1, m, err, sizeof err) == 0);
  must(amc_json_encode_memo(L, v, &memo2, m, err, sizeof err) == 0);
  amc_json_tape_t tape = AMC_JSON_TAPE_INIT;
  must(amc_json_encode_tape(L, v, &taped, m, &tape, err, sizeof err) == 0);
  amc_json_tape_free(&tape);
  amc_json_memo_free(m);
  must(same_bytes(&c, &memo1) && same_bytes(&c, &memo2) &&
       same_bytes(&c, &taped));

  /* canonical text: both decoders, the same tables */
  must(amc_json_decode(L, c.data, c.len, err, sizeof err) == 0);
  must(amc_json_decode_canonical(L, c.data, c.len, err, sizeof err) == 0);
  must(lua_same(L, -2, -1));
  must(lua_equal(L, v, -1));
  must(amc_json_encode(L, -1, &fixed, err, sizeof err) == 0);
  must(same_bytes(&c, &fixed));
  lua_settop(L, v);

  /* built otherwise: same bytes, same tape */
  {
    amc_buf_t t1 = AMC_BUF_INIT, t2 = AMC_BUF_INIT, k1 = AMC_BUF_INIT,
              k2 = AMC_BUF_INIT;
    rebuild(L, v, 0);
    must(tape_kinds(L, v, &t1, &k1) == 0);
    must(tape_kinds(L, -1, &t2, &k2) == 0);
    must(same_bytes(&c, &t1) && same_bytes(&c, &t2) && same_bytes(&k1, &k2));
    lua_settop(L, v);
    amc_buf_free(&t1);
    amc_buf_free(&t2);
    amc_buf_free(&k1);
    amc_buf_free(&k2);
  }

  must(amc_json_encode_pretty(L, v, &pretty, err, sizeof err) == 0);
  must(amc_json_pretty_canonical(c.data, c.len, &repretty) == 0);
  must(same_bytes(&pretty, &repretty));
done:
  amc_buf_free(&c);
  amc_buf_free(&again);
  amc_buf_free(&memo1);
  amc_buf_free(&memo2);
  amc_buf_free(&taped);
  amc_buf_free(&fixed);
  amc_buf_free(&pretty);
  amc_buf_free(&repretty);
  lua_settop(L, top);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
