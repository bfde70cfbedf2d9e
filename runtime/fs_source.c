/* fs_source.c - the fs:// source: watch a directory tree, parse changed
 * files, emit object upserts and deletes in batches. */
#include "fs_source.h"

#include "util/buf.h"
#include "util/log.h"
#include "util/strmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEP '\x1f'

/* Names an event burst may queue for one directory before the whole
 * directory is listed instead (a listing is then the cheaper way). */
#define MAX_NAMED 64

/* What a directory watch reports. IN_EXCL_UNLINK: a file unlinked (or
 * renamed over) while a writer still has it open reports nothing more under
 * its old name, which may be a new file's by then. */
#define WATCH_MASK                                                             \
  (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO |      \
   IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR |        \
   IN_EXCL_UNLINK)

typedef struct dir dir_t;

typedef struct {
  uint64_t ino, size, mtime_ns;
  /* Objects this file defines ("kind\x1fns\x1fname"): the keys of their
   * entries in amc_fs_source.objs (borrowed; an object belongs to one file,
   * and its entry goes only in process_batch, with that file's change). */
  const char **keys;
  /* Per key, the digest of the text it was loaded from (a span, loader.h),
   * or 0: an unchanged span's objects are taken as they were. */
  uint64_t *spans;
  size_t n_keys;
  int seen; /* scan mark */
} file_t;

/* An entry being written: its last write (loop time, ms). */
typedef struct {
  uint64_t last_ms;
} writing_t;

struct dir {
  amc_fs_source_t *src;
  dir_t *parent;
  char *path;
  int wd;               /* inotify watch descriptor, or -1 */
  dir_t *next_in_watch; /* directories sharing the watch (see watch_t) */
  uint64_t ino; /* of the directory watched (a rename over it changes it) */
  int watching;
  int rewatch; /* its watch was lost or failed: try again when listed */
  int dirty;   /* list the whole directory on the next walk */
  int seen;
  /* Some entry is a symlink: a change to one name (even a hidden one, a
   * ConfigMap's "..data") may change what another resolves to, so any
   * event lists the directory. Set by a listing and by a named lstat. */
  int has_links;
  amc_strmap_t named;   /* settled entries events named since the last walk */
  amc_strmap_t writing; /* name -> writing_t: never read until settled */
  amc_strmap_t files;   /* name -> file_t */
  amc_strmap_t subdirs; /* name -> dir_t */
};

/* One inotify watch. inotify gives one descriptor per inode, so two paths
 * of the tree that resolve to the same directory (a symlink to it, or a
 * directory moved to a new name seen before its old name is dropped) share
 * it: the watch goes when its last directory does. */
typedef struct {
  int wd;
  dir_t *dirs; /* linked by next_in_watch */
} watch_t;

/* The inotify instance: its own block, as a new instance replaces it while
 * the old one's poll handle is still closing. */
typedef struct {
  uv_poll_t poll;
  int fd;
  amc_fs_source_t *src;
} inotify_t;

typedef struct {
  file_t *owner; /* NULL while unclaimed during a batch */
  uint64_t digest;
} obj_t;

/* A file that changed in this batch. */
typedef struct {
  char *path;
  file_t *file;          /* NULL when the file is gone */
  const char **old_keys; /* the file's keys before (see file_t) */
  uint64_t *old_spans;
  size_t n_old;
  size_t *by_span; /* old key indexes + 1 by span digest (span_index) */
  size_t span_cap;
} change_t;

struct amc_fs_source {
  uv_loop_t *loop;
  amc_fs_source_opts_t opt;
  char *root_path;
  dir_t *root;
  inotify_t *ino;       /* NULL when inotify could not be set up */
  amc_strmap_t watches; /* "wd" -> watch_t */
  uv_timer_t tick;      /* a rescan on the next loop iteration */
  uv_timer_t quiet;     /* the quiet-time fallback for entries being written */
  uv_timer_t resync;
  int open_handles;
  int closing;
  int synced;
  int pending; /* events queued settled work: schedule a rescan */
  /* The last IN_MOVED_FROM of a file in this read (its name is held until
   * a matching IN_MOVED_TO shows a rename within the tree). */
  dir_t *from_dir;
  char *from_name;
  uint32_t from_cookie;
  size_t n_writing;
  uint64_t progress_ns; /* last progress line during the initial scan */
  size_t parsed_files;
  amc_strmap_t objs; /* "kind\x1fns\x1fname" -> obj_t */
  /* Objects another file defined too (ignored there): key -> that file's
   * path. When the owner drops one, that file is read again in the same
   * batch and takes it over (saves of the two files may come apart). */
  amc_strmap_t shadows;
  size_t n_dirs;
  uint64_t listings;

  /* the batch being built by a rescan */
  change_t *changes;
  size_t n_changes, cap_changes;
  char **orphans; /* keys unclaimed by changed files */
  size_t n_orphans, cap_orphans;
  file_t *parsing; /* the file emit() claims for */
  const char *parsing_path;
  const char **new_keys;
  uint64_t *new_spans;
  size_t n_new, cap_new;
  change_t *parsing_change;
  uint64_t span; /* of the objects emitted now (amc_fs_span_begin) */
};

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n);
  if (!p)
    abort();
  return p;
}

static char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (!p)
    abort();
  return p;
}

/* A 64-bit digest of a text (equal texts: equal digests; kept in memory
 * only). Eight bytes a step: a route change digests every span of its
 * file, and a byte-at-a-time hash is one multiply's latency per byte. */
static uint64_t digest(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL ^ (n * 0x9E3779B97F4A7C15ULL);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
  }
  for (; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

static int wanted_file(const char *name) {
  if (name[0] == '.')
    return 0;
  const char *dot = strrchr(name, '.');
  return dot && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0 ||
                 strcmp(dot, ".json") == 0);
}

static void report_error(amc_fs_source_t *s, const char *path,
                         const char *msg) {
  amc_log(AMC_ERROR, "fs.error", AMC_S("path", path), AMC_S("error", msg));
  if (s->opt.sink.error)
    s->opt.sink.error(s->opt.sink_data, path, msg);
}

static void watch_restarted(amc_fs_source_t *s) {
  if (s->opt.sink.watch_restarted)
    s->opt.sink.watch_restarted(s->opt.sink_data);
}

/* ------------------------------------------------------------------------ */
/* Watches */

static watch_t *watch_get(amc_fs_source_t *s, int wd) {
  char k[16];
  snprintf(k, sizeof k, "%d", wd);
  return amc_strmap_get(&s->watches, k);
}

/* Adds the inotify watch of `d` (by its path). Returns 0, or -1 (logged;
 * the directory is then scanned by rescans only, and watched again when a
 * later walk lists it). */
