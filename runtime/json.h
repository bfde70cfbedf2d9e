/* json.h - JSON text <-> Lua values, and canonical JSON.
 *
 * amc keeps every object as Lua tables while it works on it and as canonical
 * JSON text when it stores, compares or sends it. This module is the one
 * codec between the two (lua-cjson's number and array handling does not fit:
 * see docs/architecture.md).
 *
 * Decoding (amc_json_decode):
 *   - objects -> tables; arrays -> sequences carrying the shared array
 *     metatable (registry key AMC_JSON_ARRAY_MT), so `[]` survives a round
 *     trip; null -> the light userdata AMC_JSON_NULL (exposed to Lua as
 *     rt.null / json null);
 *   - integral numbers that fit in int64 -> Lua integers, others -> floats;
 *   - strings must be valid UTF-8 after unescaping (\uXXXX pairs included);
 *   - nesting is limited to AMC_JSON_MAX_DEPTH.
 *   On error nothing is left on the stack and `err` holds
 *   "line L, column C: <problem>".
 *
 * Canonical encoding (amc_json_encode):
 *   - object keys sorted bytewise; no whitespace; integers as integers;
 *     floats in the shortest form that round-trips ("%.17g" trimmed), and
 *     integral floats as integers (1.0 -> 1);
 *   - a table is an array when it carries the array metatable or its keys
 *     are exactly 1..n (n >= 1); an empty table without it is `{}`;
 *   - strings escaped minimally ("\"", "\\", control characters); '/' is not
 *     escaped;
 *   - errors (returned, with `err` set): a key that is neither a string nor
 *     part of an array, NaN/Inf, functions/userdata (other than null), cycles
 *     or depth > AMC_JSON_MAX_DEPTH. The error names the path, e.g.
 *     "spec.servers[2].port: cannot encode a function".
 *   The same Lua value always gives the same bytes.
 *
 * Neither function raises Lua errors out of itself; both need a lua_State
 * with room for AMC_JSON_MAX_DEPTH + 8 stack slots (checked). */
#ifndef AMC_JSON_H
#define AMC_JSON_H

#include <lua.h>
#include <stddef.h>
#include <string.h>

#include "util/buf.h"

/* The canonical order of object keys: bytewise, a prefix first (<0, 0,
 * >0 as memcmp). Every writer of canonical JSON sorts with it (json.c,
 * canon.c), so that their outputs agree byte for byte. */
static inline int amc_json_key_order(const char *a, size_t alen, const char *b,
                                     size_t blen) {
  if (alen && blen && a[0] != b[0]) /* (most keys differ there) */
    return (unsigned char)a[0] < (unsigned char)b[0] ? -1 : 1;
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c)
    return c;
  return (alen > blen) - (alen < blen);
}

#define AMC_JSON_MAX_DEPTH 128
#define AMC_JSON_ARRAY_MT  "amc.json.array"
/* The null sentinel is this light userdata (its address is unique). */
extern char amc_json_null_sentinel;
#define AMC_JSON_NULL ((void *)&amc_json_null_sentinel)

/* Pushes the value decoded from `s` (exactly one JSON value, surrounding
 * whitespace allowed). Returns 0, or -1 with `err` filled. */
int amc_json_decode(lua_State *L, const char *s, size_t len, char *err,
                    size_t errlen);

/* Same, for text this module encoded (the store's objects): skips the
 * duplicate-key and UTF-8 checks, which such text always passes. Syntax
 * errors are still reported. */
int amc_json_decode_canonical(lua_State *L, const char *s, size_t len,
                              char *err, size_t errlen);

/* amc_json_decode_canonical for a caller that runs inside a protected Lua
 * call (a host function of the rules): it skips the protected call of its
 * own, so running out of memory raises a Lua error instead of returning
 * -1 (nothing leaks then). Syntax errors still return -1 with `err`
 * filled and the stack as it was. */
int amc_json_push_canonical(lua_State *L, const char *s, size_t len, char *err,
                            size_t errlen);

/* Appends the canonical JSON of the value at `idx` to `out`. Returns 0, or
 * -1 with `err` filled (what was appended on error is unspecified). */
int amc_json_encode(lua_State *L, int idx, amc_buf_t *out, char *err,
                    size_t errlen);

/* Encodings of tables remembered across amc_json_encode_memo calls. */
typedef struct amc_json_memo amc_json_memo_t;

