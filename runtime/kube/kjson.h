/* kjson.h - read-only JSON scanning over byte spans (no allocation, no tree).
 *
 * The Kubernetes client reads a few fields out of large documents (a watch
 * event's `type`, an object's `metadata.name`, a list's `items[]`) and hands
 * the objects on as the exact bytes the server sent: the store canonicalises
 * them later through json.h. Building a tree or a Lua table per event just to
 * read four strings would be wasted work, so this module only walks spans.
 *
 * A span is a pointer + length into the caller's buffer; every span returned
 * points into the input and lives as long as it does. All functions validate
 * what they skip (strings, numbers, literals, nesting up to
 * AMC_KJSON_MAX_DEPTH), so a malformed document is reported, never
 * over-read. */
#ifndef AMC_KUBE_KJSON_H
#define AMC_KUBE_KJSON_H

#include <stddef.h>

#include "util/buf.h"

#define AMC_KJSON_MAX_DEPTH 256

typedef struct {
  const char *p;
  size_t n;
} amc_kjson_t;

/* Trims whitespace and checks that `s` holds exactly one valid JSON value.
 * Returns 0 (and the trimmed span in *out), or -1. */
int amc_kjson_parse(const char *s, size_t n, amc_kjson_t *out);

/* 'o' object, 'a' array, 's' string, 'n' number, 't'/'f' booleans, 'z' null,
 * 0 for an empty/invalid span. */
char amc_kjson_type(amc_kjson_t v);

/* Member `key` of the object `obj` (first match). Returns 0, or -1 when
 * `obj` is not an object or has no such member. */
int amc_kjson_get(amc_kjson_t obj, const char *key, amc_kjson_t *out);

/* Dotted path of object members, e.g. "object.metadata.name". */
int amc_kjson_path(amc_kjson_t obj, const char *path, amc_kjson_t *out);

/* Iteration over arrays and objects. Start with *pos = 0; each call returns
 * 1 with the next element (and member key span, quotes included, for
 * objects), 0 at the end, -1 on malformed input. */
int amc_kjson_array_next(amc_kjson_t arr, size_t *pos, amc_kjson_t *elem);
int amc_kjson_object_next(amc_kjson_t obj, size_t *pos, amc_kjson_t *key,
                          amc_kjson_t *val);

/* The unescaped string value (malloc'd, NUL-terminated; the caller frees),
 * or NULL when `v` is not a string or holds "\u0000". */
char *amc_kjson_strdup(amc_kjson_t v);

/* Compares the string value `v` with `s` (unescaped). 1 if equal. */
int amc_kjson_streq(amc_kjson_t v, const char *s);

/* The integer value of `v` (a JSON number without fraction/exponent).
 * Returns 0, or -1. */
int amc_kjson_int(amc_kjson_t v, long long *out);

/* Appends `s` to `out` as a JSON string literal (quotes included). */
void amc_kjson_quote(amc_buf_t *out, const char *s);

#endif