static int dir_watch(amc_fs_source_t *s, dir_t *d) {
  if (!s->ino)
    return -1;
  int wd = inotify_add_watch(s->ino->fd, d->path, WATCH_MASK);
  if (wd < 0) {
    amc_log(AMC_WARN, "fs.watch_failed", AMC_S("path", d->path),
            AMC_S("error", strerror(errno)));
    return -1;
  }
  watch_t *w = watch_get(s, wd);
  if (!w) {
    char k[16];
    snprintf(k, sizeof k, "%d", wd);
    w = xcalloc(1, sizeof *w);
    w->wd = wd;
    amc_strmap_put(&s->watches, k, w, NULL);
  }
  d->wd = wd;
  d->watching = 1;
  d->next_in_watch = w->dirs;
  w->dirs = d;
  return 0;
}

/* Drops the watch `w` for all its directories (they are listed on the next
 * walk, which watches them again); `rm`: remove it from the kernel too (not
 * when the kernel already did: IN_IGNORED). */
static void watch_drop(amc_fs_source_t *s, watch_t *w, int rm) {
  char k[16];
  snprintf(k, sizeof k, "%d", w->wd);
  amc_strmap_del(&s->watches, k);
  if (rm && s->ino)
    inotify_rm_watch(s->ino->fd, w->wd);
  for (dir_t *d = w->dirs, *next; d; d = next) {
    next = d->next_in_watch;
    d->next_in_watch = NULL;
    d->wd = -1;
    d->watching = 0;
    d->rewatch = 1;
    d->dirty = 1;
    if (d->parent)
      d->parent->dirty = 1; /* it may be gone or another directory now */
  }
  free(w);
}

/* `d` goes: out of its watch, which goes with its last directory. */
static void dir_unwatch(amc_fs_source_t *s, dir_t *d) {
  if (!d->watching)
    return;
  watch_t *w = watch_get(s, d->wd);
  d->watching = 0;
  if (!w)
    return;
  for (dir_t **p = &w->dirs; *p; p = &(*p)->next_in_watch) {
    if (*p == d) {
      *p = d->next_in_watch;
      break;
    }
  }
  d->next_in_watch = NULL;
  if (!w->dirs) {
    w->dirs = NULL;
    watch_drop(s, w, 1);
  }
  d->wd = -1;
}

/* ------------------------------------------------------------------------ */
/* Events: which names are settled, which are being written */

static void schedule(amc_fs_source_t *s);
static void mark_all_dirty(dir_t *d);

static void free_writing(void *p) {
  free(p);
}

/* `name` is settled: the next walk looks at it (or lists its directory). */
static void settle(dir_t *d, const char *name) {
  amc_fs_source_t *s = d->src;
  writing_t *w = amc_strmap_del(&d->writing, name);
  if (w) {
    free(w);
    s->n_writing--;
  }
  if (d->has_links) {
    /* A change to one name may change what another one resolves to. */
    d->dirty = 1;
  } else if (name[0] == '.') {
    return; /* never read: an editor's temporary file, a swap file */
  } else if (!d->dirty) {
    if (d->named.count >= MAX_NAMED)
      d->dirty = 1;
    else
      amc_strmap_put(&d->named, name, d, NULL);
  }
  if (d->dirty && d->named.count)
    amc_strmap_clear(&d->named, NULL);
  s->pending = 1;
}

static void on_quiet(uv_timer_t *t);

/* `name` is being written: not read until its close (or the quiet time). */
static void writing(dir_t *d, const char *name) {
  amc_fs_source_t *s = d->src;
  if (name[0] == '.')
    return; /* never read */
  writing_t *w = amc_strmap_get(&d->writing, name);
  if (!w) {
    w = xcalloc(1, sizeof *w);
    amc_strmap_put(&d->writing, name, w, NULL);
    s->n_writing++;
  }
  w->last_ms = uv_now(s->loop);
  amc_strmap_del(&d->named, name); /* settled before, written again now */
  if (!uv_is_active((uv_handle_t *)&s->quiet))
    uv_timer_start(&s->quiet, on_quiet, s->opt.debounce_ms, 0);
}

static void forget_move(amc_fs_source_t *s) {
  free(s->from_name);
  s->from_name = NULL;
  s->from_dir = NULL;
  s->from_cookie = 0;
}

/* A file went from the name (deleted, renamed away). Many writers replace
 * a file that way: git checkout unlinks each changed file and creates it
 * again, vim renames the original to its backup name and writes a new
 * file. Reading the name in between would delete the file's objects until
 * the new file is read, so the name is held like a file being written: it
 * settles when a new file there is complete, or after the quiet time (it
 * is gone then). A rename to another data file of the tree is the rename
 * it looks like: both names settle at once (the objects move). */
static void vanished(dir_t *d, const char *name, uint32_t mask,
                     uint32_t cookie) {
  amc_fs_source_t *s = d->src;
  if ((mask & IN_ISDIR) || !wanted_file(name)) {
    settle(d, name);
    return;
  }
  writing(d, name);
  if (mask & IN_MOVED_FROM) {
    forget_move(s);
    s->from_dir = d;
    s->from_name = xstrdup(name);
    s->from_cookie = cookie;
  }
}

/* One event on an entry of `d`. A regular file is being written from its
 * creation or a write until its IN_CLOSE_WRITE; a file that went is held
 * (vanished()); everything else settles the name at once. */
static void dir_event(dir_t *d, const char *name, uint32_t mask,
                      uint32_t cookie) {
  amc_fs_source_t *s = d->src;
  if (mask & (IN_DELETE | IN_MOVED_FROM)) {
    vanished(d, name, mask, cookie);
  } else if (mask & IN_MOVED_TO) {
    settle(d, name);
    if (s->from_name && cookie == s->from_cookie && !(mask & IN_ISDIR) &&
        wanted_file(name))
      settle(s->from_dir, s->from_name);
  } else if (mask & IN_CLOSE_WRITE) {
    settle(d, name);
  } else if (mask & IN_MODIFY) {
    writing(d, name);
  } else if (mask & IN_CREATE) {
    /* A directory, a symlink or a hard link appears whole; a new regular
     * file (one link) is written next. What the name is by now tells. */
    struct stat st;
    amc_buf_t p = AMC_BUF_INIT;
    amc_buf_printf(&p, "%s/%s", d->path, name);
    if (!(mask & IN_ISDIR) && name[0] != '.' && lstat(p.data, &st) == 0 &&
        S_ISREG(st.st_mode) && st.st_nlink == 1)
      writing(d, name);
    else
      settle(d, name);
    amc_buf_free(&p);
  } else if (mask & IN_ATTRIB) {
    /* chmod, touch: settled, unless a writer has the file open (cp -p sets
     * the times before it closes). */
    if (amc_strmap_get(&d->writing, name))
      writing(d, name);
    else
      settle(d, name);
  }
}