/* A new, empty memo (NULL when out of memory); free with
 * amc_json_memo_free (NULL is fine). */
amc_json_memo_t *amc_json_memo_new(void);
void amc_json_memo_free(amc_json_memo_t *m);

/* amc_json_encode, but the tables directly under the value at `idx` (an
 * object's fields, an array's elements) are encoded at most twice per
 * memo (the second time their bytes are kept) and copied from it when met
 * again: output objects share subtables (the gateway's markers are in
 * every object of its translation). Same bytes
 * as amc_json_encode, provided no table encoded through the memo changes
 * while the memo is in use (tables are remembered by address). */
int amc_json_encode_memo(lua_State *L, int idx, amc_buf_t *out,
                         amc_json_memo_t *m, char *err, size_t errlen);

/* A token list of what one encoding wrote (amc_json_encode_tape), for a
 * checker that wants the value's structure without parsing the text (the
 * schema proof). Tokens come in output order:
 *   OBJ, then KEY and the value's tokens per key, then END;
 *   ARR, then each element's tokens, then END;
 *   STR (s, len: the Lua string's own bytes, unescaped), INT (i: an
 *   integer, or an integral float in int64 range, which is written as an
 *   integer too), FLT (d: any other float), TRUE, FALSE, NULL;
 *   RAW (off, len: bytes of `out` copied from the memo, not walked).
 * KEY and STR point into Lua strings that stay valid while the encoded
 * value is alive and unchanged. The caller owns the tape; start it as
 * AMC_JSON_TAPE_INIT, reuse it (each encoding starts it afresh), free it
 * with amc_json_tape_free. */
enum {
  AMC_JT_OBJ,
  AMC_JT_ARR,
  AMC_JT_END,
  AMC_JT_KEY,
  AMC_JT_STR,
  AMC_JT_INT,
  AMC_JT_FLT,
  AMC_JT_TRUE,
  AMC_JT_FALSE,
  AMC_JT_NULL,
  AMC_JT_RAW
};

typedef struct {
  int kind; /* AMC_JT_* */
  size_t len;
  union {
    const char *s; /* KEY, STR */
    size_t off;    /* RAW: offset in `out` */
    lua_Integer i;
    double d;
  } u;
} amc_json_tok_t;

typedef struct {
  amc_json_tok_t *tok;
  size_t n, cap;
  int failed; /* out of memory while recording: the tape is incomplete */
} amc_json_tape_t;

#define AMC_JSON_TAPE_INIT {NULL, 0, 0, 0}

void amc_json_tape_free(amc_json_tape_t *t);

/* amc_json_encode_memo (m may be NULL), also recording its tokens in
 * `tape` (which it empties first). The bytes are the same. When tape->failed
 * is set on return the tape is incomplete (the encoding is still fine). */
int amc_json_encode_tape(lua_State *L, int idx, amc_buf_t *out,
                         amc_json_memo_t *m, amc_json_tape_t *tape, char *err,
                         size_t errlen);

/* Same, indented with two spaces and a trailing newline: for humans
 * (`amc translate`, golden files). Key order and values as canonical. */
int amc_json_encode_pretty(lua_State *L, int idx, amc_buf_t *out, char *err,
                           size_t errlen);

/* Re-indents canonical JSON text (amc_json_encode's output) exactly as
 * amc_json_encode_pretty would print the same value, without Lua. Returns
 * 0, or -1 if the text is not well-nested (output then unspecified). */
int amc_json_pretty_canonical(const char *s, size_t len, amc_buf_t *out);

/* The strings at `path` (`depth` object keys, outermost first) in JSON
 * text `s` (meant for canonical text; any valid JSON works): fn is called
 * with the value when it is a string, and with every string element when
 * it is an array; other values (and a path that is not there) give no
 * call. Strings are passed unescaped, not NUL-terminated, valid during the
 * call only. Returns 0, or -1 when the text is not well-formed (fn may
 * have been called for what came before). */
typedef void (*amc_json_string_fn)(const char *s, size_t len, void *ud);
int amc_json_strings_at(const char *s, size_t len, const char *const *path,
                        size_t depth, amc_json_string_fn fn, void *ud);

/* Registers `json.decode`, `json.encode`, `json.pretty`, `json.null` and
 * `json.array_mt` in a table left on the stack (for the runtime's Lua code,
 * not for rules). Lua-side decode/encode raise errors on failure. */
int amc_json_open(lua_State *L);

#endif
