/* canon.h - a manifest's text straight to the JSON the store keeps.
 *
 * When a file under the fs:// source is saved, each changed document (or
 * JSON item) becomes one stored object: canonical JSON (json.h) without
 * `status` (Pods keep theirs), `metadata.managedFields` and the kubectl
 * last-applied annotation, with the default namespace filled in
 * (loader.h). The general path builds Lua tables (the loader), strips
 * them and encodes them (amc_canon_lua below); the tables are then thrown
 * away, and building them is most of the cost. This module does the same
 * in C, from the text to the bytes, for the texts the fast paths take:
 *
 *   - amc_canon_yaml: a document in yaml_fast.h's subset;
 *   - amc_canon_json: one JSON value (a span of a JSON file: an item of an
 *     array or a List, or a whole object).
 *
 * The bytes are those of the general path, for every text these take; for
 * anything else they decline (AMC_CANON_DECLINED), and the caller gives
 * the text to the loader, which produces the object or the error. There
 * are no errors here: a text the loader refuses is declined, so every
 * error message stays the loader's (tests/unit/test_canon.c and the
 * fuzzers fuzz_yaml and fuzz_json check all of this against the loader).
 *
 * How: the text is parsed into a value tree (nodes in one array, strings
 * pointing into the text or, unescaped, into a scratch area sized from
 * the text), then written out with each mapping's keys sorted bytewise.
 * Duplicate keys are found by the sort (equal neighbours), in the parts
 * stripped too (the loader refuses them anywhere).
 *
 * Declined (the loader decides): texts outside the YAML subset or with a
 * JSON syntax error; duplicate keys; nesting deeper than
 * AMC_CANON_MAX_DEPTH; a top value that is not an object with non-empty
 * string apiVersion, kind and metadata.name and a string (or no)
 * metadata.namespace, as the loader's checks want; `kind: List` (the
 * loader lists its items); an apiVersion, kind, name or namespace holding
 * a NUL byte (the loader's callers read them as C strings);
 * a float the encoder refuses (NaN, infinity) outside what is stripped; a
 * number JSON text cannot hold (1e400); texts over 1 GB.
 *
 * Memory: an amc_canon_t owns everything it makes (tree, scratch, output)
 * and reuses it from call to call: a result's strings are its copies and
 * stay valid until its next use (the tree's strings point into the text
 * and the default namespace as well). Allocation failure aborts, as
 * util/buf.h does. One state per thread; no Lua state is touched (but by
 * amc_canon_lua). */
#ifndef AMC_CANON_H
#define AMC_CANON_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Deeper trees are declined (manifests nest a dozen levels; the loader
 * takes up to AMC_JSON_MAX_DEPTH). */
#define AMC_CANON_MAX_DEPTH 64

enum { AMC_CANON_OK = 0, AMC_CANON_DECLINED = -1 };

/* One object in the store's form. */
typedef struct {
  const char *kind, *ns, *name; /* NUL-terminated; ns "" when none */
  const char *json;             /* canonical JSON, len bytes */
  size_t len;
  size_t line; /* YAML: the 0-based line of the text where the document's
                  content starts (the loader's "file:line"); JSON: 0 */
} amc_canon_obj_t;

/* ---- the value tree ------------------------------------------------------
 * Filled by a producer (amc_canon_parse_json, yaml_fast.h's
 * amc_yaml_fast_tree); node 0 is the root. Entries of a MAP or SEQ are
 * linked in text order; an entry of a MAP carries its key. */
enum {
  AMC_CN_NULL,
  AMC_CN_FALSE,
  AMC_CN_TRUE,
  AMC_CN_INT,
  AMC_CN_FLT,
  AMC_CN_STR,
  AMC_CN_MAP,
  AMC_CN_SEQ
};

typedef struct {
  uint8_t type;  /* AMC_CN_* */
  uint32_t klen; /* key: in a MAP */
  uint32_t next; /* the parent's next entry (0: none: node 0 is the root) */
  uint32_t n;    /* STR: bytes; MAP, SEQ: entries */
  const char *key;
  union {
    const char *s; /* STR */
    int64_t i;     /* INT */
    double d;      /* FLT */
    struct {
      uint32_t first, last; /* MAP, SEQ: entries (0: none) */
    } kids;
  } u;
} amc_canon_node_t;

