/* fs_source.h - the fs:// source: Kubernetes objects from a directory tree,
 * kept in step with the files as they change.
 *
 * Files: every *.yaml, *.yml and *.json below the root, recursively; names
 * starting with '.' (editors' swap files, a ConfigMap's ..data) and other
 * extensions are ignored. Each file is parsed by a pluggable function (the
 * controller uses the loader, loader.h) into objects: kind, namespace, name,
 * canonical JSON.
 *
 * Watching: raw inotify (Linux), on the loop: one inotify descriptor
 * polled with a uv_poll_t, one watch per directory (inotify is not
 * recursive; two paths to one directory share its watch). Every readable
 * callback reads all queued events. libuv's uv_fs_event_t is not used: it
 * folds events into "rename" and "change" and does not report
 * IN_CLOSE_WRITE, so it cannot tell a finished save from a file still being
 * written.
 *
 * An event names an entry, which is then either
 *   - settled: IN_CLOSE_WRITE, IN_MOVED_TO, IN_ATTRIB (of a file nobody is
 *     writing: chmod, touch), IN_CREATE of a directory, a symlink or a hard
 *     link (they appear whole; a mounted ConfigMap's "..data" swap is a
 *     rename), and IN_DELETE / IN_MOVED_FROM of anything but a data file;
 *   - being written: from the IN_CREATE of a regular file or an IN_MODIFY
 *     until its IN_CLOSE_WRITE (an IN_ATTRIB meanwhile, e.g. `cp -p`
 *     setting the times, does not end it); or
 *   - held: a data file (*.yaml, *.yml, *.json) deleted or renamed away.
 *     Many writers replace a file that way (git checkout unlinks each
 *     changed file and creates it again; vim renames the original to its
 *     backup name and writes a new file), and reading the name in between
 *     would delete its objects until the new file is read. The name
 *     settles when a new file there is complete, or after the quiet time
 *     (then it is gone). A rename to another data file of the tree (the
 *     IN_MOVED_TO with the same cookie, in the same read) settles both
 *     names at once: the objects move, nothing is deleted.
 * Settled names are looked at on the next loop iteration, all those of one
 * read together: an editor's atomic save (write a hidden temporary file,
 * rename it over) or a plain write and close is read at once, with no
 * quiet time. A name being written or held is never stat-ed nor parsed,
 * by an event's rescan, a directory listing or the periodic resync alike
 * (the other names of its directory are): a file cut at a document
 * boundary parses fine, and the objects of its missing part would be
 * deleted. It is read at its close, or, for a writer that keeps the file
 * open (or a close lost to a queue overflow), once it has had no event
 * for `debounce_ms` (the fallback; 0: on the next iteration, as if
 * settled). A directory that goes (with its files) is read at once.
 * Hidden names (starting with '.') are never read: their events are
 * ignored, except in a directory holding symlinks. The initial scan reads
 * every file (it cannot know which are being written: one that is gets
 * read again at its close).
 *
 * A settled name is stat-ed on its own and whatever it is now replaces
 * what it was: a file whose (inode, size, mtime) changed is re-parsed, a
 * missing one is dropped, a new (or replaced) subdirectory is watched and
 * listed, a gone one is dropped with its files. A directory is listed
 * whole instead when an event does not name an entry (the directory itself
 * changed), when a burst names more than 64 entries, and for every settled
 * event in a directory that holds symlinks (a mounted ConfigMap's files
 * resolve through "..data", which is swapped by a rename). Whatever the
 * event sequence, the final state of each named entry is what counts.
 *
 * Lost events and watches: an IN_Q_OVERFLOW lists every directory (names
 * being written stay so); a watch the kernel drops (IN_IGNORED: the
 * directory was deleted or unmounted) or one that follows its directory
 * away (IN_MOVE_SELF) is removed and the path watched again when it is
 * next listed, after its parent's listing has said what the path is now;
 * a failing inotify descriptor is replaced by a new one and everything is
 * watched again and listed. Each counts in `watch_restarted`. A directory
 * that cannot be watched (the inotify watch limit) is still read by full
 * rescans, which try to watch it again. A full rescan every `resync_ms`
 * catches anything else.
 *
 * Changes are emitted as a batch per rescan, computed over all changed
 * files together, so an object that moves from one file to another is one
 * upsert, not a delete and a create:
 *   - upsert when an object is new or its JSON changed (a 64-bit digest is
 *     kept per object, not its JSON);
 *   - delete when no file defines it any more.
 * An object defined by two files: the first file keeps it; the second
 * definition is reported as an error and ignored until the first file
 * drops the object: then the second file is read again in the same batch
 * and takes it over (an object moved by two saves read apart, the file it
 * moves to first, is an upsert, not a delete).
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
  /* Events were lost (queue overflow) or a watch was lost and restarted
   * (optional; metrics). */
  void (*watch_restarted)(void *data);
} amc_fs_sink_t;

typedef struct {
  const char *root; /* directory (copied) */
  /* A file being written (no close seen) is read anyway, and a deleted
   * one dropped, after this long without events on it; 0 -> on the next
   * iteration. */
  unsigned debounce_ms;
  unsigned resync_ms; /* full rescan period; 0 -> none */
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
/* Stops watching (closes the inotify descriptor) and frees the source
 * once its handles are closed (on the loop: run it after this). */
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
 * objects without being decoded (amc_fs_span_reuse). A changed span goes
 * from its text straight to its object's JSON, without Lua tables, when
 * canon.h's direct path takes it (a YAML document in yaml_fast.h's subset,
 * a JSON item), else through the loader: the same objects either way. */
int amc_fs_parse_loader(void *parse_data, const char *path, amc_fs_emit_fn emit,
                        void *ctx, char *err, size_t errlen);

/* Nonzero (the default): amc_fs_parse_loader uses canon.h's direct path.
 * Tests and measurements set it to 0 to compare with the loader's. */
extern int amc_fs_direct;

/* For parsers (`ctx` is the parse function's): the objects emitted from
 * now on come from a text with this digest (0: none). */
void amc_fs_span_begin(void *ctx, uint64_t digest);
/* When the file being parsed gave objects from a text with this digest at
 * its last parse, and none of them is taken yet in this batch, returns
 * their number and (with `claim`) takes them as they are, unchanged;
 * else 0 (the parser emits the text's objects). */
int amc_fs_span_reuse(void *ctx, uint64_t digest, int claim);
/* Whether the file being parsed gave objects from a text with this digest
 * at its last parse (whether they can be taken: amc_fs_span_reuse). */
int amc_fs_span_seen(void *ctx, uint64_t digest);

#endif