static void on_event(amc_fs_source_t *s, const struct inotify_event *ev) {
  if (ev->mask & IN_Q_OVERFLOW) {
    /* Events were lost: list everything (names being written stay so:
     * their close, or the quiet time, settles them). */
    amc_log(AMC_WARN, "fs.queue_overflow", AMC_S("root", s->root_path));
    mark_all_dirty(s->root);
    s->pending = 1;
    watch_restarted(s);
    return;
  }
  watch_t *w = watch_get(s, ev->wd);
  if (!w)
    return; /* a watch already dropped (its IN_IGNORED, late events) */
  if (ev->mask & IN_IGNORED) {
    /* The kernel dropped the watch: the directory was deleted or its
     * filesystem unmounted. The parent's listing sees which. */
    watch_drop(s, w, 0);
    s->pending = 1;
    return;
  }
  if (ev->mask & IN_MOVE_SELF) {
    /* The watch follows the directory to its new name, maybe outside the
     * tree: watch the path again (the walk does, once the parent's listing
     * has said what the path is now). */
    watch_drop(s, w, 1);
    s->pending = 1;
    return;
  }
  for (dir_t *d = w->dirs; d; d = d->next_in_watch) {
    if ((ev->mask & IN_DELETE_SELF) || ev->len == 0 || !ev->name[0]) {
      d->dirty = 1; /* the directory itself changed: list it */
      if (d->named.count)
        amc_strmap_clear(&d->named, NULL);
      s->pending = 1;
    } else {
      dir_event(d, ev->name, ev->mask, ev->cookie);
    }
  }
}

static void inotify_restart(amc_fs_source_t *s);

/* Reads every queued event (the fd is non-blocking), then schedules one
 * rescan for all of them. */
static void on_inotify(uv_poll_t *h, int status, int events) {
  (void)events;
  inotify_t *in = h->data;
  amc_fs_source_t *s = in->src;
  if (status < 0) {
    amc_log(AMC_WARN, "fs.watch_restart", AMC_S("root", s->root_path),
            AMC_S("error", uv_strerror(status)));
    inotify_restart(s);
    return;
  }
  char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t n = read(in->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0) {
      amc_log(AMC_WARN, "fs.watch_restart", AMC_S("root", s->root_path),
              AMC_S("error", n < 0 ? strerror(errno) : "end of file"));
      inotify_restart(s);
      return;
    }
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      on_event(s, ev);
      p += sizeof *ev + ev->len;
    }
  }
  forget_move(s); /* a rename's two events come in one read */
  if (s->pending)
    schedule(s);
}

static void on_inotify_closed(uv_handle_t *h) {
  inotify_t *in = h->data;
  amc_fs_source_t *s = in->src;
  close(in->fd);
  free(in);
  if (--s->open_handles == 0)
    free(s);
}

static inotify_t *inotify_open(amc_fs_source_t *s) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    amc_log(AMC_WARN, "fs.watch_failed", AMC_S("path", s->root_path),
            AMC_S("error", strerror(errno)));
    return NULL;
  }
  inotify_t *in = xcalloc(1, sizeof *in);
  in->fd = fd;
  in->src = s;
  int rc = uv_poll_init(s->loop, &in->poll, fd);
  if (rc == 0) {
    in->poll.data = in;
    s->open_handles++;
    rc = uv_poll_start(&in->poll, UV_READABLE, on_inotify);
    if (rc < 0) {
      amc_log(AMC_WARN, "fs.watch_failed", AMC_S("path", s->root_path),
              AMC_S("error", uv_strerror(rc)));
      uv_close((uv_handle_t *)&in->poll, on_inotify_closed);
      return NULL;
    }
    return in;
  }
  amc_log(AMC_WARN, "fs.watch_failed", AMC_S("path", s->root_path),
          AMC_S("error", uv_strerror(rc)));
  close(fd);
  free(in);
  return NULL;
}

static void inotify_close(amc_fs_source_t *s) {
  if (!s->ino)
    return;
  uv_poll_stop(&s->ino->poll);
  uv_close((uv_handle_t *)&s->ino->poll, on_inotify_closed);
  s->ino = NULL;
}

static int drop_watch_visit(const char *key, void *value, void *data) {
  (void)key;
  watch_t *w = value;
  for (dir_t *d = w->dirs, *next; d; d = next) {
    next = d->next_in_watch;
    d->next_in_watch = NULL;
    d->wd = -1;
    d->watching = 0;
  }
  (void)data;
  free(w);
  return 1;
}

/* The inotify instance failed: a new one, every directory watched again by
 * a full rescan (which catches what was missed). */
static void inotify_restart(amc_fs_source_t *s) {
  forget_move(s);
  inotify_close(s);
  amc_strmap_foreach(&s->watches, drop_watch_visit, NULL);
  s->ino = inotify_open(s);
  mark_all_dirty(s->root);
  s->pending = 1;
  schedule(s);
}

/* ------------------------------------------------------------------------ */
/* Directories */

static dir_t *dir_new(amc_fs_source_t *s, dir_t *parent, const char *path,
                      uint64_t ino) {
  dir_t *d = xcalloc(1, sizeof *d);
  d->src = s;
  d->parent = parent;
  d->path = xstrdup(path);
  d->ino = ino;
  d->wd = -1;
  d->dirty = 1;
  s->n_dirs++;
  dir_watch(s, d);
  return d;
}

static void change_add(amc_fs_source_t *s, const char *path, file_t *f,
                       const char **old_keys, uint64_t *old_spans,
                       size_t n_old) {
  if (s->n_changes == s->cap_changes) {
    s->cap_changes = s->cap_changes ? s->cap_changes * 2 : 16;
    s->changes = xrealloc(s->changes, s->cap_changes * sizeof *s->changes);
  }
  change_t *c = &s->changes[s->n_changes++];
  c->path = xstrdup(path);
  c->file = f;
  c->old_keys = old_keys;
  c->old_spans = old_spans;
  c->n_old = n_old;
  c->by_span = NULL;
}

static void file_gone(amc_fs_source_t *s, const char *path, file_t *f) {
  /* A change queued earlier in this batch may point at the file. */
  for (size_t i = 0; i < s->n_changes; i++) {
    if (s->changes[i].file == f)
      s->changes[i].file = NULL;
  }
  change_add(s, path, NULL, f->keys, f->spans, f->n_keys);
  free(f);
}

/* Drops a directory and everything below it (its files become deletions). */
static void dir_remove(amc_fs_source_t *s, dir_t *d);

static int remove_file_visit(const char *name, void *value, void *data) {
  dir_t *d = data;
  amc_buf_t p = AMC_BUF_INIT;
  amc_buf_printf(&p, "%s/%s", d->path, name);
  file_gone(d->src, p.data, value);
  amc_buf_free(&p);
  return 1;
}

static int remove_subdir_visit(const char *name, void *value, void *data) {
  (void)name;
  dir_remove(data, value);
  return 1;
}

/* Frees a directory's own state (not its files' objects, not its
 * subdirectories). */
static void dir_free(amc_fs_source_t *s, dir_t *d) {
  s->n_writing -= d->writing.count;
  amc_strmap_clear(&d->writing, free_writing);
  amc_strmap_clear(&d->named, NULL);
  amc_strmap_clear(&d->files, NULL);
  amc_strmap_clear(&d->subdirs, NULL);
  free(d->path);
  free(d);
}

