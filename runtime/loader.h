/* loader.h - Kubernetes objects from YAML and JSON files.
 *
 * `amc translate`, `amc rules test` and the fs:// source read Kubernetes
 * objects from files. The loader turns each file into Lua tables in the same
 * shape as the Kubernetes JSON (what json.h's decoder produces), so rules
 * never see where an object came from, and hands each object to a callback.
 *
 * Files:
 *   - *.json: one JSON value, either an object, a `kind: List` object or an
 *     array of objects.
 *   - anything else (*.yaml, *.yml, or a file named explicitly; "-" is
 *     standard input): YAML, parsed with libyaml. Multi-document streams are
 *     split on `---`; empty documents are skipped. A text of one document in
 *     the subset manifests are written in (a span of the fs source, say)
 *     is parsed by yaml_fast.h's fast path instead, to the same values.
 *   - directories: every *.yaml, *.yml and *.json below, recursively, in
 *     bytewise-sorted path order; names starting with '.' (files and
 *     directories) are skipped, as are other extensions.
 *
 * YAML scalars follow the YAML 1.2 core schema for *plain* (unquoted)
 * scalars: null (`~`, `null`, `Null`, `NULL`, empty) -> json null; `true` /
 * `false` (also Capitalised/UPPER) -> booleans; integers (decimal, `0x` hex,
 * `0o` octal) -> integers; floats (`1.5`, `1e3`, `.inf`, `.nan`) -> floats
 * (integral values become integers, as in json.h); everything else, and every
 * quoted or block scalar, is a string. A `!!str` tag forces a string. Mapping
 * keys are always strings (their text). Sequences carry json.h's array
 * metatable. Anchors and aliases are supported (an alias shares the anchored
 * value); to stop "billion laughs" documents, a document may expand to at
 * most AMC_LOADER_MAX_NODES nodes. Merge keys (`<<`) and non-scalar mapping
 * keys are refused with an error. Duplicate keys are an error. Nesting is
 * limited to AMC_JSON_MAX_DEPTH.
 *
 * Objects: every document (and every item of a `kind: List`) must be a
 * mapping with string `apiVersion`, string `kind` and a non-empty string
 * `metadata.name`. Objects of any kind are accepted (what rules ignore is
 * their business). When `default_namespace` is set, a namespaced object
 * without `metadata.namespace` (or with "") gets it (as `kubectl apply -f`
 * does); a short list of well-known cluster-scoped kinds (Namespace, Node, ...)
 * is left alone.
 *
 * Errors are returned as one line naming the file and position:
 *   "examples/x.yaml:12:3: mapping values are not allowed in this context"
 *   "examples/x.yaml:20:1: document 2: object has no metadata.name"
 *   "in/a.json: line 3, column 7: ',' or '}' expected in object"
 * Loading stops at the first error. */
#ifndef AMC_LOADER_H
#define AMC_LOADER_H

#include <lua.h>
#include <stddef.h>

#define AMC_LOADER_MAX_NODES 1000000

/* Called once per object, with the object table on top of the stack (the
 * callback must leave the stack as it found it). `source` is "file:line"
 * (line of the document or item start; JSON files give line 1 or the item
 * number as "file[N]"). Return 0 to go on, or -1 after filling `err` to stop
 * loading (the loader returns -1 with that message). */
typedef int (*amc_loader_fn)(lua_State *L, const char *source, void *data,
                             char *err, size_t errlen);

typedef struct {
  const char *default_namespace; /* NULL: leave objects as they are */
} amc_loader_opts_t;

/* Whether `kind` is one of the well-known cluster-scoped kinds that get no
 * default namespace (above). */
int amc_loader_cluster_scoped(const char *kind);

/* Loads a file or a directory (see above). Returns 0, or -1 with `err`
 * filled. The stack is left as it was in both cases. */
int amc_loader_load_path(lua_State *L, const char *path,
                         const amc_loader_opts_t *opts, amc_loader_fn fn,
                         void *data, char *err, size_t errlen);

/* Nonzero (the default): YAML documents in the subset yaml_fast.h knows are
 * parsed without libyaml. Tests set it to 0 to compare with libyaml. */
extern int amc_loader_fast_yaml;

/* Loads YAML (or JSON, when `json` is nonzero) text held in memory; `name`
 * is used in sources and errors. Same return as amc_loader_load_path. */

int amc_loader_load_buffer(lua_State *L, const char *name, const char *buf,
                           size_t len, int json, const amc_loader_opts_t *opts,
                           amc_loader_fn fn, void *data, char *err,
                           size_t errlen);

/* A file's text cut into the texts of its objects, so that a caller who
 * remembers them (the fs source) loads only those that changed:
 *   - JSON: the items of a top-level array or of a `kind: List` object's
 *     `items`; any other value is one span (index 0);
 *   - YAML: the documents, cut at lines starting with `---` (a document
 *     marker wherever it appears); text before the first marker is a span.
 * Cutting only scans the text; a span's syntax is checked when it is
 * loaded. */
typedef struct {
  const char *text; /* into the file's text */
  size_t len;
  size_t line; /* 0-based line of the span's start in the file */
  long index;  /* JSON: 1-based item number, 0 for a whole value; YAML:
                  the document's 1-based number in the file (0: the span
                  holds none, only comments) */
} amc_loader_span_t;

/* Cuts `buf`. Returns the number of spans (0: no objects, an empty List)
 * with *spans malloc'd (the caller frees it), or -1 when the text is not
 * cut (YAML directives, a YAML `...` end marker or line breaks other than
 * LF and CRLF, a JSON shape other than the above, or anything the scan
 * does not recognise): load the file whole. */
long amc_loader_split(const char *buf, size_t len, int json,
                      amc_loader_span_t **spans);

/* Cutting a JSON file only scans the text around its items. Whether the
 * whole file would decode, given that each span does: the text with every
 * span replaced by a 0 is decoded (a List's envelope, a few hundred bytes
 * plus two per item). Returns 0, or -1 with `err` filled (load the file
 * whole for the exact error). The stack is left as it was. YAML spans are
 * whole documents: 0. */
int amc_loader_check_split(lua_State *L, const char *buf, size_t len, int json,
                           const amc_loader_span_t *spans, long n, char *err,
                           size_t errlen);

/* Loads one span of the file `name` as the whole file's load would load
 * that part of it (same checks and callback, same `source` strings).
 * Returns 0, or -1 with `err` filled; the message names the file's line
 * and (YAML) the document's number, but libyaml may word an error that
 * runs past the span otherwise: load the file whole for the exact message
 * (the fs source does). */
int amc_loader_load_span(lua_State *L, const char *name,
                         const amc_loader_span_t *span, int json,
                         const amc_loader_opts_t *opts, amc_loader_fn fn,
                         void *data, char *err, size_t errlen);

/* Parses a single YAML document into a plain value (no object checks):
 * pushes it and returns 0, or returns -1 with `err` filled. Used for
 * settings files. An empty document pushes json null. */
int amc_loader_parse_yaml_value(lua_State *L, const char *name, const char *buf,
                                size_t len, char *err, size_t errlen);

#endif
