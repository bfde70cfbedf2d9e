/* json_project.h - a canonical JSON object cut down to a few field paths.
 *
 * A rule may list objects "projected" onto a few fields (a VirtualService
 * seen only as metadata.name, spec.hosts, ...). The store keeps objects as
 * canonical JSON (json.h); this module writes, straight from that text,
 * the canonical JSON of the object keeping only those fields. The rules
 * engine then decodes the short text instead of the whole object, and
 * tells whether a change of an object changed its projection by comparing
 * the two projected texts byte for byte.
 *
 * What is kept: for each path ("spec.hosts": object keys, outermost first)
 * present in the input, its whole value, byte for byte as it is in the
 * input, inside the objects leading to it. An object on the way is written
 * only when something under it is kept; keys keep the input's order, so
 * canonical input gives canonical output (compact input, compact output:
 * whitespace inside a kept value is copied with it, whitespace between
 * tokens elsewhere is dropped). A path that meets a value other than an
 * object before its last key (an array, a string, null...) keeps nothing
 * there. When nothing is kept the result is `{}`.
 *
 * Paths overlap freely: with "metadata" and "metadata.name" the shorter
 * wins and the whole metadata is kept. A path listed twice is one path.
 *
 * Keys are matched as raw text: a path's segment is compared byte for byte
 * with the key's bytes between its quotes, as the input spells them. The
 * canonical encoder escapes only '"', '\\' and control characters, which
 * segments may not hold, so a key holding one of those (or any key a
 * non-canonical input escapes) never matches a segment; the paths the
 * rules name (identifiers) are not affected. Segments cannot hold '.'
 * either, so neither can a matched key.
 *
 * Validation: the whole text is checked as JSON syntax (strings, escapes,
 * numbers, literals, nesting, nothing after the object), in the same pass
 * that copies, so a malformed text gives -1 and is never read out of
 * bounds. Not checked, because store text never has them and the decoder
 * (json.h) refuses them: invalid UTF-8 and unpaired \u surrogates in
 * strings, numbers out of a double's range, duplicate keys (each
 * occurrence is treated on its own, so a duplicated kept key is written
 * twice). Nesting deeper than AMC_JSON_MAX_DEPTH is refused, as the
 * decoder refuses it.
 *
 * Cost: one pass over the text, no allocation but the growth of `out`;
 * values not kept are skipped by a scanner that only checks syntax (eight
 * string bytes at a time). A generated mesh's VirtualService (392 bytes)
 * projected onto eight fields: 6.1k instructions, against 31k for
 * amc_json_push_canonical of the whole object (bench/json_project_bench).
 *
 * Memory: a projection owns a copy of its paths; the caller owns `out`.
 * A projection is read-only once made: threads may share one. */
#ifndef AMC_JSON_PROJECT_H
#define AMC_JSON_PROJECT_H

#include <stddef.h>

#include "util/buf.h"

#define AMC_JSON_PROJECT_MAX_PATHS    32
#define AMC_JSON_PROJECT_MAX_SEGMENTS 8

typedef struct amc_json_projection amc_json_projection_t;

/* A projection onto `n` paths (1 .. AMC_JSON_PROJECT_MAX_PATHS), each
 * dot-separated keys ("spec.hosts"), 1 .. AMC_JSON_PROJECT_MAX_SEGMENTS of
 * them, none empty, none holding '"', '\\' or a control character.
 * Returns NULL with `err` filled when a path is bad
 * ("path 2 \"a..b\": empty key", ...) or there are too few or too many
 * paths, and NULL with err "out of memory" when allocation fails. Free
 * with amc_json_projection_free (NULL is fine). */
amc_json_projection_t *amc_json_projection_new(const char *const *paths,
                                               size_t n, char *err,
                                               size_t errlen);
void amc_json_projection_free(amc_json_projection_t *p);

/* Appends to `out` the projection of the JSON object `s` (`len` bytes;
 * JSON whitespace between tokens allowed). Returns 0, or -1 when the text
 * is not a JSON object (malformed, another kind of value, text after it,
 * too deep: see above); `out` is then as it was at entry (its length; the
 * bytes past it may have changed). `out` stays NUL-terminated. */
int amc_json_project(const amc_json_projection_t *p, const char *s, size_t len,
                     amc_buf_t *out);

#endif