static void dir_remove(amc_fs_source_t *s, dir_t *d) {
  amc_strmap_foreach(&d->files, remove_file_visit, d);
  amc_strmap_foreach(&d->subdirs, remove_subdir_visit, s);
  dir_unwatch(s, d);
  s->n_dirs--;
  dir_free(s, d);
}

/* A regular file `name` of `d` (at `path`) with status `st`: new or
 * changed -> into the batch. `mark` sets the listing's seen mark. */
static void file_stat(amc_fs_source_t *s, dir_t *d, const char *name,
                      const char *path, const struct stat *st, int mark) {
  uint64_t mt = (uint64_t)st->st_mtim.tv_sec * 1000000000ULL +
                (uint64_t)st->st_mtim.tv_nsec;
  file_t *f = amc_strmap_get(&d->files, name);
  if (f && f->ino == (uint64_t)st->st_ino && f->size == (uint64_t)st->st_size &&
      f->mtime_ns == mt) {
    f->seen |= mark;
    return;
  }
  const char **old = NULL;
  uint64_t *old_spans = NULL;
  size_t n_old = 0;
  if (!f) {
    f = xcalloc(1, sizeof *f);
    amc_strmap_put(&d->files, name, f, NULL);
  } else {
    old = f->keys;
    old_spans = f->spans;
    n_old = f->n_keys;
    f->keys = NULL;
    f->spans = NULL;
    f->n_keys = 0;
  }
  f->ino = (uint64_t)st->st_ino;
  f->size = (uint64_t)st->st_size;
  f->mtime_ns = mt;
  f->seen |= mark;
  change_add(s, path, f, old, old_spans, n_old);
}

/* The subdirectory `name` of `d` exists with inode `ino`: returns its
 * dir_t, new (dirty) when it was not known or is another directory now (a
 * directory renamed over it: the old watch follows the old inode). */
static dir_t *subdir_at(amc_fs_source_t *s, dir_t *d, const char *name,
                        const char *path, uint64_t ino) {
  dir_t *sub = amc_strmap_get(&d->subdirs, name);
  if (sub && sub->ino != ino) {
    amc_strmap_del(&d->subdirs, name);
    dir_remove(s, sub);
    sub = NULL;
  }
  if (!sub) {
    sub = dir_new(s, d, path, ino);
    amc_strmap_put(&d->subdirs, name, sub, NULL);
  }
  return sub;
}

/* Rescans one directory: new/changed/gone files into the batch, new
 * subdirectories created (dirty, scanned by the caller's walk), gone ones
 * removed. Names being written are left as they were. Returns 0, or -1 if
 * the directory cannot be listed. */
static int dir_scan(amc_fs_source_t *s, dir_t *d) {
  uv_fs_t req;
  int n = uv_fs_scandir(NULL, &req, d->path, 0, NULL);
  s->listings++;
  if (n < 0) {
    uv_fs_req_cleanup(&req);
    return -1;
  }
  amc_buf_t p = AMC_BUF_INIT;
  uv_dirent_t ent;
  d->has_links = 0;
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    if (ent.name[0] == '.')
      continue;
    amc_buf_reset(&p);
    amc_buf_printf(&p, "%s/%s", d->path, ent.name);
    struct stat st;
    if (ent.type == UV_DIRENT_LINK)
      d->has_links = 1;
    else if (ent.type == UV_DIRENT_UNKNOWN &&
             (lstat(p.data, &st) != 0 || S_ISLNK(st.st_mode)))
      d->has_links = 1;
    if (d->writing.count && amc_strmap_get(&d->writing, ent.name)) {
      file_t *f = amc_strmap_get(&d->files, ent.name);
      if (f)
        f->seen = 1; /* kept as it was until its writer is done */
      continue;
    }
    if (stat(p.data, &st) != 0)
      continue; /* vanished meanwhile, or a dangling symlink */
    if (S_ISDIR(st.st_mode)) {
      subdir_at(s, d, ent.name, p.data, (uint64_t)st.st_ino)->seen = 1;
      continue;
    }
    if (!S_ISREG(st.st_mode) || !wanted_file(ent.name))
      continue;
    file_stat(s, d, ent.name, p.data, &st, 1);
  }
  uv_fs_req_cleanup(&req);
  amc_buf_free(&p);
  return 0;
}

/* Looks at one entry an event named: whatever it is now (a wanted file, a
 * directory, something else, nothing) replaces what it was. */
static int named_visit(const char *name, void *value, void *data) {
  (void)data;
  dir_t *d = value;
  amc_fs_source_t *s = d->src;
  if (amc_strmap_get(&d->writing, name))
    return 1; /* written again since: its close settles it */
  amc_buf_t p = AMC_BUF_INIT;
  amc_buf_printf(&p, "%s/%s", d->path, name);
  struct stat st;
  int ok = lstat(p.data, &st) == 0;
  if (ok && S_ISLNK(st.st_mode)) {
    d->has_links = 1;
    ok = stat(p.data, &st) == 0;
  }
  int is_dir = ok && S_ISDIR(st.st_mode);
  int is_file = ok && S_ISREG(st.st_mode) && wanted_file(name);
  if (!is_file) {
    file_t *f = amc_strmap_del(&d->files, name);
    if (f)
      file_gone(s, p.data, f);
  }
  if (is_dir) {
    /* Known and the same directory: list it anyway (cheap and rare). */
    subdir_at(s, d, name, p.data, (uint64_t)st.st_ino)->dirty = 1;
  } else {
    dir_t *sub = amc_strmap_del(&d->subdirs, name);
    if (sub)
      dir_remove(s, sub);
  }
  if (is_file)
    file_stat(s, d, name, p.data, &st, 0);
  amc_buf_free(&p);
  return 1;
}

static int sweep_files_visit(const char *name, void *value, void *data) {
  file_t *f = value;
  dir_t *d = data;
  if (f->seen || amc_strmap_get(&d->writing, name)) {
    /* seen, or held: being written, or gone while it may come back */
    f->seen = 0;
    return 0;
  }
  return remove_file_visit(name, value, data);
}

static int sweep_dirs_visit(const char *name, void *value, void *data) {
  (void)name;
  dir_t *sub = value;
  if (sub->seen) {
    sub->seen = 0;
    return 0;
  }
  dir_remove(data, sub);
  return 1;
}

/* Walks the tree, scanning dirty directories. Returns 1 if some directory
 * failed to list (its parent is then dirty: walk again). */
