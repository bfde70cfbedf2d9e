/* fs_source.h - the fs:// source: Kubernetes objects from a directory tree,
 * kept in step with the files as they change.
 *
 * Files: every *.yaml, *.yml and *.json below the root, recursively; names
 * starting with '.' (editors' swap files, a ConfigMap's ..data) and other
 * extensions are ignored. Each file is parsed by a pluggable function (the
 * controller uses the loader, loader.h) into objects: kind, namespace, name,
 * canonical JSON.
 *
 * Watching: one uv_fs_event_t per directory (inotify is not recursive).
 * An event that names an entry queues that name; after `debounce_ms` of
 * quiet each queued name is stat-ed on its own and whatever it is now
 * replaces what it was: a file whose (inode, size, mtime) changed is
 * re-parsed, a missing one is dropped, a new (or replaced) subdirectory is
 * watched and listed, a gone one is dropped with its files. Events for
 * hidden names (an editor's temporary file) are ignored. A directory is
 * listed whole instead when an event does not name an entry (the directory
 * itself changed, a watch failed), when a burst names more than 64 entries,
 * and for every event in a directory that holds symlinks (a mounted
 * ConfigMap's files resolve through "..data", which is swapped by a
 * rename). This covers plain writes, deletes, renames in and out, new
 * directories and editors' atomic saves (write a temporary file, rename it
 * over the original): whatever the event sequence, the final state of each
 * named entry is what counts. A full rescan every `resync_ms` catches
 * missed events (inotify queue overflow).
 *
 * Changes are emitted as a batch per rescan, computed over all changed
 * files together, so an object that moves from one file to another is one
 * upsert, not a delete and a create:
 *   - upsert when an object is new or its JSON changed (a 64-bit digest is
 *     kept per object, not its JSON);
 *   - delete when no file defines it any more.
 * An object defined by two files: the first file keeps it; the second
 * definition is reported as an error and ignored.
 * A file that fails to parse keeps its previous objects; the error (with
 * file:line:col from the parser) goes to the `error` callback and the log.
 *
 * Everything runs on the loop thread; callbacks are never called from inside
 * amc_fs_source_start() except the initial scan's upserts and `synced`. */
#ifndef AMC_FS_SOURCE_H
#define AMC_FS_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct amc_fs_source amc_fs_source_t;

/* Parser output: called once per object. Strings are borrowed for the call.
 * Returns 0 (any other value stops parsing this file with that status). */
typedef int (*amc_fs_emit_fn)(void *ctx, const char *kind, const char *ns,
                              const char *name, const char *json, size_t len);
/* Parses the file at `path`, calling emit() for each object. Returns 0, or
 * -1 with a one-line message in `err` ("path:line:col: problem"). */
typedef int (*amc_fs_parse_fn)(void *parse_data, const char *path,
                               amc_fs_emit_fn emit, void *ctx, char *err,
                               size_t errlen);

typedef struct {
  /* An object is new or changed. `ns` is "" for cluster-scoped objects. */
  void (*upsert)(void *data, const char *kind, const char *ns, const char *name,
                 const char *json, size_t len);
  /* An object is gone. */
  void (*remove)(void *data, const char *kind, const char *ns,
                 const char *name);
  /* The initial scan is complete (called once). */
  void (*synced)(void *data);
  /* A file could not be read or parsed (optional). */
  void (*error)(void *data, const char *path, const char *message);
  /* A rescan batch ended (optional; after its upserts and removes). */
  void (*batch_done)(void *data);
  /* A directory watch failed and was restarted (optional; metrics). */
  void (*watch_restarted)(void *data);
} amc_fs_sink_t;

typedef struct {
  const char *root;     /* directory (copied) */
  unsigned debounce_ms; /* quiet time before a rescan; 0 -> next tick */
  unsigned resync_ms;   /* full rescan period; 0 -> none */
  amc_fs_parse_fn parse;
  void *parse_data;
  amc_fs_sink_t sink;
  void *sink_data;
} amc_fs_source_opts_t;

/* Scans the tree (emitting upserts, then `synced`) and starts watching.
 * Returns NULL with `err` filled when the root is not a readable directory. */
amc_fs_source_t *amc_fs_source_start(uv_loop_t *loop,
                                     const amc_fs_source_opts_t *opts,
                                     char *err, size_t errlen);
/* Objects currently defined. */
size_t amc_fs_source_count(const amc_fs_source_t *s);
/* Directories watched. */
size_t amc_fs_source_watches(const amc_fs_source_t *s);
/* Directory listings done so far (the initial scan's included): what an
 * event costs, for tests. */
uint64_t amc_fs_source_listings(const amc_fs_source_t *s);
/* Rescans everything now (as the periodic resync does). */
void amc_fs_source_rescan(amc_fs_source_t *s);
/* Stops watching and frees the source once its handles are closed. */
void amc_fs_source_close(amc_fs_source_t *s);

/* ------------------------------------------------------------------------ */
/* The standard parser: YAML/JSON files through the loader (loader.h).
 * Objects are emitted as canonical JSON (json.h) without `status` (Pods
 * keep theirs), `metadata.managedFields` and the kubectl last-applied
 * annotation, exactly what store.h keeps, so they can go to
 * amc_store_put_json(). Objects without a namespace get `default_namespace`
 * (cluster-scoped kinds excepted, as the loader decides). */
#include <lua.h>

typedef struct {
  lua_State *L;                  /* a plain state with the base libraries */
  const char *default_namespace; /* NULL: leave objects as they are */
} amc_fs_loader_t;

/* An amc_fs_parse_fn; `parse_data` is an amc_fs_loader_t. A file is
 * loaded span by span (loader.h: its JSON items or YAML documents); a span
 * whose text has not changed since the file's last parse gives the same
 * objects without being decoded (amc_fs_span_reuse). */
int amc_fs_parse_loader(void *parse_data, const char *path, amc_fs_emit_fn emit,
                        void *ctx, char *err, size_t errlen);

/* For parsers (`ctx` is the parse function's): the objects emitted from
 * now on come from a text with this digest (0: none). */
void amc_fs_span_begin(void *ctx, uint64_t digest);
/* When the file being parsed gave objects from a text with this digest at
 * its last parse, and none of them is taken yet in this batch, returns
 * their number and (with `claim`) takes them as they are, unchanged;
 * else 0 (the parser emits the text's objects). */
int amc_fs_span_reuse(void *ctx, uint64_t digest, int claim);

#endif