/* A sort entry (private to canon.c). */
typedef struct amc_canon_key amc_canon_key_t;

/* The fields are the producers' (canon.c, yaml_fast.c); others use the
 * functions. */
typedef struct amc_canon {
  amc_canon_node_t *node;
  uint32_t n, cap;
  char *scratch; /* unescaped strings of the text being parsed */
  size_t slen, scap;
  amc_canon_key_t *keys; /* the writer's sort space */
  size_t nkeys, kcap;
  amc_buf_t out;   /* the JSON */
  amc_buf_t names; /* kind, namespace and name, NUL-terminated */
  const char *why; /* the last decline's reason (static text) */
} amc_canon_t;

/* A new state (aborts when out of memory); free with amc_canon_free (NULL
 * is fine). */
amc_canon_t *amc_canon_new(void);
void amc_canon_free(amc_canon_t *c);

/* The bytes `c` holds (its arrays and buffers grow to the largest text
 * seen): whoever keeps one for the next text lets a large one go. */
size_t amc_canon_memory(const amc_canon_t *c);

/* The reason for the last AMC_CANON_DECLINED ("duplicate key", ...), for
 * tests and logs. */
const char *amc_canon_why(const amc_canon_t *c);

/* ---- a span of a file -------------------------------------------------- */

/* The object a YAML document (one span of a file: loader.h) gives: 0 with
 * *obj filled, or AMC_CANON_DECLINED. `default_ns` as the loader's option
 * (NULL: none). */
int amc_canon_yaml(amc_canon_t *c, const char *text, size_t len,
                   const char *default_ns, amc_canon_obj_t *obj);

/* The object one JSON value gives (an item of a file's array or List, or a
 * file holding one object): 0 with *obj filled, or AMC_CANON_DECLINED. */
int amc_canon_json(amc_canon_t *c, const char *text, size_t len,
                   const char *default_ns, amc_canon_obj_t *obj);

/* The same from a Lua table: the object at `idx` (the loader's, handed to
 * its callback) is stripped in place, its kind and name read, and it is
 * encoded. Returns 0 with *obj filled (kind, ns and name point into the
 * table's strings, the JSON into `c`), or -1 with `err` filled ("object
 * without kind or metadata.name", or amc_json_encode's error). */
int amc_canon_lua(amc_canon_t *c, lua_State *L, int idx, amc_canon_obj_t *obj,
                  char *err, size_t errlen);

/* ---- parts, for producers and tests ------------------------------------ */

/* Parses one JSON value (whitespace around it allowed) into the tree:
 * 0, or AMC_CANON_DECLINED where amc_json_decode would fail (or the tree
 * would be too deep). Duplicate keys are left in the tree (the writer
 * finds them): whatever it takes, amc_json_decode takes, to the same
 * values, unless a key repeats. (Whatever amc_canon_json takes, the
 * decoder takes.) */
int amc_canon_parse_json(amc_canon_t *c, const char *text, size_t len);

/* Whether no mapping of the tree repeats a key: 0, or AMC_CANON_DECLINED.
 * (amc_canon_parse_json, then this: exactly what amc_json_decode takes,
 * within the depth limit.) */
int amc_canon_unique_keys(amc_canon_t *c);

/* Starts a tree for a text of `len` bytes (the scratch area gets room for
 * every string of it unescaped). 0, or AMC_CANON_DECLINED when too long. */
int amc_canon_begin(amc_canon_t *c, size_t len);

/* A new node of `type` (its fields zero); its index. Nodes move when more
 * are made: keep indexes, not pointers. */
uint32_t amc_canon_add(amc_canon_t *c, int type);

/* Appends node `child` to the entries of the MAP or SEQ `parent`. */
static inline void amc_canon_link(amc_canon_t *c, uint32_t parent,
                                  uint32_t child) {
  amc_canon_node_t *p = &c->node[parent];
  if (p->u.kids.last)
    c->node[p->u.kids.last].next = child;
  else
    p->u.kids.first = child;
  p->u.kids.last = child;
  p->n++;
}

/* The store's form of the tree's root object: checks, strips and writes
 * as the general path does. 0 with *obj filled, or AMC_CANON_DECLINED. */
int amc_canon_object(amc_canon_t *c, const char *default_ns,
                     amc_canon_obj_t *obj);

#endif