static int walk(amc_fs_source_t *s, dir_t *d) {
  int again = 0;
  if (d->dirty) {
    d->dirty = 0;
    amc_strmap_clear(&d->named, NULL);
    int retry = d->rewatch;
    d->rewatch = 0;
    /* A directory whose watch was lost or failed: watched again first, so
     * that nothing after its listing is missed. */
    if (retry && !d->watching && s->ino && dir_watch(s, d) == 0) {
      amc_log(AMC_INFO, "fs.watch_restarted", AMC_S("path", d->path));
      watch_restarted(s);
    }
    if (dir_scan(s, d) == 0) {
      amc_strmap_foreach(&d->files, sweep_files_visit, d);
      amc_strmap_foreach(&d->subdirs, sweep_dirs_visit, s);
    } else if (d->parent) {
      d->parent->dirty = 1; /* the parent sees it gone */
      again = 1;
    } else {
      report_error(s, d->path, "cannot list the directory");
    }
  } else if (d->named.count) {
    amc_strmap_foreach(&d->named, named_visit, NULL);
  }
  /* Children may be added/removed by the parent's scan only, never by
   * their own walk, so iterating while walking them is safe. */
  for (size_t i = 0; i < d->subdirs.n_buckets; i++) {
    for (amc_strmap_entry_t *e = d->subdirs.buckets[i]; e; e = e->next)
      again |= walk(s, e->value);
  }
  return again;
}

/* Every directory is listed on the next walk (and those not watched are
 * tried again). */
static void mark_all_dirty(dir_t *d) {
  d->dirty = 1;
  if (!d->watching)
    d->rewatch = 1;
  for (size_t i = 0; i < d->subdirs.n_buckets; i++) {
    for (amc_strmap_entry_t *e = d->subdirs.buckets[i]; e; e = e->next)
      mark_all_dirty(e->value);
  }
}

/* ------------------------------------------------------------------------ */
/* Batches */

static void split_key(char *key, const char **kind, const char **ns,
                      const char **name) {
  *kind = key;
  char *a = strchr(key, SEP);
  *a = '\0';
  *ns = a + 1;
  char *b = strchr(a + 1, SEP);
  *b = '\0';
  *name = b + 1;
}

/* Adds a key (and the span it came from) to the file being parsed. */
static void push_key(amc_fs_source_t *s, const char *k, uint64_t span) {
  if (s->n_new == s->cap_new) {
    s->cap_new = s->cap_new ? s->cap_new * 2 : 16;
    s->new_keys = xrealloc(s->new_keys, s->cap_new * sizeof *s->new_keys);
    s->new_spans = xrealloc(s->new_spans, s->cap_new * sizeof *s->new_spans);
  }
  s->new_keys[s->n_new] = k;
  s->new_spans[s->n_new++] = span;
}

static int emit(void *ctx, const char *kind, const char *ns, const char *name,
                const char *json, size_t len) {
  amc_fs_source_t *s = ctx;
  if (!ns)
    ns = "";
  amc_buf_t k = AMC_BUF_INIT; /* kind SEP ns SEP name (no printf: hot) */
  size_t kl = strlen(kind), nl = strlen(ns), ml = strlen(name);
  char *w = amc_buf_reserve(&k, kl + nl + ml + 2);
  memcpy(w, kind, kl);
  w[kl] = SEP;
  memcpy(w + kl + 1, ns, nl);
  w[kl + 1 + nl] = SEP;
  memcpy(w + kl + 2 + nl, name, ml);
  amc_buf_commit(&k, kl + nl + ml + 2);
  amc_strmap_entry_t *e = amc_strmap_find(&s->objs, k.data);
  obj_t *o = e ? e->value : NULL;
  if (o && o->owner && o->owner != s->parsing) {
    amc_buf_t m = AMC_BUF_INIT;
    amc_buf_printf(&m, "%s %s/%s is defined by another file too; ignored here",
                   kind, ns, name);
    report_error(s, s->parsing_path, m.data);
    amc_strmap_set_str(&s->shadows, k.data, s->parsing_path);
    amc_buf_free(&m);
    amc_buf_free(&k);
    return 0;
  }
  if (o && o->owner == s->parsing) {
    /* defined twice in the same file: the last definition wins */
    o->digest = digest(json, len);
    s->opt.sink.upsert(s->opt.sink_data, kind, ns, name, json, len);
    amc_buf_free(&k);
    return 0;
  }
  uint64_t dg = digest(json, len);
  int changed = !o || o->digest != dg;
  if (!o) {
    o = xcalloc(1, sizeof *o);
    e = amc_strmap_put(&s->objs, k.data, o, NULL);
  }
  o->owner = s->parsing;
  o->digest = dg;
  push_key(s, e->key, s->span);
  if (changed)
    s->opt.sink.upsert(s->opt.sink_data, kind, ns, name, json, len);
  amc_buf_free(&k);
  return 0;
}

void amc_fs_span_begin(void *ctx, uint64_t digest) {
  ((amc_fs_source_t *)ctx)->span = digest;
}

/* The old spans' digests, indexed: an open-addressing table of old key
 * indexes + 1 (0: empty), built on first use. (A route change in a file of
 * a hundred items asks for every item's digest: a sort and binary searches
 * cost ~25k instructions, this ~3k.) Entries with one digest are met in
 * their order in the file, as they were put in. */
static size_t span_slot(uint64_t digest, size_t cap) {
  return (size_t)((digest * 0x9E3779B97F4A7C15ULL) >> 32) & (cap - 1);
}

static void span_index(change_t *c) {
  size_t cap = 16;
  while (cap < 2 * c->n_old)
    cap *= 2;
  c->by_span = xcalloc(cap, sizeof *c->by_span);
  c->span_cap = cap;
  for (size_t j = 0; j < c->n_old; j++) {
    size_t h = span_slot(c->old_spans[j], cap);
    while (c->by_span[h])
      h = (h + 1) & (cap - 1);
    c->by_span[h] = j + 1;
  }
}

/* The change being parsed when it has old spans to look in, else NULL. */
static change_t *span_change(amc_fs_source_t *s, uint64_t digest) {
  change_t *c = s->parsing_change;
  if (!digest || !c || !c->old_spans || !c->n_old)
    return NULL;
  if (!c->by_span)
    span_index(c);
  return c;
}

int amc_fs_span_seen(void *ctx, uint64_t digest) {
  change_t *c = span_change(ctx, digest);
  if (!c)
    return 0;
  for (size_t h = span_slot(digest, c->span_cap); c->by_span[h];
       h = (h + 1) & (c->span_cap - 1)) {
    if (c->old_spans[c->by_span[h] - 1] == digest)
      return 1;
  }
  return 0;
}

int amc_fs_span_reuse(void *ctx, uint64_t digest, int claim) {
  amc_fs_source_t *s = ctx;
  change_t *c = span_change(s, digest);
  if (!c)
    return 0;
  /* Every object the span gave must still be unclaimed in this batch (not
   * taken by another file, not given twice by this one). The first few
   * are remembered for the claim (one look-up each, not two). */
  enum { KEEP = 8 };
  obj_t *found[KEEP];
  size_t n = 0, mask = c->span_cap - 1;
  for (size_t h = span_slot(digest, c->span_cap); c->by_span[h];
       h = (h + 1) & mask) {
    size_t j = c->by_span[h] - 1;
    if (c->old_spans[j] != digest)
      continue;
    obj_t *o = amc_strmap_get(&s->objs, c->old_keys[j]);
    if (!o || o->owner)
      return 0;
    if (n < KEEP)
      found[n] = o;
    n++;
  }
  if (!claim)
    return (int)n;
  size_t i = 0;
  for (size_t h = span_slot(digest, c->span_cap); i < n && c->by_span[h];
       h = (h + 1) & mask) {
    size_t j = c->by_span[h] - 1;
    if (c->old_spans[j] != digest)
      continue;
    obj_t *o = i < KEEP ? found[i] : amc_strmap_get(&s->objs, c->old_keys[j]);
    o->owner = s->parsing;
    push_key(s, c->old_keys[j], digest);
    i++;
  }
  return (int)n;
}

/* The file at `path` if the tree knows it and nobody is writing it. */
static file_t *file_at(amc_fs_source_t *s, const char *path) {
  size_t n = strlen(s->root_path);
  if (strncmp(path, s->root_path, n) != 0 || path[n] != '/')
    return NULL;
  char *rel = xstrdup(path + n + 1);
  dir_t *d = s->root;
  file_t *f = NULL;
  for (char *p = rel, *slash; d; p = slash + 1) {
    slash = strchr(p, '/');
    if (!slash) {
      if (!amc_strmap_get(&d->writing, p))
        f = amc_strmap_get(&d->files, p);
      break;
    }
    *slash = '\0';
    d = amc_strmap_get(&d->subdirs, p);
  }
  free(rel);
  return f;
}

/* Objects unclaimed after the changes up to `done` were parsed, that
 * another file defined too: that file goes into the batch, read again. */
static void reread_shadows(amc_fs_source_t *s, size_t done) {
  for (size_t i = 0; i < done && s->shadows.count; i++) {
    for (size_t j = 0; j < s->changes[i].n_old; j++) {
      const char *key = s->changes[i].old_keys[j];
      obj_t *o = amc_strmap_get(&s->objs, key);
      char *path = o && !o->owner ? amc_strmap_del(&s->shadows, key) : NULL;
      file_t *f = path ? file_at(s, path) : NULL;
      for (size_t k = 0; f && k < s->n_changes; k++) {
        if (s->changes[k].file == f)
          f = NULL; /* read in this batch already: it does not define it */
      }
      if (f) {
        change_add(s, path, f, f->keys, f->spans, f->n_keys);
        f->keys = NULL;
        f->spans = NULL;
        f->n_keys = 0;
      }
      free(path);
    }
  }
}

/* Steps 1 and 2 of a batch for the changes from..to. */
static void parse_changes(amc_fs_source_t *s, size_t from, size_t to) {
  /* 1. Unclaim every object of every changed file. */
  for (size_t i = from; i < to; i++) {
    change_t *c = &s->changes[i];
    for (size_t j = 0; j < c->n_old; j++) {
      obj_t *o = amc_strmap_get(&s->objs, c->old_keys[j]);
      if (o)
        o->owner = NULL;
    }
  }
  /* 2. Parse the files that exist; claim and upsert what they define. */
  char err[1024];
  for (size_t i = from; i < to; i++) {
    change_t *c = &s->changes[i];
    if (!c->file)
      continue;
    s->parsing = c->file;
    s->parsing_path = c->path;
    s->parsed_files++;
    if (!s->synced && uv_hrtime() - s->progress_ns > 1000000000ULL) {
      s->progress_ns = uv_hrtime();
      amc_log(AMC_INFO, "fs.progress", AMC_I("files", s->parsed_files),
              AMC_I("of", s->n_changes), AMC_I("objects", s->objs.count));
    }
    s->new_keys = NULL;
    s->new_spans = NULL;
    s->n_new = s->cap_new = 0;
    s->parsing_change = c;
    s->span = 0;
    err[0] = '\0';
    int rc = s->opt.parse(s->opt.parse_data, c->path, emit, s, err, sizeof err);
    if (rc == 0) {
      c->file->keys = s->new_keys;
      c->file->spans = s->new_spans;
      c->file->n_keys = s->n_new;
      continue;
    }
    report_error(s, c->path, err[0] ? err : "cannot parse");
    /* Keep the previous objects: reclaim those nobody took meanwhile. What
     * the partial parse upserted stays (it is what the file now says). */
    for (size_t j = 0; j < c->n_old; j++) {
      obj_t *o = amc_strmap_get(&s->objs, c->old_keys[j]);
      if (o && (!o->owner || o->owner == c->file)) {
        if (!o->owner)
          push_key(s, c->old_keys[j], c->old_spans ? c->old_spans[j] : 0);
        o->owner = c->file;
      }
    }
    c->file->keys = s->new_keys;
    c->file->spans = s->new_spans;
    c->file->n_keys = s->n_new;
  }
  s->parsing = NULL;
  s->parsing_path = NULL;
  s->new_keys = NULL;
  s->new_spans = NULL;
  s->parsing_change = NULL;
}

static void process_batch(amc_fs_source_t *s) {
  /* Ends: a round adds changes only for shadows it consumes. */
  size_t done = 0;
  while (done < s->n_changes) {
    size_t to = s->n_changes;
    parse_changes(s, done, to);
    done = to;
    reread_shadows(s, done);
  }
  /* 3. Delete what no file claims any more. */
  amc_buf_t k = AMC_BUF_INIT;
  for (size_t i = 0; i < s->n_changes; i++) {
    change_t *c = &s->changes[i];
    for (size_t j = 0; j < c->n_old; j++) {
      obj_t *o = amc_strmap_get(&s->objs, c->old_keys[j]);
      if (!o || o->owner)
        continue;
      amc_buf_reset(&k); /* the key goes with the entry */
      amc_buf_puts(&k, c->old_keys[j]);
      free(amc_strmap_del(&s->objs, k.data));
      const char *kind, *ns, *name;
      split_key(k.data, &kind, &ns, &name);
      s->opt.sink.remove(s->opt.sink_data, kind, ns, name);
    }
    free(c->old_keys);
    free(c->old_spans);
    free(c->by_span);
    free(c->path);
  }
  amc_buf_free(&k);
  size_t had = s->n_changes;
  s->n_changes = 0;
  if (had && s->opt.sink.batch_done)
    s->opt.sink.batch_done(s->opt.sink_data);
}

static void rescan(amc_fs_source_t *s) {
  s->pending = 0;
  for (int round = 0; round < 8; round++) {
    if (!walk(s, s->root))
      break;
  }
  process_batch(s);
}

static void on_tick(uv_timer_t *t) {
  rescan(t->data);
}

/* Settled names are read on the next loop iteration: the events a read
 * returned are one batch, and nothing waits for more. */
static void schedule(amc_fs_source_t *s) {
  if (s->closing)
    return;
  uv_timer_start(&s->tick, on_tick, 0, 0);
}

/* Settles the names quiet for debounce_ms (returns how many), and sets
 * *next_ms to the soonest another one will be. */
static size_t settle_quiet(dir_t *d, uint64_t now, uint64_t *next_ms) {
  size_t n = 0;
  uint64_t q = d->src->opt.debounce_ms;
  for (size_t i = 0; d->writing.count && i < d->writing.n_buckets; i++) {
    amc_strmap_entry_t *e = d->writing.buckets[i];
    while (e) {
      amc_strmap_entry_t *next = e->next;
      writing_t *w = e->value;
      if (now - w->last_ms >= q) {
        char *name = xstrdup(e->key); /* settle() deletes e */
        settle(d, name);
        free(name);
        n++;
      } else if (w->last_ms + q - now < *next_ms) {
        *next_ms = w->last_ms + q - now;
      }
      e = next;
    }
  }
  for (size_t i = 0; i < d->subdirs.n_buckets; i++) {
    for (amc_strmap_entry_t *e = d->subdirs.buckets[i]; e; e = e->next)
      n += settle_quiet(e->value, now, next_ms);
  }
  return n;
}

/* The fallback for writers that keep a file open (or a close the queue
 * lost): a name written to but quiet for debounce_ms is read anyway. */
static void on_quiet(uv_timer_t *t) {
  amc_fs_source_t *s = t->data;
  if (!s->n_writing)
    return;
  uint64_t next = UINT64_MAX;
  size_t n = settle_quiet(s->root, uv_now(s->loop), &next);
  if (s->n_writing && next != UINT64_MAX)
    uv_timer_start(&s->quiet, on_quiet, next, 0);
  if (n) {
    amc_log(AMC_DEBUG, "fs.quiet", AMC_I("files", n));
    rescan(s);
  }
}

static void on_resync(uv_timer_t *t) {
  amc_fs_source_t *s = t->data;
  if (!s->ino)
    s->ino = inotify_open(s); /* inotify failed before: try again */
  mark_all_dirty(s->root);
  rescan(s);
}

/* ------------------------------------------------------------------------ */
/* API */

amc_fs_source_t *amc_fs_source_start(uv_loop_t *loop,
                                     const amc_fs_source_opts_t *opts,
                                     char *err, size_t errlen) {
  struct stat st;
  if (stat(opts->root, &st) != 0) {
    snprintf(err, errlen, "fs source %s: %s", opts->root, strerror(errno));
    return NULL;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "fs source %s: not a directory", opts->root);
    return NULL;
  }
  amc_fs_source_t *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->opt = *opts;
  /* Strip trailing slashes so paths read "root/a/b.yaml". */
  s->root_path = xstrdup(opts->root);
  size_t n = strlen(s->root_path);
  while (n > 1 && s->root_path[n - 1] == '/')
    s->root_path[--n] = '\0';
  s->opt.root = s->root_path;
  uv_timer_init(loop, &s->tick);
  uv_timer_init(loop, &s->quiet);
  uv_timer_init(loop, &s->resync);
  s->tick.data = s;
  s->quiet.data = s;
  s->resync.data = s;
  s->open_handles = 3;
  s->ino = inotify_open(s);
  s->root = dir_new(s, NULL, s->root_path, (uint64_t)st.st_ino);
  s->progress_ns = uv_hrtime();
  rescan(s);
  s->synced = 1;
  amc_log(AMC_INFO, "fs.synced", AMC_S("root", s->root_path),
          AMC_I("objects", s->objs.count), AMC_I("directories", s->n_dirs));
  if (s->opt.sink.synced)
    s->opt.sink.synced(s->opt.sink_data);
  if (s->opt.resync_ms)
    uv_timer_start(&s->resync, on_resync, s->opt.resync_ms, s->opt.resync_ms);
  return s;
}

size_t amc_fs_source_count(const amc_fs_source_t *s) {
  return s->objs.count;
}

size_t amc_fs_source_watches(const amc_fs_source_t *s) {
  return s->n_dirs;
}

uint64_t amc_fs_source_listings(const amc_fs_source_t *s) {
  return s->listings;
}

void amc_fs_source_rescan(amc_fs_source_t *s) {
  mark_all_dirty(s->root);
  rescan(s);
}

static void on_timer_closed(uv_handle_t *h) {
  amc_fs_source_t *s = h->data;
  if (--s->open_handles == 0)
    free(s);
}

static int free_file_visit(const char *name, void *value, void *data) {
  (void)name;
  (void)data;
  file_t *f = value;
  free(f->keys);
  free(f->spans);
  free(f);
  return 1;
}

static void dir_free_tree(amc_fs_source_t *s, dir_t *d);

static int free_dir_visit(const char *name, void *value, void *data) {
  (void)name;
  dir_free_tree(data, value);
  return 1;
}

static void dir_free_tree(amc_fs_source_t *s, dir_t *d) {
  amc_strmap_foreach(&d->files, free_file_visit, NULL);
  amc_strmap_foreach(&d->subdirs, free_dir_visit, s);
  dir_free(s, d);
}

void amc_fs_source_close(amc_fs_source_t *s) {
  if (!s)
    return;
  s->closing = 1;
  forget_move(s);
  amc_strmap_clear(&s->objs, free);
  amc_strmap_clear(&s->shadows, free);
  free(s->changes);
  /* The kernel drops the watches with the instance. */
  amc_strmap_foreach(&s->watches, drop_watch_visit, NULL);
  amc_strmap_clear(&s->watches, NULL);
  dir_free_tree(s, s->root);
  s->root = NULL;
  free(s->root_path);
  s->root_path = NULL;
  inotify_close(s);
  uv_close((uv_handle_t *)&s->tick, on_timer_closed);
  uv_close((uv_handle_t *)&s->quiet, on_timer_closed);
  uv_close((uv_handle_t *)&s->resync, on_timer_closed);
}

/* ------------------------------------------------------------------------ */
/* The loader-based parser */

#include "canon.h"
#include "json.h"
#include "loader.h"

#include <lauxlib.h>

int amc_fs_direct = 1;

typedef struct {
  amc_fs_emit_fn emit;
  void *ctx;
  amc_canon_t *canon;
} loader_ctx_t;

/* The loader's callback: the object in the store's form (canon.h), which
 * the direct path gives without Lua for what it takes. */
static int on_loaded(lua_State *L, const char *source, void *data, char *err,
                     size_t errlen) {
  loader_ctx_t *lc = data;
  amc_canon_obj_t o;
  char oerr[256];
  if (amc_canon_lua(lc->canon, L, lua_gettop(L), &o, oerr, sizeof oerr) != 0) {
    snprintf(err, errlen, "%s: %s", source, oerr);
    return -1;
  }
  if (lc->emit(lc->ctx, o.kind, o.ns, o.name, o.json, o.len) != 0) {
    snprintf(err, errlen, "%s: stopped", source);
    return -1;
  }
  return 0;
}

/* A span straight from its text to its object (canon.h), as the loader
 * would give it through on_loaded: 0 (done), 1 (declined: the loader's
 * turn) or -1 with `err` filled. */
static int load_direct(const char *path, const amc_loader_span_t *sp, int json,
                       const amc_loader_opts_t *lo, loader_ctx_t *lc, char *err,
                       size_t errlen) {
  amc_canon_obj_t o;
  if (!amc_fs_direct ||
      (json ? amc_canon_json(lc->canon, sp->text, sp->len,
                             lo->default_namespace, &o)
            : amc_canon_yaml(lc->canon, sp->text, sp->len,
                             lo->default_namespace, &o)) != AMC_CANON_OK)
    return 1;
  if (lc->emit(lc->ctx, o.kind, o.ns, o.name, o.json, o.len) == 0)
    return 0;
  /* the loader's source for the object (loader.h), in its error */
  if (!json)
    snprintf(err, errlen, "%s:%zu: stopped", path, sp->line + o.line + 1);
  else if (sp->index == 0)
    snprintf(err, errlen, "%s:1: stopped", path);
  else
    snprintf(err, errlen, "%s:1[%ld]: stopped", path, sp->index);
  return -1;
}

static int no_emit(lua_State *L, const char *source, void *data, char *err,
                   size_t errlen) {
  (void)L, (void)source, (void)data, (void)err, (void)errlen;
  return 0;
}

/* The whole file's load, for the exact error message (a span's positions
 * are not the file's). */
static int whole_file_error(lua_State *L, const char *path,
                            const amc_loader_opts_t *lo, char *err,
                            size_t errlen) {
  char whole[1024];
  if (amc_loader_load_path(L, path, lo, no_emit, NULL, whole, sizeof whole) < 0)
    snprintf(err, errlen, "%s", whole);
  return -1;
}

/* Keeps a file's text buffer for the next, unless it is large. */
static void text_done(amc_buf_t *kept, amc_buf_t *b) {
  if (b->cap > ((size_t)1 << 20))
    amc_buf_free(b);
  *kept = *b;
}

/* Loads a file span by span (loader.h): a span whose text is what it was
 * at the file's last parse gives the same objects, taken as they are
 * without decoding them (a route change re-reads one VirtualService of a
 * file, not all). The result is the whole file's load: a JSON file with an
 * error anywhere gives no object (its spans that changed are checked
 * before any is used), a YAML file gives those before the error, and an
 * error's message is the whole file's. A changed span goes from its text
 * to its object without Lua when the direct path takes it (canon.h), else
 * through the loader. */
static int load_spans(lua_State *L, const char *path,
                      const amc_loader_opts_t *lo, loader_ctx_t *lc, char *err,
                      size_t errlen) {
  /* The text's buffer is kept for the next file (a route change then
   * makes no large allocation: with glibc, one consolidates every small
   * chunk freed since the last, ~20k instructions here); a large one is
   * let go. Per thread. */
  static _Thread_local amc_buf_t text;
  amc_buf_t b = text;
  amc_buf_reset(&b);
  amc_loader_span_t *sp = NULL;
  int json = 0;
  size_t pl = strlen(path);
  json = pl >= 5 && strcmp(path + pl - 5, ".json") == 0;
  int rd = amc_buf_read_file(&b, path);
  long n =
      rd < 0 ? -1 : amc_loader_split(b.data ? b.data : "", b.len, json, &sp);
  if (n < 0) {
    text_done(&text, &b);
    amc_fs_span_begin(lc->ctx, 0);
    return amc_loader_load_path(L, path, lo, on_loaded, lc, err, errlen);
  }
  /* The text around a JSON file's items is only scanned when cutting. */
  if (amc_loader_check_split(L, b.data ? b.data : "", b.len, json, sp, n, err,
                             errlen) != 0) {
    free(sp);
    text_done(&text, &b);
    return whole_file_error(L, path, lo, err, errlen);
  }
  uint64_t *dg = xcalloc((size_t)n, sizeof *dg);
  int rc = 0;
  for (long i = 0; i < n; i++)
    dg[i] = digest(sp[i].text, sp[i].len) | 1;
  /* JSON: which spans may be reused: those the file gave objects from at
   * its last parse (whether the objects can be taken is asked when they
   * are claimed). The others are new texts: with more than one, their
   * syntax is checked first. (A text seen before loaded without error.) */
  long unknown = 0;
  unsigned char *maybe = xcalloc((size_t)n, 1); /* may be reused (YAML:
                                                   asked when claimed) */
  for (long i = 0; i < n; i++) {
    maybe[i] = !json || amc_fs_span_seen(lc->ctx, dg[i]);
    unknown += !maybe[i];
  }
  /* With one changed span, its error comes before any object changes.
   * (JSON the direct path takes, the decoder takes.) */
  if (unknown > 1) {
    for (long i = 0; i < n && rc == 0; i++) {
      char jerr[256];
      amc_canon_obj_t o;
      if (maybe[i] ||
          (amc_fs_direct && amc_canon_json(lc->canon, sp[i].text, sp[i].len,
                                           lo->default_namespace, &o) == 0))
        continue;
      int top = lua_gettop(L);
      if (amc_json_decode(L, sp[i].text, sp[i].len, jerr, sizeof jerr) != 0)
        rc = whole_file_error(L, path, lo, err, errlen);
      lua_settop(L, top);
    }
  }
  for (long i = 0; i < n && rc == 0; i++) {
    if (maybe[i] && amc_fs_span_reuse(lc->ctx, dg[i], 1))
      continue;
    amc_fs_span_begin(lc->ctx, dg[i]);
    int d = load_direct(path, &sp[i], json, lo, lc, err, errlen);
    if (d < 0 ||
        (d > 0 && amc_loader_load_span(L, path, &sp[i], json, lo, on_loaded, lc,
                                       err, errlen) != 0))
      rc = whole_file_error(L, path, lo, err, errlen);
  }
  amc_fs_span_begin(lc->ctx, 0);
  free(maybe);
  free(dg);
  free(sp);
  text_done(&text, &b);
  return rc;
}

int amc_fs_parse_loader(void *parse_data, const char *path,
                        amc_fs_emit_fn emit_fn, void *ctx, char *err,
                        size_t errlen) {
  amc_fs_loader_t *fl = parse_data;
  amc_loader_opts_t lo = {.default_namespace = fl->default_namespace};
  /* The direct path's tree and output are kept for the next parse (they
   * grow to the largest span seen; over 1 MB they go). Per thread. */
  static _Thread_local amc_canon_t *canon;
  if (!canon)
    canon = amc_canon_new();
  loader_ctx_t lc = {emit_fn, ctx, canon};
  int rc = load_spans(fl->L, path, &lo, &lc, err, errlen);
  if (amc_canon_memory(canon) > ((size_t)1 << 20)) {
    amc_canon_free(canon); /* (after a large file) */
    canon = NULL;
  }
  /* Tables from this file are garbage now. Lua's own pacing collects
   * them as the state grows; a step after every file would put a GC step
   * between a route change's save and its AVI call, so one runs only once
   * the garbage adds up (a large initial scan). */
  if (lua_gc(fl->L, LUA_GCCOUNT) >= 4096) /* KB */
    lua_gc(fl->L, LUA_GCSTEP, 0);
  return rc;
}
