/* rules_engine.c - Lua rule generations, sandbox, limits and read tracking.
 *
 * Conventions (see reference: Lua 5.4 manual; lua-embedding notes):
 *   - Every entry into Lua is a lua_pcall with a traceback message handler;
 *     the work itself runs in a C function under that pcall, so an error
 *     anywhere (rule, limit, memory) unwinds to one place.
 *   - Memory that must survive a Lua error (the translation being built,
 *     scratch buffers) hangs off the engine, never off C locals, so a
 *     longjmp cannot leak it.
 *   - The generation is reachable from its lua_State through the extra
 *     space (lua_getextraspace), which the hook, the allocator and the host
 *     functions use. */
#include "rules_engine.h"

#include "deps.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h> /* RUNNING_ON_VALGRIND: header-only */
#define AMC_HAVE_VALGRIND_H 1
#endif
#endif

#include "json.h"
#include "json_project.h"
#include "util/grow.h"
#include "schema_proof.h"
#include "util/buf.h"
#include "util/embedded.h"
#include "util/hash.h"
#include "util/lz.h"
#include "util/slab_region.h"
#include "util/strmap.h"

#define HOOK_STEP      1000 /* AMC_LUA_PROFILE sampling, in VM instructions */
#define DEFAULT_CAP    ((size_t)256 << 20)
#define DEFAULT_TMEM   ((size_t)64 << 20)
#define DEFAULT_BUDGET 1000ULL /* CPU milliseconds */
#define BUDGET_SIGNAL  (SIGRTMIN + 5)
/* Garbage allowed between collections (see amc_rules_engine_translate).
 * What lives across translations is small (rules, schema: ~0.5 MB), so a
 * collection costs little more than the sweep it saves later; 6 MiB keeps
 * the peak down (32 MiB measured: the same CPU time, 25 MB more peak RSS
 * at 10k VirtualServices; 6 against 8 MiB: 2 MB less peak in the 10k
 * `--dry-run`, the same CPU time within noise; the huge-page slabs round
 * the heap up to 2 MiB). */
#define GC_SLACK ((size_t)6 << 20)

typedef struct {
  char *rel;  /* "lib/names.lua" */
  char *name; /* "lib/names" */
  char *text;
  size_t len;
} rule_file_t;

typedef struct gen gen_t;

#define SMALL_STEP 16
#define SMALL_MAX  256
#define SLAB_BYTES (64 * 1024) /* with its header (slab_t) */
#define SLAB_MEM   (SLAB_BYTES - sizeof(slab_t))
/* Slabs kept in memory ahead of the next translation (1 MiB: more than a
 * route change allocates; amc_rules_engine_settle). */
#define PREFAULT_SLABS 16
typedef struct small_free {
  struct small_free *next;
} small_free_t;
typedef struct slab {
  struct slab *next;
  size_t carved; /* bytes handed out; set when carving moves to a new slab */
  _Alignas(16) char mem[];
} slab_t;

#define PROF_SLOTS 4096
typedef struct {
  char key[120];
  uint64_t n;
} prof_slot_t;

/* An object of a translation and when it was added ("Patches"): the
 * hash of "<type>\0<name>" and how many objects were added before it. */
typedef struct obj_at {
  uint32_t h; /* (a collision can only make a patch decline: see
                 patch_present) */
  uint32_t at;
} obj_at_t;

#define PATCH_MAX_STALE 8 /* calls run again in one patch, at most */

/* One stale call of a patch: where its codes are in the key's calls, and
 * its old entry's parts (offsets into e->patch_old). */
typedef struct {
  uint64_t hash;
  uint32_t pos; /* objects added before the call */
  size_t codes_off, n_codes;
  size_t sub_off, sub_len, blob_off, blob_len, body_off, body_len;
  size_t reads_off, reads_len, n_reads;
} stale_call_t;

struct amc_rules_engine {
  amc_store_t *store;
  const amc_settings_t *settings;
  size_t cap, tmem;
  uint64_t budget; /* CPU milliseconds */
  char *runtime_dir;
  gen_t *active;
  uint64_t generations;
  /* The CPU-time budget (see "Budget" below). */
  timer_t timer;
  pid_t timer_tid; /* the thread the timer measures; 0: no timer yet */
  volatile sig_atomic_t deadline; /* the timer fired in this operation */
  uint64_t budget_end_ms;         /* without a timer: CPU clock deadline */
  lua_State *running;             /* the state the operation runs in */
  /* The operation in progress (a load or a translation). */
  int budget_hit;
  char budget_where[300];
  /* load */
  rule_file_t *files;
  size_t n_files;
  amc_buf_t import_stack; /* "a -> b" for cycle messages */
  /* translate */
  const amc_store_obj_t *cur_obj;
  amc_translation_t *cur_t;
  size_t objs_cap, diags_cap, reads_cap;
  char *out_err;     /* invalid output (not a Lua error) */
  prof_slot_t *prof; /* AMC_LUA_PROFILE */
  amc_buf_t scratch;
  amc_json_memo_t *enc_memo; /* collect_objects' (freed after it) */
  amc_json_tape_t enc_tape;  /* collect_objects': the object's tokens */
  /* memo (see "Memo" below and rules_engine.h) */
  int memo_on;
  amc_strmap_t memo; /* key -> struct memo_key* */
  size_t memo_entries;
  uint32_t *memo_ticks;         /* MEMO_SLOTS stamps of the memo clock */
  uint32_t memo_now;            /* the memo clock: one tick per store change */
  struct memo_path *memo_paths; /* (kind, path) of filtered reads seen */
  size_t memo_n_paths;
  /* the translation in progress */
  int memo_replay;              /* it may replay entries */
  struct memo_key *memo_cur;    /* its key's entries (NULL: none) */
  struct memo_item *memo_items; /* what it replayed or made */
  size_t memo_items_n, memo_items_cap;
  amc_buf_t memo_plain, memo_scratch, memo_packs;
  /* the last translation's entries, not packed yet (amc_rules_engine_settle) */
  struct memo_key *memo_pend; /* its key (NULL: nothing pending) */
  char *memo_pend_key;
  size_t memo_pend_n; /* its items: memo_items[0 .. memo_pend_n) */
  int gc_due;         /* a full collection is due (GC_SLACK of garbage) */
  /* The rt.memo calls running now, outermost first (a call inside a
   * memoized fn nests): frames[0 .. n_frames). Each records what its call
   * depends on, including what the calls inside it did or replayed. */
  struct memo_frame *frames;
  size_t n_frames, frames_cap;
  uint64_t memo_hits, memo_misses;
  /* patches (see "Patches" below) */
  int patch_on;    /* AMC_PATCH=0 turns them off */
  int patch_check; /* AMC_PATCH_CHECK=1: each checked by a full translation */
  int patching;    /* the translation in progress is a patch */
  int root_ok;     /* the translation in progress can be patched later */
  uint16_t *root_slots; /* its reads outside any memoized call, as slots */
  size_t n_root_slots, root_slots_cap;
  amc_buf_t root_calls; /* its top-level rt.memo calls (see memo_root) */
  amc_buf_t root_vals;  /* their kept argument values (root_keep) */
  size_t n_root_calls;
  amc_buf_t patch_old; /* the stale entries' parts, during a patch */
  struct obj_at *adds; /* the translation's objects by hash, in add order */
  size_t n_adds, adds_cap;
  uint32_t patch_pos; /* during a patch: where the running call was made */
  struct memo_key *patch_key; /* during a patch: the key's memo state */
  stale_call_t patch_stale[PATCH_MAX_STALE]; /* its stale calls */
  size_t patch_n_stale;
  uint64_t patches, patch_declined;
  /* without the memo: the inputs of the rt.memo calls running (host_get) */
  uint64_t plain_inputs[8][4];
  size_t plain_n[8], n_plain;
  amc_strmap_t check_last; /* AMC_PATCH_CHECK: key -> its last result */
  /* the projections rt.list was asked for (see host_list) */
  struct proj_reg *projs;
  size_t n_projs;
  amc_buf_t proj_buf, proj_old;
};

struct gen {
  lua_State *L;
  amc_rules_engine_t *eng;
  size_t used, cap, limit;
  size_t gc_base; /* bytes in use after the last full collection */
  int mem_refused;
  uint64_t number;
  char digest[65];
  char *entry_file; /* "rules/gateway.lua" */
  int ref_translate, ref_rt_new, ref_validate, ref_sandbox;
  int ref_patch_context; /* the entry rule's (LUA_NOREF: no patches) */
  int ref_cache; /* objects decoded in this translation, by store entry */
  int cache_n;   /* objects decoded so far in this translation (sizes the
                    next translation's cache: no rehash as it fills) */
  amc_schema_proof_t *proof; /* avi_schema compiled (schema_proof.h) */
  small_free_t *free_lists[SMALL_MAX / SMALL_STEP + 1]; /* see gen_alloc */
  slab_t *slabs; /* newest first; the head is the one being carved */
  char *slab_pos;
  size_t slab_left;
  size_t n_slabs;            /* slabs held (SLAB_BYTES each) */
  amc_slab_region_t *region; /* where slabs come from (NULL: malloc) */
  size_t large_used;         /* bytes in blocks > SMALL_MAX (plain malloc) */
  uint64_t *valid;           /* see valid_seen() */
  size_t valid_n, valid_cap;
};

static gen_t *GEN(lua_State *L) {
  return *(gen_t **)lua_getextraspace(L);
}

static char *xstrdup(const char *s) {
  char *p = strdup(s ? s : "");
  if (!p)
    abort();
  return p;
}

static char *xasprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...) {
  amc_buf_t b = AMC_BUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  amc_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  return amc_buf_steal(&b);
}

/* ------------------------------------------------------------------------ */
/* Allocator, hook, message handler                                          */

/* Small blocks (most of what Lua allocates: strings, tables, closures) come
 * from per-generation free lists carved out of 64 KiB slabs, one list per
 * 16-byte size class; larger ones from malloc. Lua always frees and
 * reallocates with the size it was given (osize), so the size tells which
 * of the two a block came from. Freed small blocks stay on the free lists;
 * slabs_reclaim() (from amc_rules_engine_compact) gives the slabs whose
 * blocks are all free back (their memory returns to the system), and the
 * rest go with the generation. */
/* A new slab: from the generation's region (util/slab_region.h: one
 * reserved range, advised to be backed by huge pages), else, once that is
 * used up or when it could not be reserved, from malloc. */
static slab_t *slab_new(gen_t *g) {
  slab_t *sl = g->region ? amc_slab_region_get(g->region) : NULL;
  return sl ? sl : malloc(SLAB_BYTES);
}

static void slab_release(gen_t *g, slab_t *sl) {
  if (amc_slab_region_owns(g->region, sl))
    amc_slab_region_put(g->region, sl);
  else
    free(sl);
}

/* A fresh block of size class c, carved from the current slab (a new one
 * when it has no room left); the free lists are empty for c. */
__attribute__((noinline)) static void *small_carve(gen_t *g, size_t c) {
  size_t sz = (c + 1) * SMALL_STEP;
  if (g->slab_left < sz) {
    slab_t *sl = slab_new(g);
    if (!sl)
      return NULL;
    if (g->slab_pos) /* the tail of the old one (< sz) is never used */
      g->slabs->carved = (size_t)(g->slab_pos - g->slabs->mem);
    sl->next = g->slabs;
    g->slabs = sl;
    g->n_slabs++;
    g->slab_pos = sl->mem;
    g->slab_left = SLAB_MEM;
  }
  void *p = g->slab_pos;
  g->slab_pos += sz;
  g->slab_left -= sz;
  return p;
}

static inline void *small_alloc(gen_t *g, size_t n) {
  size_t c = (n - 1) / SMALL_STEP;
  small_free_t *f = g->free_lists[c];
  if (f) {
    g->free_lists[c] = f->next;
    return f;
  }
  return small_carve(g, c);
}

static inline void small_release(gen_t *g, void *p, size_t n) {
  small_free_t *f = p;
  size_t c = (n - 1) / SMALL_STEP;
  f->next = g->free_lists[c];
  g->free_lists[c] = f;
}

/* The general case of gen_alloc: growing, shrinking or moving a block, and
 * every block larger than SMALL_MAX. */
__attribute__((noinline)) static void *gen_realloc(gen_t *g, void *ptr,
                                                   size_t osize, size_t nsize) {
  if (nsize == 0) {
    if (ptr) {
      if (osize <= SMALL_MAX) {
        small_release(g, ptr, osize);
      } else {
        free(ptr);
        g->large_used -= osize;
      }
    }
    g->used -= osize;
    return NULL;
  }
  if (nsize > osize && g->used + (nsize - osize) > g->limit) {
    g->mem_refused = 1;
    return NULL;
  }
  void *p;
  if (osize > SMALL_MAX && nsize > SMALL_MAX) {
    p = realloc(ptr, nsize);
    if (!p)
      return nsize <= osize ? ptr : NULL; /* shrinking never fails */
  } else if (ptr && osize <= SMALL_MAX && nsize <= SMALL_MAX &&
             (osize - 1) / SMALL_STEP == (nsize - 1) / SMALL_STEP) {
    p = ptr; /* same size class */
  } else {
    p = nsize <= SMALL_MAX ? small_alloc(g, nsize) : malloc(nsize);
    if (!p)
      return nsize <= osize ? ptr : NULL;
    if (ptr) {
      memcpy(p, ptr, osize < nsize ? osize : nsize);
      if (osize <= SMALL_MAX)
        small_release(g, ptr, osize);
      else
        free(ptr);
    }
  }
  g->used = g->used - osize + nsize;
  g->large_used = g->large_used - (osize > SMALL_MAX ? osize : 0) +
                  (nsize > SMALL_MAX ? nsize : 0);
  return p;
}

/* Lua's allocator. Nearly every call allocates or frees a small block;
 * those two take the short paths here (no large_used bookkeeping, no
 * realloc cases), everything else gen_realloc. */
static void *gen_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  gen_t *g = ud;
  if (!ptr) {
    osize = 0;                   /* osize is a type code then */
    if (nsize - 1 < SMALL_MAX) { /* 1..SMALL_MAX */
      if (g->used + nsize > g->limit) {
        g->mem_refused = 1;
        return NULL;
      }
      size_t c = (nsize - 1) / SMALL_STEP, sz = (c + 1) * SMALL_STEP;
      small_free_t *f = g->free_lists[c];
      if (f) {
        g->free_lists[c] = f->next;
      } else if (g->slab_left >= sz) { /* carve from the current slab */
        f = (small_free_t *)g->slab_pos;
        g->slab_pos += sz;
        g->slab_left -= sz;
      } else if (!(f = small_carve(g, c))) {
        return NULL;
      }
      g->used += nsize;
      return f;
    }
    if (nsize == 0) /* freeing NULL (an empty array part, ...) */
      return NULL;
  } else if (nsize == 0 && osize <= SMALL_MAX) {
    small_release(g, ptr, osize);
    g->used -= osize;
    return NULL;
  }
  return gen_realloc(g, ptr, osize, nsize);
}

/* slabs_reclaim: one slab's share of the free lists. */
typedef struct {
  slab_t *slab;
  size_t carved; /* bytes handed out from it so far */
  size_t freed;  /* bytes of those now on a free list */
} slab_use_t;

static int slab_use_cmp(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const slab_use_t *)a)->slab;
  uintptr_t y = (uintptr_t)((const slab_use_t *)b)->slab;
  return (x > y) - (x < y);
}

/* The slab holding block p (v sorted by address), or NULL. */
static slab_use_t *slab_of(slab_use_t *v, size_t n, const void *p) {
  uintptr_t a = (uintptr_t)p;
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    uintptr_t m = (uintptr_t)v[mid].slab->mem;
    if (a < m)
      hi = mid;
    else if (a >= m + SLAB_MEM)
      lo = mid + 1;
    else
      return &v[mid];
  }
  return NULL;
}

/* Frees the slabs none of whose blocks is in use (every block carved from
 * them is on a free list) and drops those blocks from the free lists.
 * Returns the bytes given back to malloc. Blocks in use never move, so a
 * slab with one live block stays; after a full collection most translation
 * garbage sits in slabs that are empty. */
static size_t slabs_reclaim(gen_t *g) {
  size_t n = g->n_slabs, i = 0;
  if (n == 0)
    return 0;
  slab_use_t *v = malloc(n * sizeof *v);
  if (!v)
    return 0; /* nothing lost: the slabs stay in use */
  for (slab_t *sl = g->slabs; sl; sl = sl->next, i++) {
    v[i].slab = sl;
    v[i].carved = sl == g->slabs && g->slab_pos
                      ? (size_t)(g->slab_pos - sl->mem)
                      : sl->carved;
    v[i].freed = 0;
  }
  qsort(v, n, sizeof *v, slab_use_cmp);
  size_t nclasses = sizeof g->free_lists / sizeof g->free_lists[0];
  for (size_t c = 0; c < nclasses; c++)
    for (small_free_t *f = g->free_lists[c]; f; f = f->next)
      slab_of(v, n, f)->freed += (c + 1) * SMALL_STEP;
  /* Unlink the blocks of empty slabs (keeping the lists' order). */
  for (size_t c = 0; c < nclasses; c++) {
    small_free_t **pp = &g->free_lists[c];
    while (*pp) {
      slab_use_t *u = slab_of(v, n, *pp);
      if (u->freed == u->carved)
        *pp = (*pp)->next;
      else
        pp = &(*pp)->next;
    }
  }
  /* Free the empty slabs; the list keeps its order (newest first). */
  size_t released = 0;
  slab_t **pp = &g->slabs;
  int head_gone = 0;
  while (*pp) {
    slab_t *sl = *pp;
    slab_use_t *u = slab_of(v, n, sl->mem);
    if (u->freed == u->carved) {
      head_gone |= sl == g->slabs;
      *pp = sl->next;
      slab_release(g, sl);
      g->n_slabs--;
      released += SLAB_BYTES;
    } else {
      pp = &sl->next;
    }
  }
  if (head_gone) {
    /* Carving resumes in a fresh slab (the others are carved out). */
    g->slab_pos = NULL;
    g->slab_left = 0;
  }
  free(v);
  return released;
}

/* The innermost rule file on the stack ("rules/x.lua:12"), else NULL. */
static int rule_position(lua_State *L, char *out, size_t n) {
  lua_Debug ar;
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar))
      continue;
    if (ar.source && strncmp(ar.source, "@rules/", 7) == 0) {
      snprintf(out, n, "%s:%d", ar.source + 1, ar.currentline);
      return 0;
    }
  }
  return -1;
}

/* Development aid: with AMC_LUA_PROFILE set, every hook tick charges the
 * running Lua function (and the rule function that called into the
 * runtime); amc_rules_engine_free prints the top entries on stderr. */

static void prof_tick(amc_rules_engine_t *e, lua_State *L) {
  lua_Debug ar;
  if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "S", &ar))
    return;
  char key[120];
  snprintf(key, sizeof key, "%s:%d", ar.short_src, ar.linedefined);
  uint64_t h = amc_fnv64_str(key);
  for (size_t i = 0; i < PROF_SLOTS; i++) {
    prof_slot_t *sl = &e->prof[(h + i) % PROF_SLOTS];
    if (!sl->key[0])
      memcpy(sl->key, key, sizeof key);
    if (strcmp(sl->key, key) == 0) {
      sl->n++;
      return;
    }
  }
}

static int prof_cmp(const void *a, const void *b) {
  uint64_t x = ((const prof_slot_t *)a)->n, y = ((const prof_slot_t *)b)->n;
  return (x < y) - (x > y);
}

static void prof_report(amc_rules_engine_t *e) {
  uint64_t total = 0;
  qsort(e->prof, PROF_SLOTS, sizeof *e->prof, prof_cmp);
  for (size_t i = 0; i < PROF_SLOTS; i++)
    total += e->prof[i].n;
  fprintf(stderr, "amc Lua profile (%llu ticks of %d instructions):\n",
          (unsigned long long)total, HOOK_STEP);
  for (size_t i = 0; i < 30 && e->prof[i].n; i++)
    fprintf(stderr, "  %5.1f%%  %s\n",
            100.0 * (double)e->prof[i].n / (double)total, e->prof[i].key);
}

/* Budget. Counting VM instructions needs a count hook, and any count hook
 * makes Lua 5.4 trap on every instruction (about a tenth of a
 * translation's time). So the budget is CPU time instead: a POSIX timer on
 * the thread's CPU clock sends BUDGET_SIGNAL to this thread when the
 * budget of the operation is used up, and the handler arms a count hook
 * (lua_sethook is safe to call from a signal handler), which raises the
 * error at the next VM instruction. Until then Lua runs without any hook.
 * Without a timer (timer_create failed) the hook checks the thread's CPU
 * clock every HOOK_STEP instructions instead. */
static uint64_t thread_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  amc_rules_engine_t *e = GEN(L)->eng;
  if (e->prof)
    prof_tick(e, L);
  if (!e->deadline) {
    if (e->timer_tid || thread_cpu_ms() < e->budget_end_ms)
      return;
    e->deadline = 1;
  }
  if (!e->budget_hit) {
    e->budget_hit = 1;
    if (rule_position(L, e->budget_where, sizeof e->budget_where) < 0)
      e->budget_where[0] = '\0';
  }
  luaL_error(L, "CPU time budget exceeded");
}

/* The engine whose operation runs now (on this, the loop thread). */
static amc_rules_engine_t *volatile budget_running;

static void budget_signal(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  amc_rules_engine_t *e = budget_running;
  if (!e || si->si_value.sival_ptr != e || !e->running)
    return; /* a late signal of an operation that has ended */
  e->deadline = 1;
  lua_sethook(e->running, budget_hook, LUA_MASKCOUNT, 1);
}

/* A timer on this thread's CPU clock (made again if the engine is used
 * from another thread than before). Returns 0, or -1: no timer. */
static int budget_timer(amc_rules_engine_t *e) {
  static int installed;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (e->timer_tid == tid)
    return 0;
  if (e->timer_tid) {
    timer_delete(e->timer);
    e->timer_tid = 0;
  }
  if (!installed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = budget_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(BUDGET_SIGNAL, &sa, NULL) != 0)
      return -1;
    installed = 1;
  }
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = BUDGET_SIGNAL;
  sev.sigev_value.sival_ptr = e;
  sev._sigev_un._tid = tid;
  if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &e->timer) != 0)
    return -1;
  e->timer_tid = tid;
  return 0;
}

/* Starts the budget of an operation running in L. */
static void budget_start(amc_rules_engine_t *e, lua_State *L) {
  e->budget_hit = 0;
  e->budget_where[0] = '\0';
  e->deadline = 0;
  e->running = L;
  budget_running = e;
  if (budget_timer(e) == 0) {
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(e->budget / 1000);
    its.it_value.tv_nsec = (long)(e->budget % 1000) * 1000000;
    if (timer_settime(e->timer, 0, &its, NULL) == 0) {
      if (e->prof)
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
      return;
    }
    timer_delete(e->timer);
    e->timer_tid = 0;
  }
  e->budget_end_ms = thread_cpu_ms() + e->budget;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
}

/* Ends it: disarms the timer and the hook. Returns 1 when the budget ran
 * out during the operation (also if no Lua ran after that). */
static int budget_stop(amc_rules_engine_t *e, lua_State *L) {
  if (e->timer_tid) {
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    timer_settime(e->timer, 0, &its, NULL);
  }
  budget_running = NULL;
  e->running = NULL;
  lua_sethook(L, NULL, 0, 0);
  return e->deadline || e->budget_hit;
}

static int msg_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Sandbox                                                                   */

static int sb_undefined(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  luaL_where(L, 1);
  lua_pushfstring(L, "undefined global '%s'", k ? k : "?");
  lua_concat(L, 2);
  return lua_error(L);
}

static int sb_assign(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  luaL_where(L, 1);
  lua_pushfstring(L,
                  "assignment to global '%s' (rules may not set globals; "
                  "use local)",
                  k ? k : "?");
  lua_concat(L, 2);
  return lua_error(L);
}

static int sb_readonly(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  return luaL_error(L, "attempt to modify read-only table (field '%s')",
                    k ? k : "?");
}

static int sb_proxy_pairs(lua_State *L) {
  lua_getglobal(L, "next");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushnil(L);
  return 3;
}

/* Pushes a read-only proxy for the table at `idx`. */
static void push_proxy(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, sb_readonly);
  lua_setfield(L, -2, "__newindex");
  lua_pushvalue(L, idx);
  lua_pushcclosure(L, sb_proxy_pairs, 1);
  lua_setfield(L, -2, "__pairs");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

static int sb_setmetatable(lua_State *L) {
  if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "__gc") != LUA_TNIL)
    return luaL_error(L, "setmetatable: __gc metamethods are not allowed");
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/* pcall/xpcall that cannot swallow a limit error. */
static int sb_pcall(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  gen_t *g = GEN(L);
  if (!lua_toboolean(L, 1)) {
    const char *m = lua_tostring(L, 2);
    if (g->eng->budget_hit ||
        (g->mem_refused && m && strcmp(m, "not enough memory") == 0)) {
      lua_settop(L, 2);
      return lua_error(L);
    }
  }
  return lua_gettop(L);
}

/* import(name): a module of this generation. */
static int l_import(lua_State *L);

static const char *const sb_globals[] = {
    "assert",   "error",    "ipairs",   "next",     "pairs",
    "select",   "tonumber", "tostring", "type",     "getmetatable",
    "rawequal", "rawget",   "rawlen",   "_VERSION", NULL,
};

/* Builds the sandbox base table and leaves it on the stack. Expects the
 * standard libraries in the globals. */
static void build_sandbox(lua_State *L) {
  lua_newtable(L);
  int base = lua_gettop(L);
  for (int i = 0; sb_globals[i]; i++) {
    lua_getglobal(L, sb_globals[i]);
    lua_setfield(L, base, sb_globals[i]);
  }
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, sb_setmetatable, 1);
  lua_setfield(L, base, "setmetatable");
  lua_getglobal(L, "pcall");
  lua_pushcclosure(L, sb_pcall, 1);
  lua_setfield(L, base, "pcall");
  lua_getglobal(L, "xpcall");
  lua_pushcclosure(L, sb_pcall, 1);
  lua_setfield(L, base, "xpcall");
  lua_pushcfunction(L, l_import);
  lua_setfield(L, base, "import");
  /* Read-only libraries. math without the random functions. */
  lua_getglobal(L, "string");
  push_proxy(L, -1);
  lua_setfield(L, base, "string");
  /* Every string indexes the proxy; the metatable itself is hidden. */
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_getfield(L, base, "string");
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 3);
  lua_getglobal(L, "table");
  push_proxy(L, -1);
  lua_setfield(L, base, "table");
  lua_pop(L, 1);
  lua_getglobal(L, "utf8");
  push_proxy(L, -1);
  lua_setfield(L, base, "utf8");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_getglobal(L, "math");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    const char *k = lua_tostring(L, -2);
    if (strcmp(k, "random") == 0 || strcmp(k, "randomseed") == 0) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -5);
  }
  lua_pop(L, 1);
  push_proxy(L, -1);
  lua_setfield(L, base, "math");
  lua_pop(L, 1);
  /* Unknown names raise. */
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, sb_undefined);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, base);
}

/* Pushes a fresh environment for one module. */
static void push_module_env(lua_State *L, gen_t *g) {
  lua_newtable(L);
  lua_createtable(L, 0, 3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref_sandbox);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, sb_assign);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

/* ------------------------------------------------------------------------ */
/* Modules                                                                   */

static const rule_file_t *find_file(amc_rules_engine_t *e, const char *name) {
  for (size_t i = 0; i < e->n_files; i++) {
    if (strcmp(e->files[i].name, name) == 0)
      return &e->files[i];
  }
  return NULL;
}

static int l_import(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  gen_t *g = GEN(L);
  amc_rules_engine_t *e = g->eng;
  lua_settop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "amc.modules");
  if (lua_getfield(L, 2, name) != LUA_TNIL)
    return 1;
  lua_pop(L, 1);
  const rule_file_t *f = e->files ? find_file(e, name) : NULL;
  if (!f)
    return luaL_error(L, "import(\"%s\"): no module rules/%s.lua", name, name);
  lua_getfield(L, LUA_REGISTRYINDEX, "amc.loading");
  if (lua_getfield(L, 3, name) != LUA_TNIL)
    return luaL_error(L, "import cycle: %s -> %s", e->import_stack.data, name);
  lua_pop(L, 1);
  lua_pushboolean(L, 1);
  lua_setfield(L, 3, name);
  size_t mark = e->import_stack.len;
  amc_buf_printf(&e->import_stack, "%s%s", mark ? " -> " : "", name);
  char chunk[600];
  snprintf(chunk, sizeof chunk, "@rules/%s", f->rel);
  if (luaL_loadbufferx(L, f->text, f->len, chunk, "t") != LUA_OK)
    return lua_error(L);
  push_module_env(L, g);
  lua_setupvalue(L, -2, 1);
  lua_call(L, 0, 1);
  if (lua_type(L, -1) != LUA_TTABLE)
    return luaL_error(L, "rules/%s: a module must return a table (got %s)",
                      f->rel, luaL_typename(L, -1));
  lua_pushvalue(L, -1);
  lua_setfield(L, 2, name);
  lua_pushnil(L);
  lua_setfield(L, 3, name);
  e->import_stack.len = mark;
  if (e->import_stack.data)
    e->import_stack.data[mark] = '\0';
  return 1;
}

/* Runtime modules (rt, validate, avi_schema): trusted code, run with the
 * plain globals plus this require. */
static int l_runtime_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  gen_t *g = GEN(L);
  lua_settop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "amc.runtime");
  if (lua_getfield(L, 2, name) != LUA_TNIL)
    return 1;
  lua_pop(L, 1);
  char file[300], chunk[340];
  snprintf(file, sizeof file, "%s.lua", name);
  snprintf(chunk, sizeof chunk, "@runtime/lua/%s", file);
  if (g->eng->runtime_dir) {
    amc_buf_t *b = &g->eng->scratch;
    amc_buf_reset(b);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", g->eng->runtime_dir, file);
    int rc = amc_buf_read_file(b, path);
    if (rc < 0)
      return luaL_error(L, "runtime module %s: %s: %s", name, path,
                        strerror(-rc));
    if (luaL_loadbufferx(L, b->data ? b->data : "", b->len, chunk, "t") !=
        LUA_OK)
      return lua_error(L);
  } else {
    const amc_embedded_file_t *f = amc_embedded_find(file);
    if (!f)
      return luaL_error(L, "runtime module %s: not embedded in this build",
                        name);
    if (luaL_loadbufferx(L, f->data, f->len, chunk, "t") != LUA_OK)
      return lua_error(L);
  }
  lua_call(L, 0, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, 2, name);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Host functions (rt.get, rt.list, rt.hash)                                 */

static char *dup_opt(const char *s) {
  return s ? xstrdup(s) : NULL;
}

/* Appends a read to the growable array (*reads, *n, *cap), copying the
 * strings. `field` or `label` (at most one) with `value`: a filtered list. */
static void reads_append(amc_read_t **reads, size_t *n, size_t *cap,
                         const char *kind, const char *ns, const char *name,
                         const char *field, const char *label,
                         const char *value) {
  AMC_GROW(*reads, *n, *cap, 16);
  amc_read_t *r = &(*reads)[(*n)++];
  r->kind = xstrdup(kind);
  r->namespace_ = dup_opt(ns);
  r->name = dup_opt(name);
  r->field = dup_opt(field);
  r->label = dup_opt(label);
  r->value = value && (field || label) ? xstrdup(value) : NULL;
}

/* One running rt.memo call (see "Memo" below): what its entry will
 * depend on. A call made inside it (nesting) is part of what it did:
 * whether that call runs or replays, its reads, its slots and its subkey
 * (and those of the calls inside that one) go to every open frame. */
typedef struct memo_frame {
  amc_read_t *reads; /* the call's reads (and those of calls inside it) */
  size_t n_reads, reads_cap;
  amc_buf_t enc;   /* the reads of entries replayed inside it, as in their */
  size_t n_enc;    /* plain text (n_enc of them; their slots are in slots) */
  uint16_t *slots; /* slots of its root and inputs, of the inner calls'
                      inputs and of the entries replayed inside it */
  size_t n_slots, slots_cap;
  uint64_t *kids; /* subkey hashes of the calls inside it, at any depth */
  size_t n_kids, kids_cap;
  uint64_t inputs[4]; /* its first inputs, by input_hash (see host_get) */
  size_t n_inputs;
} memo_frame_t;

/* An object's identity, hashed: "<kind>\0<ns>\0<name>". */
static uint64_t input_hash(const char *kind, const char *ns, const char *name) {
  uint64_t h = amc_fnv64(kind, strlen(kind) + 1);
  h = amc_fnv64_update(h, ns ? ns : "", (ns ? strlen(ns) : 0) + 1);
  return amc_fnv64_update(h, name, strlen(name));
}

static void frame_read(memo_frame_t *f, const char *kind, const char *ns,
                       const char *name, const char *field, const char *label,
                       const char *value) {
  reads_append(&f->reads, &f->n_reads, &f->reads_cap, kind, ns, name, field,
               label, value);
}

static uint16_t read_slot(const amc_read_t *r);
static uint16_t proj_slot(const char *proj, uint16_t slot);
static void note_path(amc_rules_engine_t *e, const amc_read_t *r);

/* Appends `slot` to the growable array (*v, *n, *cap). */
static void slots_push(uint16_t **v, size_t *n, size_t *cap, uint16_t slot) {
  AMC_GROW(*v, *n, *cap, 16);
  (*v)[(*n)++] = slot;
}

/* A read outside any memoized call: a patch needs it unchanged. */
static void root_slot_add(amc_rules_engine_t *e, uint16_t slot) {
  slots_push(&e->root_slots, &e->n_root_slots, &e->root_slots_cap, slot);
}

/* Records a read for the translation and the open memo frames. `proj`
 * (a projected list, see host_list) changes only the slot the read gets
 * among the translation's own reads (outside memoized calls): a change
 * that leaves the objects' projections alone stamps no such slot. */
static void record_read_proj(amc_rules_engine_t *e, const char *kind,
                             const char *ns, const char *name,
                             const char *field, const char *label,
                             const char *value, const char *proj) {
  amc_translation_t *t = e->cur_t;
  if (!t)
    return;
  if (e->memo_on && !e->n_frames && !e->patching) {
    amc_read_t r = {(char *)kind,  (char *)ns,    (char *)name,
                    (char *)field, (char *)label, (char *)value};
    uint16_t slot = read_slot(&r);
    root_slot_add(e, proj ? proj_slot(proj, slot) : slot);
    if (!name && value && (field || label))
      note_path(e, &r); /* so that changes stamp it */
  }
  /* every open memo frame records its call's reads too (a call inside
   * another one is part of what the outer call did) */
  for (size_t i = 0; i < e->n_frames; i++)
    frame_read(&e->frames[i], kind, ns, name, field, label, value);
  reads_append(&t->reads, &t->n_reads, &e->reads_cap, kind, ns, name, field,
               label, value);
}

static void record_read(amc_rules_engine_t *e, const char *kind, const char *ns,
                        const char *name, const char *field, const char *label,
                        const char *value) {
  record_read_proj(e, kind, ns, name, field, label, value, NULL);
}

static const char *opt_string(lua_State *L, int i, const char *what) {
  int t = lua_type(L, i);
  if (t == LUA_TNIL || t == LUA_TNONE ||
      (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, i) == AMC_JSON_NULL))
    return NULL;
  if (t != LUA_TSTRING)
    luaL_error(L, "%s must be a string or nil, got %s", what,
               luaL_typename(L, i));
  return lua_tostring(L, i);
}

/* (Host functions run inside the translation's protected call: the
 * decoder needs no protected call of its own.) */
static int push_obj(lua_State *L, const amc_store_obj_t *o) {
  /* The decode copies everything into Lua, so one buffer serves every
   * read (single-threaded; an error leaves it for the next read). */
  static amc_buf_t buf = AMC_BUF_INIT;
  char err[200];
  size_t len;
  const char *json = amc_store_json(o, &buf, &len);
  if (amc_json_push_canonical(L, json, len, err, sizeof err) < 0)
    return luaL_error(L, "decoding %s %s: %s", o->kind, o->name, err);
  return 0;
}

/* Pushes the object for the rules: decoded on its first read in this
 * translation, the same table on later reads (the store does not change
 * during a translation; rules are not to mutate their input, and even if
 * they do, the next translation decodes afresh). */
static void push_cached(lua_State *L, gen_t *g, int cache,
                        const amc_store_obj_t *o) {
  if (lua_rawgetp(L, cache, o) != LUA_TNIL)
    return;
  lua_pop(L, 1);
  push_obj(L, o);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, cache, o);
  g->cache_n++;
}

static int host_get(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  const char *kind = luaL_checkstring(L, 1);
  const char *ns = opt_string(L, 2, "rt.get: namespace");
  const char *name = luaL_checkstring(L, 3);
  /* One of the running call's own inputs is no new read: the call's entry
   * depends on it already, and the translation read it outside the call
   * (rt.memo's contract), e.g. the whole VirtualService a route reads
   * after the Gateway listed it projected. Not recording it keeps 10k
   * reads out of the dependency index at 10k VirtualServices. */
  int is_input = 0;
  const uint64_t *in = NULL;
  size_t n_in = 0;
  if (e->n_frames) {
    const memo_frame_t *f = &e->frames[e->n_frames - 1];
    in = f->inputs;
    n_in = f->n_inputs;
  } else if (e->n_plain && e->n_plain <= 8) { /* (no memo: inputs_begin) */
    in = e->plain_inputs[e->n_plain - 1];
    n_in = e->plain_n[e->n_plain - 1];
  }
  uint64_t h = n_in ? input_hash(kind, ns, name) : 0;
  for (size_t i = 0; i < n_in && !is_input; i++)
    is_input = in[i] == h;
  if (!is_input)
    record_read(e, kind, ns, name, NULL, NULL, NULL);
  const amc_store_obj_t *o = amc_store_get(e->store, kind, ns, name);
  if (!o) {
    lua_pushnil(L);
    return 1;
  }
  gen_t *g = GEN(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref_cache);
  push_cached(L, g, lua_gettop(L), o);
  return 1;
}

/* Does the object on top of the stack have every label of the selector at
 * `sel` (a table label -> string value)? */
static int labels_match(lua_State *L, int sel) {
  int top = lua_gettop(L), ok = 0;
  if (lua_type(L, top) != LUA_TTABLE ||
      lua_getfield(L, top, "metadata") != LUA_TTABLE ||
      lua_getfield(L, -1, "labels") != LUA_TTABLE) {
    /* No labels: only the empty selector matches. */
    lua_pushnil(L);
    ok = lua_next(L, sel) == 0;
    lua_settop(L, top);
    return ok;
  }
  int labels = lua_gettop(L);
  ok = 1;
  lua_pushnil(L);
  while (lua_next(L, sel)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, labels);
    if (!lua_rawequal(L, -1, -2)) {
      ok = 0;
      break;
    }
    lua_pop(L, 2);
  }
  lua_settop(L, top);
  return ok;
}

#define FIELD_MAX_DEPTH 16

/* Splits "spec.gateways" into segments in `buf` (NUL-separated) and
 * `segs`. Returns the count, or 0 for an empty segment or too many. */
static size_t split_field(const char *field, char *buf, size_t bufsz,
                          const char *segs[FIELD_MAX_DEPTH]) {
  size_t len = strlen(field), n = 0;
  if (len == 0 || len >= bufsz)
    return 0;
  memcpy(buf, field, len + 1);
  char *p = buf;
  for (;;) {
    char *dot = strchr(p, '.');
    if (dot)
      *dot = '\0';
    if (!*p || n == FIELD_MAX_DEPTH)
      return 0;
    segs[n++] = p;
    if (!dot)
      return n;
    p = dot + 1;
  }
}

/* Projections: rt.list(kind, ns, {..., fields = {...}}) gives the objects
 * cut down to those fields (json_project.h), with kind, apiVersion,
 * metadata.name and metadata.namespace always, and the list's filter
 * (its field, or metadata.labels) too, so that an object moving between
 * lists changes its projection. Decoding the cut text costs a fraction of
 * the whole object; and a read of a projected list, made outside memoized
 * calls, gets a slot of its own (proj_slot) that a change stamps only when
 * the object's projection changed (amc_rules_engine_changed): an edit the
 * list's readers cannot see leaves a patch possible ("Patches"). One
 * registry entry per (kind, fields, filter) seen; never freed before the
 * engine (a handful). */
typedef struct proj_reg {
  char *kind;
  char *key; /* "<kind>|<fields, comma-joined>|<filter path>" */
  amc_json_projection_t *p;
} proj_reg_t;

#define PROJ_FIELDS_MAX 24

/* The registry entry for the projection of `kind` onto the strings of the
 * table at `fi` plus the filter `filter` (a dot path, or NULL), made on
 * first use. Raises a Lua error for bad fields. */
static const proj_reg_t *proj_get(lua_State *L, amc_rules_engine_t *e,
                                  const char *kind, int fi,
                                  const char *filter) {
  char key[1024];
  size_t kl = (size_t)snprintf(key, sizeof key, "%s|", kind);
  size_t n = lua_rawlen(L, fi);
  if (n == 0 || n > PROJ_FIELDS_MAX)
    luaL_error(L, "rt.list: fields must list 1 to %d paths", PROJ_FIELDS_MAX);
  for (size_t i = 1; i <= n; i++) {
    if (lua_rawgeti(L, fi, (lua_Integer)i) != LUA_TSTRING)
      luaL_error(L, "rt.list: fields[%d] must be a string", (int)i);
    const char *f = lua_tostring(L, -1);
    kl += (size_t)snprintf(key + kl, kl < sizeof key ? sizeof key - kl : 0,
                           "%s%s", i > 1 ? "," : "", f);
    lua_pop(L, 1);
  }
  kl += (size_t)snprintf(key + kl, kl < sizeof key ? sizeof key - kl : 0, "|%s",
                         filter ? filter : "");
  if (kl >= sizeof key)
    luaL_error(L, "rt.list: fields too long");
  for (size_t i = 0; i < e->n_projs; i++)
    if (strcmp(e->projs[i].key, key) == 0)
      return &e->projs[i];
  const char *paths[PROJ_FIELDS_MAX + 6];
  size_t np = 0;
  paths[np++] = "apiVersion";
  paths[np++] = "kind";
  paths[np++] = "metadata.name";
  paths[np++] = "metadata.namespace";
  if (filter)
    paths[np++] = filter;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, fi, (lua_Integer)i);
    paths[np++] = lua_tostring(L, -1); /* (kept by the table) */
    lua_pop(L, 1);
  }
  char err[256];
  amc_json_projection_t *p =
      amc_json_projection_new(paths, np, err, sizeof err);
  if (!p)
    luaL_error(L, "rt.list: fields: %s", err);
  proj_reg_t *v = realloc(e->projs, (e->n_projs + 1) * sizeof *v);
  if (!v)
    abort();
  e->projs = v;
  v[e->n_projs] = (proj_reg_t){xstrdup(kind), xstrdup(key), p};
  return &v[e->n_projs++];
}

/* Pushes object `o` projected by `pr`: the same table for every read of
 * it with that projection in this translation (a list of them holds each
 * object once, as unprojected lists do). */
static void push_projected(lua_State *L, gen_t *g, int cache,
                           const amc_store_obj_t *o, const proj_reg_t *pr) {
  amc_rules_engine_t *e = g->eng;
  if (lua_rawgetp(L, cache, pr) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 16);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, cache, pr);
  }
  if (lua_rawgetp(L, -1, o) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  static amc_buf_t buf = AMC_BUF_INIT; /* (as push_obj's) */
  size_t len;
  const char *json = amc_store_json(o, &buf, &len);
  amc_buf_reset(&e->proj_buf);
  char err[200];
  if (amc_json_project(pr->p, json, len, &e->proj_buf) != 0 ||
      amc_json_push_canonical(L, e->proj_buf.data, e->proj_buf.len, err,
                              sizeof err) < 0)
    luaL_error(L, "projecting %s %s: not a JSON object", o->kind, o->name);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, o);
  lua_remove(L, -2);
}

/* host.list(kind, ns, labels, field, value): see the header. The
 * candidates come from a store field index when there is a field (or a
 * label) to look up, else from the whole kind (or namespace); labels are
 * then checked on the decoded objects. */
static int host_list(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  const char *kind = luaL_checkstring(L, 1);
  const char *ns = opt_string(L, 2, "rt.list: namespace");
  int sel = 0;
  const char *lkey = NULL, *lval = NULL; /* one label of the selector */
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    sel = 3;
    lua_pushnil(L);
    while (lua_next(L, sel)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "rt.list: labels must map strings to strings");
      if (!lkey) { /* both stay referenced by the selector table */
        lkey = lua_tostring(L, -2);
        lval = lua_tostring(L, -1);
      }
      lua_pop(L, 1);
    }
    if (!lkey)
      sel = 0; /* {} matches everything */
  }
  const char *field = opt_string(L, 4, "rt.list: field");
  const char *value = NULL;
  char fbuf[256];
  const char *segs[FIELD_MAX_DEPTH];
  size_t depth = 0;
  if (field) {
    value = luaL_checkstring(L, 5);
    depth = split_field(field, fbuf, sizeof fbuf, segs);
    if (!depth)
      return luaL_error(L,
                        "rt.list: field \"%s\" must be dot-separated keys "
                        "(at most %d, none empty)",
                        field, FIELD_MAX_DEPTH);
  } else if (lkey) {
    segs[0] = "metadata";
    segs[1] = "labels";
    segs[2] = lkey;
    depth = 3;
    value = lval;
  }
  const proj_reg_t *pr = NULL;
  if (!lua_isnoneornil(L, 6)) {
    luaL_checktype(L, 6, LUA_TTABLE);
    pr = proj_get(L, e, kind, 6,
                  field  ? field
                  : lkey ? "metadata.labels"
                         : NULL);
  }
  /* The result is a subset of the indexed lookup's, so recording that
   * lookup is exact enough: only objects matching it (before or after a
   * change) can change the result. */
  record_read_proj(e, kind, ns, NULL, field, field ? NULL : lkey, value,
                   pr ? pr->key : NULL);
  const amc_store_obj_t *const *l;
  size_t n = depth ? amc_store_find(e->store, kind, ns, segs, depth, value, &l)
                   : amc_store_list(e->store, kind, ns, &l);
  gen_t *g = GEN(L);
  luaL_checkstack(L, 8, "rt.list");
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref_cache);
  int cache = lua_gettop(L);
  lua_createtable(L, n > 1000000 ? 1000000 : (int)n, 0);
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  lua_setmetatable(L, -2);
  lua_Integer k = 0;
  for (size_t i = 0; i < n; i++) {
    if (pr)
      push_projected(L, g, cache, l[i], pr);
    else
      push_cached(L, g, cache, l[i]);
    if (sel && !labels_match(L, sel)) {
      lua_pop(L, 1);
      continue;
    }
    lua_rawseti(L, -2, ++k);
  }
  return 1;
}

static int host_hash(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  uint64_t h = amc_fnv64(s, n);
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  lua_pushlstring(L, hex, 16);
  return 1;
}

/* host.ipv4(s): rt.lua's ipv4 in C (called once per pool server, where
 * Lua's pattern matching dominated): the 32-bit number of "a.b.c.d" (runs
 * of ASCII digits, each at most 255, leading zeros allowed), else nil. */
static int host_ipv4(lua_State *L) {
  size_t n;
  if (lua_type(L, 1) != LUA_TSTRING)
    return 0;
  const char *s = lua_tolstring(L, 1, &n), *end = s + n;
  uint32_t v = 0;
  for (int part = 0; part < 4; part++) {
    if (part > 0) {
      if (s == end || *s != '.')
        return 0;
      s++;
    }
    if (s == end || *s < '0' || *s > '9')
      return 0;
    unsigned o = 0;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
      o = o * 10 + (unsigned)(*s - '0');
      if (o > 255)
        return 0;
    }
    v = v << 8 | o;
  }
  if (s != end)
    return 0;
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/* host.plain_name(prefix, part...): rt.lua's plain_name in C, rt.name's
 * usual case (once per pool and pool group, where Lua's pattern checks,
 * tostring and table.concat dominated): prefix .. the parts joined by "--"
 * when every part is an integer (in decimal) or a non-empty string of
 * AVI-safe characters [A-Za-z0-9._-] without "--" in it; else nil (rt.name
 * then sanitizes and hashes). */
static int name_char_ok(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* name_char_ok as a table (checked for every character of every name). */
static unsigned char name_chars[256]; /* 1: ok; all 0 until filled */

static void name_chars_fill(void) {
  for (int c = 0; c < 256; c++)
    name_chars[c] = (unsigned char)name_char_ok((unsigned char)c);
}

/* v in decimal, as tostring(v) writes it; returns the length (at most 20,
 * no terminator). */
static size_t integer_text(char out[24], lua_Integer v) {
  char rev[24];
  size_t n = 0, len = 0;
  lua_Unsigned u = v < 0 ? 0u - (lua_Unsigned)v : (lua_Unsigned)v;
  do {
    rev[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    out[len++] = '-';
  while (n)
    out[len++] = rev[--n];
  return len;
}

/* Appends `len` bytes to the name being built: in `buf` (PLAIN_NAME_BUF
 * bytes) while it fits, then in the luaL_Buffer (started on first need;
 * names are usually far shorter than the buffer, and one lua_pushlstring
 * costs much less than a luaL_Buffer per name). */
#define PLAIN_NAME_BUF 512

typedef struct {
  char buf[PLAIN_NAME_BUF];
  size_t len;
  int spilled;
  luaL_Buffer b;
} name_buf_t;

static void name_add(lua_State *L, name_buf_t *nb, const char *s, size_t len) {
  if (!nb->spilled && nb->len + len <= sizeof nb->buf) {
    memcpy(nb->buf + nb->len, s, len);
    nb->len += len;
    return;
  }
  if (!nb->spilled) {
    luaL_buffinitsize(L, &nb->b, nb->len + len + 64);
    luaL_addlstring(&nb->b, nb->buf, nb->len);
    nb->spilled = 1;
  }
  luaL_addlstring(&nb->b, s, len);
}

static int host_plain_name(lua_State *L) {
  int n = lua_gettop(L);
  size_t plen;
  const char *prefix = luaL_checklstring(L, 1, &plen);
  name_buf_t nb;
  nb.len = 0;
  nb.spilled = 0;
  name_add(L, &nb, prefix, plen);
  for (int i = 2; i <= n; i++) {
    if (i > 2)
      name_add(L, &nb, "--", 2);
    if (lua_isinteger(L, i)) {
      char num[24];
      name_add(L, &nb, num, integer_text(num, lua_tointeger(L, i)));
      continue;
    }
    if (lua_type(L, i) != LUA_TSTRING)
      goto not_plain;
    size_t len;
    const unsigned char *p = (const unsigned char *)lua_tolstring(L, i, &len);
    if (len == 0)
      goto not_plain;
    if (!name_chars['a'])
      name_chars_fill();
    for (size_t k = 0; k < len; k++) {
      if (!name_chars[p[k]] || (p[k] == '-' && k > 0 && p[k - 1] == '-'))
        goto not_plain;
    }
    name_add(L, &nb, (const char *)p, len);
  }
  if (nb.spilled)
    luaL_pushresult(&nb.b);
  else
    lua_pushlstring(L, nb.buf, nb.len);
  return 1;
not_plain:
  lua_pushnil(L);
  return 1;
}

/* host.new_array(n): an empty JSON array with room for n elements (pool
 * servers, pool group members): filled in order it needs none of the
 * rehashes a growing table goes through. Same result as rt.array({}). */
#define NEW_ARRAY_MAX 65536 /* a hint: larger arrays grow as usual */

static int host_new_array(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_createtable(L, n < 0 ? 0 : n > NEW_ARRAY_MAX ? NEW_ARRAY_MAX : (int)n, 0);
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* host.base64_decode(s): rt.lua's base64_decode in C (TLS Secrets are
 * kilobytes of base64, slow to decode in Lua). Same result for every
 * input: whitespace dropped; nil unless the length is a multiple of 4 and
 * every byte is [A-Za-z0-9+/=]; in each group of four, '=' is allowed in
 * the last two places only and each '=' drops the byte it would end. */
static signed char b64_table[256]; /* value + 1; 0: not base64 */

static int b64_value(unsigned char c) {
  if (!b64_table['A']) {
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; i++)
      b64_table[(unsigned char)abc[i]] = (signed char)(i + 1);
  }
  return b64_table[c] - 1;
}

static int host_base64_decode(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  /* Without whitespace (Lua's %s: space, \t, \n, \v, \f, \r); then
   * decoded in place (the output is shorter than what it is read from). */
  char *t = lua_newuserdatauv(L, n ? n : 1, 0);
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c == ' ' || (c >= '\t' && c <= '\r'))
      continue;
    if (c != '=' && b64_value(c) < 0) {
      lua_pushnil(L);
      return 1;
    }
    t[m++] = (char)c;
  }
  if (m % 4 != 0) {
    lua_pushnil(L);
    return 1;
  }
  size_t k = 0;
  for (size_t i = 0; i < m; i += 4) {
    unsigned char g[4];
    memcpy(g, t + i, 4);
    int va = b64_value(g[0]), vb = b64_value(g[1]);
    int vc = g[2] != '=' ? b64_value(g[2]) : 0;
    int vd = g[3] != '=' ? b64_value(g[3]) : 0;
    if (va < 0 || vb < 0 || vc < 0 || vd < 0) {
      lua_pushnil(L);
      return 1;
    }
    unsigned long v = ((unsigned long)va << 18) | ((unsigned long)vb << 12) |
                      ((unsigned long)vc << 6) | (unsigned long)vd;
    t[k++] = (char)((v >> 16) & 0xff);
    if (g[2] != '=')
      t[k++] = (char)((v >> 8) & 0xff);
    if (g[3] != '=')
      t[k++] = (char)(v & 0xff);
  }
  lua_pushlstring(L, t, k);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Loading a generation                                                      */

static void free_files(rule_file_t *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(f[i].rel);
    free(f[i].name);
    free(f[i].text);
  }
  free(f);
}

static int str_ptr_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int file_cmp(const void *a, const void *b) {
  return strcmp(((const rule_file_t *)a)->rel, ((const rule_file_t *)b)->rel);
}

/* Collects *.lua under root/rel, recursively. */
static int walk_rules(const char *root, const char *rel, rule_file_t **files,
                      size_t *n, size_t *cap, int depth, char *err,
                      size_t errlen) {
  if (depth > 16) {
    snprintf(err, errlen, "%s/%s: directories nested too deeply", root, rel);
    return -1;
  }
  char dir[1200];
  snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t nn = 0, nc = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    if (nn == nc) {
      nc = nc ? nc * 2 : 16;
      names = realloc(names, nc * sizeof *names);
      if (!names)
        abort();
    }
    names[nn++] = xstrdup(de->d_name);
  }
  closedir(d);
  if (nn > 1) /* (an empty directory has no array at all) */
    qsort(names, nn, sizeof *names, str_ptr_cmp);
  int rc = 0;
  for (size_t i = 0; i < nn && rc == 0; i++) {
    char sub[1200], path[2400];
    snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names[i]);
    snprintf(path, sizeof path, "%s/%s", root, sub);
    struct stat st;
    if (stat(path, &st) != 0) {
      snprintf(err, errlen, "%s: %s", path, strerror(errno));
      rc = -1;
    } else if (S_ISDIR(st.st_mode)) {
      rc = walk_rules(root, sub, files, n, cap, depth + 1, err, errlen);
    } else if (S_ISREG(st.st_mode)) {
      size_t l = strlen(sub);
      if (l > 4 && strcmp(sub + l - 4, ".lua") == 0) {
        amc_buf_t b = AMC_BUF_INIT;
        int r = amc_buf_read_file(&b, path);
        if (r < 0) {
          snprintf(err, errlen, "%s: %s", path, strerror(-r));
          amc_buf_free(&b);
          rc = -1;
        } else {
          if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *files = realloc(*files, *cap * sizeof **files);
            if (!*files)
              abort();
          }
          rule_file_t *f = &(*files)[(*n)++];
          f->rel = xstrdup(sub);
          f->name = xstrdup(sub);
          f->name[l - 4] = '\0';
          f->len = b.len;
          f->text = amc_buf_steal(&b);
        }
      }
    }
  }
  for (size_t i = 0; i < nn; i++)
    free(names[i]);
  free(names);
  return rc;
}

static void digest_files(const rule_file_t *f, size_t n, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx)
    abort();
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  for (size_t i = 0; i < n; i++) {
    unsigned char len[8];
    uint64_t l = f[i].len;
    for (int j = 0; j < 8; j++)
      len[j] = (unsigned char)(l >> (8 * j));
    EVP_DigestUpdate(ctx, f[i].rel, strlen(f[i].rel) + 1);
    EVP_DigestUpdate(ctx, len, 8);
    EVP_DigestUpdate(ctx, f[i].text, f[i].len);
  }
  EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  for (unsigned i = 0; i < 32 && i < mdlen; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
  out[64] = '\0';
}

static int protect_array_mt(lua_State *L) {
  luaL_newmetatable(L, AMC_JSON_ARRAY_MT);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, sb_readonly);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  return 0;
}

/* Runs under pcall: builds the whole generation in g->L. */
static int load_protected(lua_State *L) {
  gen_t *g = GEN(L);
  amc_rules_engine_t *e = g->eng;
  static const luaL_Reg libs[] = {
      {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
      {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
      {LUA_UTF8LIBNAME, luaopen_utf8}, {NULL, NULL},
  };
  for (const luaL_Reg *l = libs; l->name; l++) {
    luaL_requiref(L, l->name, l->func, 1);
    lua_pop(L, 1);
  }
  /* Trusted runtime code keeps the globals, minus file and VM access. */
  static const char *const drop[] = {"dofile",         "loadfile", "load",
                                     "collectgarbage", "print",    NULL};
  for (int i = 0; drop[i]; i++) {
    lua_pushnil(L);
    lua_setglobal(L, drop[i]);
  }
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  protect_array_mt(L);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "amc.modules");
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "amc.loading");
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "amc.runtime");
  build_sandbox(L);
  g->ref_sandbox = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  g->ref_cache = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_runtime_require);
  lua_setglobal(L, "require");
  lua_pushcfunction(L, amc_json_open);
  lua_call(L, 0, 1);
  lua_setglobal(L, "json");

  /* The runtime library. */
  lua_pushcfunction(L, l_runtime_require);
  lua_pushliteral(L, "rt");
  lua_call(L, 1, 1);
  if (lua_type(L, -1) != LUA_TTABLE ||
      lua_getfield(L, -1, "new") != LUA_TFUNCTION)
    return luaL_error(L, "runtime/lua/rt.lua: must return a table with new");
  g->ref_rt_new = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_runtime_require);
  lua_pushliteral(L, "validate");
  lua_call(L, 1, 1);
  if (lua_type(L, -1) != LUA_TTABLE ||
      lua_getfield(L, -1, "object") != LUA_TFUNCTION)
    return luaL_error(L, "runtime/lua/validate.lua: must return a table with "
                         "object");
  g->ref_validate = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  /* The schema validate.lua uses, compiled for the C fast path. */
  lua_pushcfunction(L, l_runtime_require);
  lua_pushliteral(L, "avi_schema");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE) {
    amc_schema_proof_free(g->proof);
    g->proof = amc_schema_proof_compile(L, -1);
  }
  lua_pop(L, 1);

  /* Every module, in path order. */
  for (size_t i = 0; i < e->n_files; i++) {
    lua_pushcfunction(L, l_import);
    lua_pushstring(L, e->files[i].name);
    lua_call(L, 1, 0);
  }

  /* The entry rule. */
  lua_getfield(L, LUA_REGISTRYINDEX, "amc.modules");
  int mods = lua_gettop(L);
  const char *entry = NULL;
  for (size_t i = 0; i < e->n_files; i++) {
    const rule_file_t *f = &e->files[i];
    lua_getfield(L, mods, f->name);
    int m = lua_gettop(L);
    if (lua_getfield(L, m, "translate") == LUA_TNIL) {
      lua_settop(L, mods);
      continue;
    }
    if (lua_type(L, -1) != LUA_TFUNCTION)
      return luaL_error(L, "rules/%s: translate must be a function", f->rel);
    lua_getfield(L, m, "api_version");
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) != 1)
      return luaL_error(L,
                        "rules/%s: entry rule must declare api_version = 1 "
                        "(this amc supports only 1)",
                        f->rel);
    lua_pop(L, 1);
    lua_getfield(L, m, "kind");
    const char *kind = lua_tostring(L, -1);
    if (!kind || strcmp(kind, "Gateway") != 0)
      return luaL_error(L,
                        "rules/%s: entry rule kind must be \"Gateway\" "
                        "(the only key kind), got %s",
                        f->rel, kind ? kind : luaL_typename(L, -1));
    lua_pop(L, 1);
    if (entry)
      return luaL_error(L, "rules/%s and rules/%s.lua both translate Gateway",
                        f->rel, entry);
    entry = f->name;
    free(g->entry_file);
    g->entry_file = xasprintf("rules/%s", f->rel);
    g->ref_translate = luaL_ref(L, LUA_REGISTRYINDEX);
    int pc = lua_getfield(L, m, "patch_context");
    if (pc != LUA_TNIL && pc != LUA_TFUNCTION)
      return luaL_error(L, "rules/%s: patch_context must be a function",
                        f->rel);
    if (pc == LUA_TFUNCTION)
      g->ref_patch_context = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, mods);
  }
  if (!entry)
    return luaL_error(L, "no entry rule: no module has translate with "
                         "api_version = 1 and kind = \"Gateway\"");
  lua_settop(L, 0);
  return 0;
}

static void gen_free(gen_t *g) {
  if (!g)
    return;
  if (g->L)
    lua_close(g->L);
  while (g->slabs) {
    slab_t *next = g->slabs->next;
    if (!amc_slab_region_owns(g->region, g->slabs))
      free(g->slabs); /* the region's go with it */
    g->slabs = next;
  }
  amc_slab_region_free(g->region);
  free(g->entry_file);
  free(g->valid);
  amc_schema_proof_free(g->proof);
  free(g);
}

/* The rule files under `dir`, sorted by path (what a generation is built
 * from and its digest covers). Returns 0 with *files (free_files) and *n,
 * or -1 with `err` set. */
static int read_rule_files(const char *dir, rule_file_t **files, size_t *n,
                           char *err, size_t errlen) {
  size_t cap = 0;
  *files = NULL;
  *n = 0;
  if (walk_rules(dir, "", files, n, &cap, 0, err, errlen) < 0) {
    free_files(*files, *n);
    return -1;
  }
  if (*n == 0) {
    snprintf(err, errlen, "%s: no rule files (*.lua)", dir);
    free(*files);
    return -1;
  }
  qsort(*files, *n, sizeof **files, file_cmp);
  return 0;
}

int amc_rules_dir_digest(const char *dir, char out[65], char *err,
                         size_t errlen) {
  rule_file_t *files;
  size_t n;
  if (read_rule_files(dir, &files, &n, err, errlen) != 0)
    return -1;
  digest_files(files, n, out);
  free_files(files, n);
  return 0;
}

int amc_rules_engine_load(amc_rules_engine_t *e, const char *dir, char *err,
                          size_t errlen) {
  rule_file_t *files;
  size_t n;
  if (read_rule_files(dir, &files, &n, err, errlen) != 0)
    return -1;
  gen_t *g = calloc(1, sizeof *g);
  if (!g)
    abort();
  g->eng = e;
  g->cap = g->limit = e->cap;
  g->ref_translate = g->ref_rt_new = g->ref_validate = g->ref_sandbox =
      g->ref_cache = g->ref_patch_context = LUA_NOREF;
  digest_files(files, n, g->digest);
  /* Room for the whole memory cap in small blocks (address space only). */
  g->region = amc_slab_region_new(SLAB_BYTES, g->cap);
  g->L = lua_newstate(gen_alloc, g);
  if (!g->L) {
    snprintf(err, errlen, "cannot create a Lua state (memory cap too low?)");
    free_files(files, n);
    amc_slab_region_free(g->region);
    free(g);
    return -1;
  }
  *(gen_t **)lua_getextraspace(g->L) = g;
  lua_gc(g->L, LUA_GCGEN, 0, 0);
  e->files = files;
  e->n_files = n;
  amc_buf_reset(&e->import_stack);
  g->mem_refused = 0;
  lua_State *L = g->L;
  budget_start(e, L);
  int rc = -1;
  if (lua_checkstack(L, 4)) {
    lua_pushcfunction(L, msg_handler);
    lua_pushcfunction(L, load_protected);
    int status = lua_pcall(L, 0, 0, 1);
    if (budget_stop(e, L)) {
      snprintf(err, errlen,
               "%s: CPU time budget exceeded (%llu ms) while loading rules "
               "from %s",
               e->budget_where[0] ? e->budget_where : "rules",
               (unsigned long long)e->budget, dir);
    } else if (status == LUA_OK) {
      rc = 0;
    } else if (status == LUA_ERRMEM) {
      snprintf(err, errlen,
               "memory limit exceeded (%zu bytes) while loading rules from %s",
               g->cap, dir);
    } else {
      const char *m = lua_tostring(L, -1);
      snprintf(err, errlen, "loading rules from %s: %s", dir,
               m ? m : "unknown error");
    }
  } else {
    budget_stop(e, L);
    snprintf(err, errlen, "cannot grow the Lua stack");
  }
  e->files = NULL;
  e->n_files = 0;
  free_files(files, n);
  if (rc < 0) {
    gen_free(g);
    return -1;
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  lua_gc(L, LUA_GCSTOP);
  g->gc_base = g->used;
  slabs_reclaim(g); /* the loader's garbage (compiler, decoded schema) */
  gen_free(e->active);
  e->active = g;
  g->number = ++e->generations;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Translating                                                               */

static int out_fail(amc_rules_engine_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int out_fail(amc_rules_engine_t *e, const char *fmt, ...) {
  if (e->out_err)
    return 0;
  amc_buf_t b = AMC_BUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  amc_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  e->out_err = amc_buf_steal(&b);
  return 0;
}

static const char *field_str(lua_State *L, int t, const char *f) {
  lua_getfield(L, t, f);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* still referenced by the table */
  return s;
}

static int collect_diags(lua_State *L, amc_rules_engine_t *e, int res) {
  amc_translation_t *t = e->cur_t;
  int ty = lua_getfield(L, res, "diagnostics");
  if (ty == LUA_TNIL)
    return 0;
  if (ty != LUA_TTABLE)
    return out_fail(e, "result.diagnostics must be an array, got %s",
                    luaL_typename(L, -1)),
           -1;
  int dl = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, dl);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, dl, i);
    int d = lua_gettop(L);
    if (lua_type(L, d) != LUA_TTABLE)
      return out_fail(e, "diagnostics[%lld] must be a table", (long long)i - 1),
             -1;
    const char *sev = field_str(L, d, "severity");
    const char *field = field_str(L, d, "field");
    const char *msg = field_str(L, d, "message");
    if (!sev || (strcmp(sev, "warning") != 0 && strcmp(sev, "error") != 0))
      return out_fail(e,
                      "diagnostics[%lld].severity must be \"warning\" or "
                      "\"error\"",
                      (long long)i - 1),
             -1;
    if (!msg)
      return out_fail(e, "diagnostics[%lld].message must be a string",
                      (long long)i - 1),
             -1;
    if (lua_getfield(L, d, "object") != LUA_TTABLE)
      return out_fail(e, "diagnostics[%lld].object must be a table",
                      (long long)i - 1),
             -1;
    int o = lua_gettop(L);
    const char *kind = field_str(L, o, "kind");
    const char *ns = field_str(L, o, "namespace");
    const char *name = field_str(L, o, "name");
    if (!kind || !name)
      return out_fail(e, "diagnostics[%lld].object needs kind and name strings",
                      (long long)i - 1),
             -1;
    if (t->n_diags == e->diags_cap) {
      e->diags_cap = e->diags_cap ? e->diags_cap * 2 : 8;
      amc_diag_t *nd = realloc(t->diags, e->diags_cap * sizeof *nd);
      if (!nd)
        abort();
      t->diags = nd;
    }
    amc_diag_t *dg = &t->diags[t->n_diags++];
    dg->severity = sev[0] == 'e' ? AMC_DIAG_ERROR : AMC_DIAG_WARNING;
    dg->kind = xstrdup(kind);
    dg->namespace_ = ns && *ns ? xstrdup(ns) : NULL;
    dg->name = xstrdup(name);
    dg->field = xstrdup(field ? field : "");
    dg->message = xstrdup(msg);
    lua_settop(L, dl);
  }
  lua_settop(L, res);
  return 0;
}

/* The set of (type, canonical JSON) hashes that passed validation in a
 * generation: open addressing over 64-bit hashes (0 = empty), cleared
 * when it gets large. */
#define VALID_MAX (1u << 20)

/* The object's checksum (FNV-1a 64 of the bytes, computed anyway) mixed
 * with its type and length: no second pass over the bytes. */
static uint64_t valid_hash(const char *type, uint64_t cksum, size_t len) {
  uint64_t h = 0xcbf29ce484222325ULL ^ len;
  for (const unsigned char *p = (const unsigned char *)type; *p; p++)
    h = (h ^ *p) * 0x100000001b3ULL;
  h = (h ^ cksum) * 0x9e3779b97f4a7c15ULL;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ULL;
  h ^= h >> 32;
  return h ? h : 1;
}

static int valid_seen(gen_t *g, uint64_t h) {
  if (!g->valid_cap)
    return 0;
  for (size_t i = h & (g->valid_cap - 1);; i = (i + 1) & (g->valid_cap - 1)) {
    if (g->valid[i] == h)
      return 1;
    if (!g->valid[i])
      return 0;
  }
}

static void valid_add(gen_t *g, uint64_t h) {
  if (g->valid_n * 2 >= g->valid_cap) {
    size_t cap = g->valid_cap ? g->valid_cap * 2 : 1024;
    if (cap > VALID_MAX) { /* forget everything rather than grow */
      memset(g->valid, 0, g->valid_cap * sizeof *g->valid);
      g->valid_n = 0;
    } else {
      uint64_t *nv = calloc(cap, sizeof *nv);
      if (!nv)
        return;
      for (size_t i = 0; i < g->valid_cap; i++) {
        uint64_t v = g->valid[i];
        if (!v)
          continue;
        size_t j = v & (cap - 1);
        while (nv[j])
          j = (j + 1) & (cap - 1);
        nv[j] = v;
      }
      free(g->valid);
      g->valid = nv;
      g->valid_cap = cap;
    }
  }
  size_t i = h & (g->valid_cap - 1);
  while (g->valid[i] && g->valid[i] != h)
    i = (i + 1) & (g->valid_cap - 1);
  if (!g->valid[i]) {
    g->valid[i] = h;
    g->valid_n++;
  }
}

static int obj_cmp(const void *a, const void *b) {
  const amc_avi_object_t *x = a, *y = b;
  int c = strcmp(x->type, y->type);
  return c ? c : strcmp(x->name, y->name);
}

/* Appends a zeroed object named (type, name) to the current translation. */
static amc_avi_object_t *push_object(amc_rules_engine_t *e, const char *type,
                                     const char *name) {
  amc_translation_t *t = e->cur_t;
  if (t->n_objects == e->objs_cap) {
    e->objs_cap = e->objs_cap ? e->objs_cap * 2 : 16;
    amc_avi_object_t *no = realloc(t->objects, e->objs_cap * sizeof *no);
    if (!no)
      abort();
    t->objects = no;
  }
  amc_avi_object_t *ao = &t->objects[t->n_objects++];
  memset(ao, 0, sizeof *ao);
  ao->type = xstrdup(type);
  ao->name = xstrdup(name);
  return ao;
}

/* An unchanged object (rt.lua's memo replay: the output item has
 * `unchanged` = its checksum): taken without body or validation (it passed
 * both when the entry was made). Returns 1 if the item was one. */
static int collect_unchanged(lua_State *L, amc_rules_engine_t *e, int it,
                             const char *type, const char *name) {
  amc_translation_t *t = e->cur_t;
  const char *ck = field_str(L, it, "unchanged");
  if (!ck)
    return 0;
  const char *tr = field_str(L, it, "tenant_ref");
  amc_avi_object_t *ao = push_object(e, type, name);
  snprintf(ao->cksum, sizeof ao->cksum, "%s", ck);
  ao->tenant_ref = tr ? xstrdup(tr) : NULL;
  t->n_unchanged++;
  return 1;
}

static uint64_t obj_hash(const char *type, size_t tl, const char *name,
                         size_t nl) {
  uint64_t h = amc_fnv64(type, tl);
  h = amc_fnv64_update(h, "", 1);
  return amc_fnv64_update(h, name, nl);
}

static void adds_note(amc_rules_engine_t *e, const char *type, const char *name,
                      uint32_t at) {
  AMC_GROW(e->adds, e->n_adds, e->adds_cap, 256);
  e->adds[e->n_adds++] = (obj_at_t){
      (uint32_t)obj_hash(type, strlen(type), name, strlen(name)), at};
}

static int collect_objects(lua_State *L, gen_t *g, int res) {
  amc_rules_engine_t *e = g->eng;
  amc_translation_t *t = e->cur_t;
  int ty = lua_getfield(L, res, "objects");
  if (ty == LUA_TNIL)
    return 0;
  if (ty != LUA_TTABLE)
    return out_fail(e, "result.objects must be an array, got %s",
                    luaL_typename(L, -1)),
           -1;
  int ol = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, ol);
  /* Objects share subtables (markers): each encoded once. Every table
   * stays reachable from `res` (so at its address) and unchanged (no rule
   * code runs; validate.object only reads) until the memo is freed. */
  amc_json_memo_free(e->enc_memo);
  e->enc_memo = amc_json_memo_new();
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, ol, i);
    int it = lua_gettop(L);
    if (lua_type(L, it) != LUA_TTABLE)
      return out_fail(e, "objects[%lld] must be a table {type=, object=}",
                      (long long)i - 1),
             -1;
    const char *type = field_str(L, it, "type");
    if (!type || !*type)
      return out_fail(e, "objects[%lld].type must be a non-empty string",
                      (long long)i - 1),
             -1;
    if (lua_getfield(L, it, "object") != LUA_TTABLE)
      return out_fail(e, "objects[%lld] (%s): object must be a table",
                      (long long)i - 1, type),
             -1;
    int obj = lua_gettop(L);
    const char *name = field_str(L, obj, "name");
    if (!name || !*name)
      return out_fail(e, "objects[%lld]: %s without a name", (long long)i - 1,
                      type),
             -1;
    if (e->root_ok && !e->patching) /* (the Output lists them as added) */
      adds_note(e, type, name, (uint32_t)(i - 1));
    if (e->memo_on && collect_unchanged(L, e, it, type, name)) {
      lua_settop(L, ol);
      continue;
    }
    amc_buf_reset(&e->scratch);
    char jerr[300];
    if (amc_json_encode_tape(L, obj, &e->scratch, e->enc_memo, &e->enc_tape,
                             jerr, sizeof jerr) < 0)
      return out_fail(e, "%s \"%s\": %s", type, name, jerr), -1;
    /* validate.object(type, object), unless these exact bytes of this type
     * passed before in this generation (the usual case when a key is
     * translated again). */
    uint64_t ck = amc_object_cksum64(e->scratch.data, e->scratch.len);
    uint64_t vh = valid_hash(type, ck, e->scratch.len);
    if (!valid_seen(g, vh) &&
        !amc_schema_proof_check_tape(g->proof, type, &e->enc_tape,
                                     e->scratch.data, e->scratch.len)) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref_validate);
      lua_pushvalue(L, it);
      lua_getfield(L, -1, "type");
      lua_replace(L, -2);
      lua_pushvalue(L, obj);
      lua_call(L, 2, 2);
      if (!lua_toboolean(L, -2)) {
        const char *m = lua_tostring(L, -1);
        if (m && m[0] == ':' && m[1] == ' ')
          m += 2;
        return out_fail(e, "invalid %s \"%s\": %s", type, name,
                        m ? m : "rejected by validate.object"),
               -1;
      }
      lua_pop(L, 2);
      valid_add(g, vh);
    }
    amc_avi_object_t *ao = push_object(e, type, name);
    /* A copy of exactly the right size; the scratch buffer keeps its
     * memory for the next object (no regrowing from empty each time). */
    ao->json_len = e->scratch.len;
    ao->json = malloc(e->scratch.len + 1);
    if (!ao->json)
      abort();
    memcpy(ao->json, e->scratch.data, e->scratch.len + 1);
    amc_object_cksum_hex(ck, ao->cksum);
    ao->tenant_ref = dup_opt(field_str(L, obj, "tenant_ref"));
    lua_settop(L, ol);
  }
  lua_settop(L, res);
  if (t->n_objects > 1)
    qsort(t->objects, t->n_objects, sizeof *t->objects, obj_cmp);
  for (size_t i = 1; i < t->n_objects; i++) {
    if (obj_cmp(&t->objects[i - 1], &t->objects[i]) == 0)
      return out_fail(e,
                      "two %s objects named \"%s\" (names must be unique "
                      "per type)",
                      t->objects[i].type, t->objects[i].name),
             -1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Memo (rules_engine.h, "Memo"): what one rt.memo call of a key produced,
 * kept between translations of that key while nothing it read changed.
 *
 * Memory decides whether the memo can be on at 10k VirtualServices, so a
 * kept entry is one byte string, its pack, in its key's block (one
 * allocation for all of a key's packs, rebuilt when the key is translated),
 * plus 24 bytes in its key's array (sorted by subkey hash):
 *
 *   pack  = varint n_slots, n_slots x u16 (its reads' slots, below),
 *           varint n_objs, n_objs x u64 (checksums of the objects added),
 *           varint n_kids, n_kids x u64 (subkey hashes of the calls made
 *           inside this one: see "Nesting" below),
 *           LZ (util/lz.h) of the plain text
 *   plain = str subkey, str blob (canonical JSON {r = result}, built by
 *           rt.lua), varint n_objs, n_objs x (str type, str name, ostr
 *           tenant_ref), events (ev_encode: what the call did to the
 *           Output, in order), varint n_reads, n_reads x (ostr kind, ns,
 *           name, field, label, value)
 *   (str: varint length, bytes; ostr: varint length + 1, bytes; 0: NULL)
 *
 * The plain text (~1.3 KB for a VirtualService route) is compressed against
 * a dictionary per translation key, the plain text of the key's first
 * entry (at most MEMO_DICT_MAX bytes of it): a Gateway's entries differ
 * mostly in a few names, so a pack is ~100-250 bytes. Replay data stays
 * off the Lua heap (whose memory the rules' limits count).
 *
 * Invalidation needs no reverse index: every read maps to a slot, a hash
 * of the dependency entry deps.c would index for it (see read_slot) modulo
 * MEMO_SLOTS. A store change stamps the slots of everything it affects
 * (the object, its namespace's and kind's lists, the filtered lists on
 * its values before and after) with a new tick of the memo clock; an entry
 * made at tick T is valid while none of its slots is stamped above T. Two
 * reads sharing a slot can only make an entry run again needlessly (rare
 * with 65536 slots), never keep one that should go.
 *
 * Nesting: a memoized fn may itself call rt.memo (rules/destination.lua's
 * pool inside rules/gateway.lua's VirtualService rules). The inner call
 * is a call of its own (its entry, replayed or made, is one of the key's
 * items) and, for the enclosing calls, part of what they did: while
 * calls run, each has a frame (e->frames, outermost first), and every
 * read, whichever call makes it or replays it, goes to every open frame;
 * so do the inner calls' input slots and the slots of entries replayed
 * inside (a superset of their reads' slots). rt.lua's recorders see the
 * inner call's events either way: forwarded as they happen when it runs,
 * handed over by memo_get when it replays. An outer entry thus holds
 * exactly what running its fn with the inner calls inline would record,
 * and its replay is exact without its inner entries. It keeps them alive
 * though: each entry lists the subkey hashes of the calls made inside it
 * (at any depth), and its replay keeps those entries that are still valid
 * among the key's items, so that when the outer call runs next (a weight
 * change) its inner calls can replay. */

#define MEMO_SLOTS    65536u
#define MEMO_DICT_MAX 4096 /* bytes of a key's first plain text kept */
#define MEMO_SEP      "\x1f"

typedef struct {
  uint64_t hash; /* of the subkey */
  uint32_t tick; /* the memo clock when the call ran */
  uint32_t len;  /* bytes of its pack */
  uint32_t off;  /* where the pack starts in its key's block */
} memo_ent_t;

/* One translation key's entries. */
typedef struct memo_key {
  uint8_t *dict;  /* LZ dictionary of every pack here */
  uint8_t *block; /* the packs, one after the other */
  size_t dict_len;
  memo_ent_t *ents; /* sorted by hash */
  size_t n;
  uint8_t *taken; /* during a translation of the key: ents[i] was replayed */
  /* What a patch of the key's last translation needs ("Patches").
   * patch_tick 0: none. */
  uint32_t patch_tick;  /* the memo clock when it was made */
  uint64_t patch_gen;   /* the generation that made it */
  uint16_t *root_slots; /* its reads outside memoized calls (sorted) */
  size_t n_root_slots;
  uint8_t *calls; /* its top-level calls, as e->root_calls */
  size_t calls_len, n_calls;
  struct obj_at *adds; /* its objects: when each was added (sorted by h) */
  size_t n_adds;
  char *vals; /* the kept argument values, JSON (rt._root) */
  size_t vals_len;
} memo_key_t;

typedef struct {
  char *type, *name, *tenant_ref;
} memo_fobj_t;

/* An entry made by the translation in progress, packed at its end (when
 * the checksums of its objects are known). */
typedef struct memo_fresh {
  char *sub;
  char *blob;
  size_t blob_len;
  char *ev; /* its events, as in the plain text */
  size_t ev_len;
  memo_fobj_t *objs;
  size_t n_objs;
  amc_read_t *reads; /* the call's own */
  size_t n_reads;
  char *enc; /* and those of entries replayed inside it, encoded */
  size_t enc_len, n_enc;
  uint16_t *slots; /* of its root and inputs (not reads of the call) */
  size_t n_slots;
  uint64_t *kids; /* subkey hashes of the calls inside it */
  size_t n_kids;
  int inner;     /* made inside another call */
  uint64_t *cks; /* its objects' checksums (memo_finish takes them) */
} memo_fresh_t;

/* What the translation in progress replayed (fresh NULL: e.ent, a copy of
 * the key's entry) or made. */
typedef struct memo_item {
  memo_ent_t ent;
  memo_fresh_t *fresh;
  int packed; /* made now: its pack is in e->memo_packs */
} memo_item_t;

/* (defined with "Patches" and the translation, below) */
static int patch_present(amc_rules_engine_t *e, const char *type, size_t tl,
                         const char *name, size_t nl);
static void patch_state_set(amc_rules_engine_t *e, memo_key_t *k);
static void clear_output(amc_translation_t *t);
static amc_translation_t *translate(amc_rules_engine_t *e, const char *kind,
                                    const char *ns, const char *name,
                                    int replay);
static int run_protected(amc_rules_engine_t *e, gen_t *g, amc_translation_t *t,
                         lua_CFunction fn);
static void translation_end(amc_rules_engine_t *e, gen_t *g, int status);
static void push_rt(lua_State *L, gen_t *g);

typedef struct memo_path {
  char *kind, *path; /* "f:<dot path>" or "l:<label key>" */
} memo_path_t;

/* The slot of a dependency entry given as its parts, as deps.c spells
 * the entry: the parts joined by '\x1f' ("o", kind, ns, name for an
 * object; "n", kind, ns; "a", kind; "f", kind, ns, path, value and "F",
 * kind, path, value for filtered lists, path "f:<field>" or "l:<label>").
 * Hashed piecewise (FNV-1a 64): no string is built. */
typedef struct {
  uint64_t h;
} slot_hash_t;

static void sh_bytes(slot_hash_t *s, const char *p, size_t n) {
  s->h = amc_fnv64_update(s->h, p, n);
}

static void sh_part(slot_hash_t *s, const char *p, size_t n) {
  sh_bytes(s, MEMO_SEP, 1);
  sh_bytes(s, p, n);
}

static void sh_str(slot_hash_t *s, const char *p) {
  sh_part(s, p, strlen(p));
}

static slot_hash_t sh_start(char tag) {
  slot_hash_t s = {AMC_FNV64_INIT};
  sh_bytes(&s, &tag, 1);
  return s;
}

static uint16_t sh_slot(const slot_hash_t *s) {
  return (uint16_t)((s->h ^ (s->h >> 32)) & (MEMO_SLOTS - 1));
}

/* A filtered list's path part: "f:<field>" or "l:<label>". */
static void sh_path(slot_hash_t *s, const amc_read_t *r) {
  sh_str(s, r->field ? "f:" : "l:");
  const char *p = r->field ? r->field : r->label;
  sh_bytes(s, p, strlen(p));
}

static uint16_t read_slot(const amc_read_t *r) {
  slot_hash_t s;
  const char *ns = r->namespace_ ? r->namespace_ : "";
  if (!r->name && r->value && (r->field || r->label)) {
    s = sh_start(r->namespace_ ? 'f' : 'F');
    sh_str(&s, r->kind);
    if (r->namespace_)
      sh_str(&s, ns);
    sh_path(&s, r);
    sh_str(&s, r->value);
  } else if (r->name) {
    s = sh_start('o');
    sh_str(&s, r->kind);
    sh_str(&s, ns);
    sh_str(&s, r->name);
  } else if (r->namespace_) {
    s = sh_start('n');
    sh_str(&s, r->kind);
    sh_str(&s, ns);
  } else {
    s = sh_start('a');
    sh_str(&s, r->kind);
  }
  return sh_slot(&s);
}

static void read_free(amc_read_t *r) {
  free(r->kind);
  free(r->namespace_);
  free(r->name);
  free(r->field);
  free(r->label);
  free(r->value);
}

static void fresh_free(memo_fresh_t *f) {
  if (!f)
    return;
  free(f->sub);
  free(f->blob);
  free(f->ev);
  for (size_t i = 0; i < f->n_objs; i++) {
    free(f->objs[i].type);
    free(f->objs[i].name);
    free(f->objs[i].tenant_ref);
  }
  free(f->objs);
  for (size_t i = 0; i < f->n_reads; i++)
    read_free(&f->reads[i]);
  free(f->reads);
  free(f->enc);
  free(f->slots);
  free(f->kids);
  free(f->cks);
  free(f);
}

static void memo_key_free(void *p) {
  memo_key_t *k = p;
  if (!k)
    return;
  free(k->block);
  free(k->ents);
  free(k->taken);
  free(k->dict);
  free(k->root_slots);
  free(k->calls);
  free(k->adds);
  free(k->vals);
  free(k);
}

/* Closes the innermost open frame, dropping what it recorded (its arrays
 * stay, for the next frame at that depth). */
static void frame_pop(amc_rules_engine_t *e) {
  memo_frame_t *f = &e->frames[--e->n_frames];
  for (size_t i = 0; i < f->n_reads; i++)
    read_free(&f->reads[i]);
  f->n_reads = f->n_slots = f->n_kids = f->n_enc = f->n_inputs = 0;
  amc_buf_reset(&f->enc);
}

/* Closes every open frame (a translation starts or ends). */
static void frames_reset(amc_rules_engine_t *e) {
  while (e->n_frames)
    frame_pop(e);
}

/* Closes every open frame and frees the frames' arrays. */
static void frames_free(amc_rules_engine_t *e) {
  frames_reset(e);
  for (size_t i = 0; i < e->frames_cap; i++) {
    free(e->frames[i].reads);
    free(e->frames[i].slots);
    free(e->frames[i].kids);
    amc_buf_free(&e->frames[i].enc);
  }
  free(e->frames);
  e->frames = NULL;
  e->frames_cap = 0;
}

static void frame_add_slot(memo_frame_t *f, uint16_t slot) {
  slots_push(&f->slots, &f->n_slots, &f->slots_cap, slot);
}

static void frame_add_kid(memo_frame_t *f, uint64_t h) {
  AMC_GROW(f->kids, f->n_kids, f->kids_cap, 4);
  f->kids[f->n_kids++] = h;
}

/* -- byte strings ---------------------------------------------------------*/

static void put_uv(amc_buf_t *b, uint64_t v) {
  uint8_t t[10];
  size_t n = 0;
  do {
    t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  amc_buf_append(b, t, n);
}

static void put_str(amc_buf_t *b, const char *s, size_t n) {
  put_uv(b, n);
  amc_buf_append(b, s, n);
}

static void put_ostr(amc_buf_t *b, const char *s) {
  if (!s) {
    put_uv(b, 0);
    return;
  }
  size_t n = strlen(s);
  put_uv(b, n + 1);
  amc_buf_append(b, s, n);
}

/* A read as the plain text holds it: six ostr (kind, namespace, name,
 * field, label, value). */
static void put_read(amc_buf_t *b, const amc_read_t *r) {
  put_ostr(b, r->kind);
  put_ostr(b, r->namespace_);
  put_ostr(b, r->name);
  put_ostr(b, r->field);
  put_ostr(b, r->label);
  put_ostr(b, r->value);
}

typedef struct {
  const uint8_t *p, *end;
  int bad;
} cur_t;

static uint64_t get_uv(cur_t *c) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (c->p >= c->end)
      break;
    uint8_t b = *c->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return v;
  }
  c->bad = 1;
  return 0;
}

/* n bytes of the plain text (not NUL-terminated), or NULL and .bad. */
static const uint8_t *get_bytes(cur_t *c, size_t n) {
  if ((size_t)(c->end - c->p) < n) {
    c->bad = 1;
    return NULL;
  }
  const uint8_t *s = c->p;
  c->p += n;
  return s;
}

/* Views of one entry: slots and checksums from the pack, the plain text
 * decompressed into `plain`. */
typedef struct {
  size_t n_slots;
  const uint8_t *slots; /* n_slots x u16 little-endian */
  size_t n_cks;
  const uint8_t *cks; /* n_cks x u64 little-endian */
  size_t n_kids;
  const uint8_t *kids; /* n_kids x u64 little-endian */
  const uint8_t *lz;
  size_t lz_len;
} pack_view_t;

static int pack_view(const memo_key_t *k, const memo_ent_t *m, pack_view_t *v) {
  const uint8_t *p = k->block + m->off;
  cur_t c = {p, p + m->len, 0};
  v->n_slots = get_uv(&c);
  v->slots = get_bytes(&c, v->n_slots * 2);
  v->n_cks = get_uv(&c);
  v->cks = get_bytes(&c, v->n_cks * 8);
  v->n_kids = get_uv(&c);
  v->kids = get_bytes(&c, v->n_kids * 8);
  v->lz = c.p;
  v->lz_len = (size_t)(c.end - c.p);
  return c.bad ? -1 : 0;
}

static uint16_t get_u16(const uint8_t *p, size_t i) {
  return (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
}

static uint64_t get_u64(const uint8_t *p, size_t i) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; k--)
    v = (v << 8) | p[8 * i + (size_t)k];
  return v;
}

static void put_u64(amc_buf_t *b, uint64_t v) {
  uint8_t t[8];
  for (int k = 0; k < 8; k++)
    t[k] = (uint8_t)(v >> (8 * k));
  amc_buf_append(b, t, 8);
}

/* Is every slot the entry read still unstamped since it was made? */
static int ent_valid(const amc_rules_engine_t *e, const memo_ent_t *m,
                     const pack_view_t *v) {
  for (size_t i = 0; i < v->n_slots; i++)
    if (e->memo_ticks[get_u16(v->slots, i)] > m->tick)
      return 0;
  return 1;
}

static size_t ent_find(const memo_key_t *k, uint64_t h) {
  size_t lo = 0, hi = k ? k->n : 0;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (k->ents[mid].hash < h)
      lo = mid + 1;
    else
      hi = mid;
  }
  return k && lo < k->n && k->ents[lo].hash == h ? lo : SIZE_MAX;
}

static void items_push(amc_rules_engine_t *e, memo_item_t it) {
  AMC_GROW(e->memo_items, e->memo_items_n, e->memo_items_cap, 16);
  e->memo_items[e->memo_items_n++] = it;
}

/* Decompresses entry i of the translation's key into e->memo_plain and
 * checks it is `sub`'s. Returns a cursor after the subkey, or .bad. */
static cur_t plain_of(amc_rules_engine_t *e, size_t i, const char *sub,
                      size_t sub_len, pack_view_t *v) {
  cur_t c = {NULL, NULL, 1};
  memo_key_t *k = e->memo_cur;
  if (pack_view(k, &k->ents[i], v) != 0)
    return c;
  amc_buf_reset(&e->memo_plain);
  if (amc_lz_decompress(k->dict, k->dict_len, v->lz, v->lz_len,
                        &e->memo_plain) != 0)
    return c;
  c = (cur_t){(const uint8_t *)e->memo_plain.data,
              (const uint8_t *)e->memo_plain.data + e->memo_plain.len, 0};
  size_t n = get_uv(&c);
  const uint8_t *s = get_bytes(&c, n);
  if (c.bad || n != sub_len || memcmp(s, sub, n) != 0)
    c.bad = 1; /* another subkey with the same hash: not this one */
  return c;
}

/* A byte string of the plain text (not NUL-terminated). */
typedef struct {
  const char *p;
  size_t n;
} span_t;

static span_t get_span(cur_t *c) {
  size_t n = get_uv(c);
  const uint8_t *s = get_bytes(c, n);
  return (span_t){(const char *)s, c->bad ? 0 : n};
}

static int span_eq(span_t a, span_t b) {
  return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

/* One object an entry added (plain text: str type, str name, ostr
 * tenant_ref). */
typedef struct {
  span_t type, name, tenant_ref; /* tenant_ref.p NULL: none */
} memo_obj_t;

/* Is out:get(type, name) non-nil? `by_name` is the Output's _by_name
 * (type -> name -> object, plain tables: what Output:get reads). The name
 * is at stack index `name_at`, or (0) pushed from `name`. */
static int out_has(lua_State *L, int by_name, span_t type, span_t name,
                   int name_at) {
  int has = 0;
  lua_pushlstring(L, type.p, type.n);
  if (lua_rawget(L, by_name) == LUA_TTABLE) {
    if (name_at)
      lua_pushvalue(L, name_at);
    else
      lua_pushlstring(L, name.p, name.n);
    has = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  amc_rules_engine_t *e = GEN(L)->eng;
  if (!has && e->patching) /* added before the call, as the patch stands for */
    has = patch_present(e, type.p, type.n, name.p, name.n);
  return has;
}

/* Did the entry's objects before the k-th add (type, name)? */
static int added_before(const memo_obj_t *objs, size_t k, span_t type,
                        span_t name) {
  for (size_t j = 0; j < k; j++)
    if (span_eq(objs[j].name, name) && span_eq(objs[j].type, type))
      return 1;
  return 0;
}

/* Output:_add_unchanged(type, name, cksum, tenant_ref) in C: the object
 * (only its name) goes to _by_name and, with the checksum of the body the
 * call produced, to _objects (the host hands it over unchanged). */
static void out_add_unchanged(lua_State *L, int by_name, int objects,
                              const memo_obj_t *o, int name_at, uint64_t ck) {
  lua_pushlstring(L, o->type.p, o->type.n);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, by_name) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, by_name);
  }
  lua_createtable(L, 0, 1); /* the object */
  lua_pushvalue(L, name_at);
  lua_setfield(L, -2, "name");
  lua_pushvalue(L, name_at);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, -4);
  lua_setfield(L, -2, "type");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "object");
  char h[16]; /* as amc_object_cksum: 16 lowercase hex digits */
  for (int q = 15; q >= 0; q--, ck >>= 4)
    h[q] = "0123456789abcdef"[ck & 15];
  lua_pushlstring(L, h, sizeof h);
  lua_setfield(L, -2, "unchanged");
  if (o->tenant_ref.p) {
    lua_pushlstring(L, o->tenant_ref.p, o->tenant_ref.n);
    lua_setfield(L, -2, "tenant_ref");
  }
  lua_rawseti(L, objects, (lua_Integer)lua_rawlen(L, objects) + 1);
  lua_pop(L, 3);
}

/* Records the reads of an entry (at `c`) as this translation's; the open
 * frames take them as they are in the plain text (not decoded: packing
 * copies them; their slots come with the entry's, frames_note_replay). */
static int replay_reads(amc_rules_engine_t *e, cur_t c) {
  amc_translation_t *t = e->cur_t;
  size_t n = get_uv(&c);
  const uint8_t *start = c.p;
  for (size_t j = 0; j < n && !c.bad; j++) {
    /* six optional strings, copied NUL-terminated into a scratch buffer */
    const char *f[6];
    amc_buf_reset(&e->memo_scratch);
    size_t off[6];
    for (int q = 0; q < 6; q++) {
      size_t l = get_uv(&c);
      const uint8_t *s = l ? get_bytes(&c, l - 1) : NULL;
      off[q] = SIZE_MAX;
      if (s) {
        off[q] = e->memo_scratch.len;
        amc_buf_append(&e->memo_scratch, s, l - 1);
        amc_buf_putc(&e->memo_scratch, '\0');
      }
    }
    if (c.bad)
      break;
    for (int q = 0; q < 6; q++)
      f[q] = off[q] == SIZE_MAX ? NULL : e->memo_scratch.data + off[q];
    reads_append(&t->reads, &t->n_reads, &e->reads_cap, f[0], f[1], f[2], f[3],
                 f[4], f[5]);
  }
  if (c.bad)
    return -1;
  for (size_t i = 0; i < e->n_frames; i++) {
    amc_buf_append(&e->frames[i].enc, start, (size_t)(c.p - start));
    e->frames[i].n_enc += n;
  }
  return 0;
}

/* Would the entry's events (at `c`) happen the same way now? Every out:get
 * must give the same answer and no add may hit a name already taken.
 * The objects' names are on the stack from index `names` on. Returns 1
 * or 0, -1 if the events are corrupt; `c` ends after them. */
static int replayable(lua_State *L, int by_name, cur_t *c,
                      const memo_obj_t *objs, size_t n_objs, int names) {
  size_t n = get_uv(c), k = 0;
  int ok = 1;
  for (size_t j = 0; j < n && !c->bad; j++) {
    const uint8_t *tag = get_bytes(c, 1);
    if (!tag)
      break;
    if (*tag == 'g') {
      span_t type = get_span(c), name = get_span(c);
      const uint8_t *was = get_bytes(c, 1);
      if (c->bad)
        break;
      int now = added_before(objs, k, type, name) ||
                out_has(L, by_name, type, name, 0);
      if (ok && now != (*was != 0))
        ok = 0;
    } else if (*tag == 'a') {
      if (k >= n_objs)
        ok = 0;
      else if (ok && (added_before(objs, k, objs[k].type, objs[k].name) ||
                      out_has(L, by_name, objs[k].type, objs[k].name,
                              names + (int)k)))
        ok = 0;
      k++;
    } else if (*tag == 'd') {
      for (int q = 0; q < 6; q++) { /* six ostr: replayed after the check */
        size_t l = get_uv(c);
        if (l)
          get_bytes(c, l - 1);
      }
    } else {
      c->bad = 1;
    }
  }
  return c->bad ? -1 : ok;
}

/* Keeps the entries of the calls made inside a replayed entry (its kids:
 * subkey hashes in `v`) among the key's items, those still valid and not
 * taken yet (marked 2: kept, not replayed; a call may still replay them).
 * Replaying the outer entry does not need them; running it again later
 * (after a change to it alone) does. */
static void keep_kids(amc_rules_engine_t *e, const pack_view_t *v) {
  memo_key_t *k = e->memo_cur;
  for (size_t j = 0; j < v->n_kids; j++) {
    size_t i = ent_find(k, get_u64(v->kids, j));
    pack_view_t kv;
    if (i == SIZE_MAX || k->taken[i] || pack_view(k, &k->ents[i], &kv) != 0 ||
        !ent_valid(e, &k->ents[i], &kv))
      continue;
    k->taken[i] = 2;
    items_push(e, (memo_item_t){k->ents[i], NULL, 0});
  }
}

/* A replay inside running calls: what the entry depends on (its slots, a
 * superset of its reads', which replay_reads records to the frames), its
 * subkey and its kids go to every open frame. */
static void frames_note_replay(amc_rules_engine_t *e, const memo_ent_t *m,
                               const pack_view_t *v) {
  for (size_t f = 0; f < e->n_frames; f++) {
    memo_frame_t *fr = &e->frames[f];
    for (size_t j = 0; j < v->n_slots; j++)
      frame_add_slot(fr, get_u16(v->slots, j));
    frame_add_kid(fr, m->hash);
    for (size_t j = 0; j < v->n_kids; j++)
      frame_add_kid(fr, get_u64(v->kids, j));
  }
}

/* host.memo_get(subkey, by_name, objects, nested): replays the key's entry
 * for subkey if it is valid and replayable into the Output whose _by_name
 * and _objects these are: its objects are added (unchanged), its reads
 * become this translation's (and the open frames'). Returns true, the
 * call's result and its diagnostics ({severity, kind, ns, name, field,
 * message} each, nil if none) for Output:_diag, and when `nested` (the call
 * is made inside running calls, whose recorders must see what it did) its
 * events and objects as rt.lua's recorder keeps them; or false (the call
 * must run). */
static int host_memo_get(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  size_t sub_len;
  const char *sub = luaL_checklstring(L, 1, &sub_len);
  int nested = lua_toboolean(L, 4);
  lua_settop(L, 4);
  /* (inside running calls, only when their recorders get the events:
   * otherwise their entries would miss what this replay did) */
  size_t i = e->memo_replay && lua_istable(L, 2) && lua_istable(L, 3) &&
                     (nested || !e->n_frames)
                 ? ent_find(e->memo_cur, amc_fnv64(sub, sub_len))
                 : SIZE_MAX;
  /* (replayed once per translation; kept by an outer replay: still free) */
  if (i == SIZE_MAX || e->memo_cur->taken[i] == 1) {
    lua_pushboolean(L, 0);
    return 1;
  }
  memo_key_t *k = e->memo_cur;
  memo_ent_t *m = &k->ents[i];
  pack_view_t v;
  if (pack_view(k, m, &v) != 0 || !ent_valid(e, m, &v)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  cur_t c = plain_of(e, i, sub, sub_len, &v);
  span_t blob = get_span(&c);
  if (c.bad) {
    lua_pushboolean(L, 0);
    return 1;
  }
  size_t n_objs = get_uv(&c);
  if (c.bad || n_objs != v.n_cks)
    return luaL_error(L, "rt.memo: corrupt entry %s", sub);
  memo_obj_t *objs = n_objs ? lua_newuserdatauv(L, n_objs * sizeof *objs, 0)
                            : NULL; /* (freed by the GC) */
  for (size_t j = 0; j < n_objs; j++) {
    objs[j].type = get_span(&c);
    objs[j].name = get_span(&c);
    size_t rl = get_uv(&c);
    const uint8_t *tr = rl ? get_bytes(&c, rl - 1) : NULL;
    objs[j].tenant_ref = (span_t){(const char *)tr, tr ? rl - 1 : 0};
  }
  if (c.bad)
    return luaL_error(L, "rt.memo: corrupt entry %s", sub);
  /* the names once: a long string's hash is computed once per string */
  luaL_checkstack(L, (int)n_objs + 20, "rt.memo: entry");
  int names = lua_gettop(L) + 1;
  for (size_t j = 0; j < n_objs; j++)
    lua_pushlstring(L, objs[j].name.p, objs[j].name.n);
  cur_t events = c;
  int ok = replayable(L, 2, &c, objs, n_objs, names);
  if (ok < 0)
    return luaL_error(L, "rt.memo: corrupt entry %s", sub);
  if (!ok) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int first = lua_gettop(L) + 1; /* the values returned */
  lua_pushboolean(L, 1);
  char err[200];
  if (amc_json_decode_canonical(L, blob.p, blob.n, err, sizeof err) != 0 ||
      !lua_istable(L, -1))
    return luaL_error(L, "rt.memo: corrupt entry %s", sub);
  lua_getfield(L, -1, "r");
  lua_remove(L, -2);
  int diags = lua_gettop(L) + 1;
  lua_pushnil(L);
  int evs = 0, eobjs = 0; /* nested: the events and objects for rt.lua */
  if (nested) {
    lua_createtable(L, 0, 0);
    evs = lua_gettop(L);
    lua_createtable(L, (int)n_objs, 0);
    eobjs = lua_gettop(L);
  }
  if (replay_reads(e, c) != 0)
    return luaL_error(L, "rt.memo: corrupt entry %s", sub);
  if (!k->taken[i])
    items_push(e, (memo_item_t){*m, NULL, 0});
  k->taken[i] = 1;
  e->memo_hits++;
  frames_note_replay(e, m, &v);
  keep_kids(e, &v);
  /* the events again, now doing them */
  size_t n = get_uv(&events), kk = 0, nd = 0;
  for (size_t j = 0; j < n; j++) {
    const uint8_t *tag = get_bytes(&events, 1);
    if (*tag == 'g') {
      span_t type = get_span(&events), name = get_span(&events);
      const uint8_t *was = get_bytes(&events, 1);
      if (evs) { /* {"g", type, name, found} */
        lua_createtable(L, 4, 0);
        lua_pushliteral(L, "g");
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, type.p, type.n);
        lua_rawseti(L, -2, 2);
        lua_pushlstring(L, name.p, name.n);
        lua_rawseti(L, -2, 3);
        lua_pushboolean(L, *was != 0);
        lua_rawseti(L, -2, 4);
        lua_rawseti(L, evs, (lua_Integer)j + 1);
      }
    } else if (*tag == 'a') {
      out_add_unchanged(L, 2, 3, &objs[kk], names + (int)kk,
                        get_u64(v.cks, kk));
      if (evs) { /* {"a"}, and the object {type, name, tenant_ref} */
        lua_createtable(L, 1, 0);
        lua_pushliteral(L, "a");
        lua_rawseti(L, -2, 1);
        lua_rawseti(L, evs, (lua_Integer)j + 1);
        lua_createtable(L, 3, 0);
        lua_pushlstring(L, objs[kk].type.p, objs[kk].type.n);
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, names + (int)kk);
        lua_rawseti(L, -2, 2);
        if (objs[kk].tenant_ref.p) {
          lua_pushlstring(L, objs[kk].tenant_ref.p, objs[kk].tenant_ref.n);
          lua_rawseti(L, -2, 3);
        }
        lua_rawseti(L, eobjs, (lua_Integer)kk + 1);
      }
      kk++;
    } else { /* 'd' */
      if (!nd) {
        lua_createtable(L, 1, 0);
        lua_replace(L, diags);
      }
      lua_createtable(L, 6, 0);
      for (int q = 0; q < 6; q++) {
        size_t l = get_uv(&events);
        const uint8_t *s = l ? get_bytes(&events, l - 1) : NULL;
        if (!s)
          continue;
        lua_pushlstring(L, (const char *)s, l - 1);
        lua_rawseti(L, -2, q + 1);
      }
      if (evs) { /* {"d", severity, kind, ns, name, field, message} */
        lua_createtable(L, 7, 0);
        lua_pushliteral(L, "d");
        lua_rawseti(L, -2, 1);
        for (int q = 1; q <= 6; q++) {
          lua_rawgeti(L, -2, q);
          lua_rawseti(L, -2, q + 1);
        }
        lua_rawseti(L, evs, (lua_Integer)j + 1);
      }
      lua_rawseti(L, diags, (lua_Integer)++nd);
    }
  }
  return lua_gettop(L) - first + 1;
}

/* Adds the slot of the object (kind, ns, name) to the innermost frame and,
 * when `all`, to the enclosing ones too. */
static void frame_slot(amc_rules_engine_t *e, const char *kind, const char *ns,
                       const char *name, int all) {
  amc_read_t r = {(char *)kind, (char *)ns, (char *)name, NULL, NULL, NULL};
  uint16_t slot = read_slot(&r);
  for (size_t f = all ? 0 : e->n_frames - 1; f < e->n_frames; f++)
    frame_add_slot(&e->frames[f], slot);
}

/* host.memo_begin(subkey, kind, ns, name, ...): the call runs now; the
 * objects named (besides the root object) are inputs it depends on.
 * Returns its depth (1: outermost), for memo_end. */
static int host_memo_begin(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  luaL_checkstring(L, 1);
  if (e->n_frames == e->frames_cap) {
    size_t nc = e->frames_cap ? e->frames_cap * 2 : 4;
    memo_frame_t *v = realloc(e->frames, nc * sizeof *v);
    if (!v)
      abort();
    memset(v + e->frames_cap, 0, (nc - e->frames_cap) * sizeof *v);
    e->frames = v;
    e->frames_cap = nc;
  }
  e->n_frames++; /* (its counts are 0: see frame_pop) */
  e->memo_misses++;
  /* The root and the inputs: the entry depends on them, but they are no
   * read of the call (the translation read them itself: the root, and the
   * inputs through a list), so they go to its slots only. An enclosing
   * call depends on the inputs too (it has the root already). */
  const amc_store_obj_t *o = e->cur_obj;
  frame_slot(e, o->kind, o->namespace_, o->name, 0);
  int n = lua_gettop(L);
  for (int i = 2; i + 2 <= n; i += 3) {
    const char *kind = luaL_checkstring(L, i);
    const char *ns = opt_string(L, i + 1, "rt.memo: namespace");
    const char *name = luaL_checkstring(L, i + 2);
    frame_slot(e, kind, ns, name, 1);
    memo_frame_t *f = &e->frames[e->n_frames - 1];
    if (f->n_inputs < sizeof f->inputs / sizeof f->inputs[0])
      f->inputs[f->n_inputs++] = input_hash(kind, ns, name);
  }
  lua_pushinteger(L, (lua_Integer)e->n_frames);
  return 1;
}

static char *opt_dup(lua_State *L, int i) {
  return lua_type(L, i) == LUA_TSTRING ? xstrdup(lua_tostring(L, i)) : NULL;
}

/* The events of a call (rt.lua's recorder: {"g", type, name, found},
 * {"a"} or {"d", severity, kind, ns, name, field, message} each) in the
 * plain text's form: varint n, then per event its tag byte and 'g': str
 * type, str name, byte found; 'a': nothing; 'd': six ostr. Returns 0, or
 * -1 if a part is not a string (such a call is not kept). */
static int ev_encode(lua_State *L, int idx, amc_buf_t *b) {
  size_t n = lua_rawlen(L, idx);
  put_uv(b, n);
  for (size_t i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, (lua_Integer)i) != LUA_TTABLE) {
      lua_pop(L, 1);
      return -1;
    }
    if (lua_rawgeti(L, -1, 1) != LUA_TSTRING) {
      lua_pop(L, 2);
      return -1;
    }
    char tag = lua_tostring(L, -1)[0];
    lua_pop(L, 1);
    int ok = 1;
    amc_buf_putc(b, tag);
    if (tag == 'g') {
      for (int q = 2; q <= 3 && ok; q++) {
        size_t l;
        ok = lua_rawgeti(L, -1, q) == LUA_TSTRING;
        const char *s = ok ? lua_tolstring(L, -1, &l) : NULL;
        if (ok)
          put_str(b, s, l);
        lua_pop(L, 1);
      }
      lua_rawgeti(L, -1, 4);
      amc_buf_putc(b, lua_toboolean(L, -1) ? 1 : 0);
      lua_pop(L, 1);
    } else if (tag == 'd') {
      for (int q = 2; q <= 7 && ok; q++) {
        int t = lua_rawgeti(L, -1, q);
        ok = t == LUA_TSTRING || (t == LUA_TNIL && q == 7);
        if (ok)
          put_ostr(b, t == LUA_TNIL ? NULL : lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    } else if (tag != 'a') {
      ok = 0;
    }
    lua_pop(L, 1);
    if (!ok)
      return -1;
  }
  return 0;
}

/* Closes the innermost frame (its call has ended); the enclosing frames
 * get the subkey hashes below it, and its own (`h`) when it is kept. */
static void frame_end(amc_rules_engine_t *e, uint64_t h, int kept) {
  memo_frame_t *fr = &e->frames[e->n_frames - 1];
  for (size_t f = 0; f + 1 < e->n_frames; f++) {
    if (kept)
      frame_add_kid(&e->frames[f], h);
    for (size_t j = 0; j < fr->n_kids; j++)
      frame_add_kid(&e->frames[f], fr->kids[j]);
  }
  frame_pop(e);
}

/* host.memo_end(subkey, data, events, objs, depth): keeps the call's
 * replay data (a table, encoded canonically), its events (ev_encode), the
 * objects it added ({type, name, tenant_ref} each) and its reads; packed
 * by memo_finish. `depth` is memo_begin's: frames left open above it are
 * calls inside this one that raised an error fn caught (not kept). */
static int host_memo_end(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  const char *sub = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_Integer depth = luaL_checkinteger(L, 5);
  lua_settop(L, 5);
  if (depth < 1 || (lua_Unsigned)depth > e->n_frames)
    return luaL_error(L, "rt.memo: memo_end without memo_begin");
  while (e->n_frames > (size_t)depth)
    frame_end(e, 0, 0);
  uint64_t h = amc_fnv64(sub, strlen(sub));
  amc_buf_t b = AMC_BUF_INIT, ev = AMC_BUF_INIT;
  char err[300];
  if (amc_json_encode(L, 2, &b, err, sizeof err) < 0) {
    amc_buf_free(&b);
    return luaL_error(L, "rt.memo: result of %s is not JSON: %s", sub, err);
  }
  if (ev_encode(L, 3, &ev) != 0) { /* not kept: the call runs next time */
    amc_buf_free(&b);
    amc_buf_free(&ev);
    frame_end(e, h, 0);
    return 0;
  }
  size_t n = lua_rawlen(L, 4);
  for (size_t i = 0; i < n; i++) { /* check before allocating */
    lua_rawgeti(L, 4, (lua_Integer)i + 1);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (lua_type(L, -1) != LUA_TSTRING || lua_type(L, -2) != LUA_TSTRING) {
      amc_buf_free(&b);
      amc_buf_free(&ev);
      return luaL_error(L, "rt.memo: objects of %s need a type and a name",
                        sub);
    }
    lua_pop(L, 3);
  }
  memo_fresh_t *f = calloc(1, sizeof *f);
  if (!f)
    abort();
  f->sub = xstrdup(sub);
  f->blob_len = b.len;
  f->blob = amc_buf_steal(&b);
  f->ev_len = ev.len;
  f->ev = amc_buf_steal(&ev);
  f->objs = calloc(n ? n : 1, sizeof *f->objs);
  if (!f->objs)
    abort();
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 4, (lua_Integer)i + 1);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_rawgeti(L, -3, 3);
    memo_fobj_t *mo = &f->objs[f->n_objs++];
    mo->type = xstrdup(lua_tostring(L, -3));
    mo->name = xstrdup(lua_tostring(L, -2));
    mo->tenant_ref = opt_dup(L, -1);
    lua_pop(L, 4);
  }
  memo_frame_t *fr = &e->frames[e->n_frames - 1];
  f->reads = fr->reads; /* taken over */
  f->n_reads = fr->n_reads;
  fr->reads = NULL;
  fr->n_reads = fr->reads_cap = 0;
  f->enc_len = fr->enc.len;
  f->n_enc = fr->n_enc;
  f->enc = fr->n_enc ? amc_buf_steal(&fr->enc) : NULL;
  f->slots = malloc((fr->n_slots ? fr->n_slots : 1) * sizeof *f->slots);
  f->kids = malloc((fr->n_kids ? fr->n_kids : 1) * sizeof *f->kids);
  if (!f->slots || !f->kids)
    abort();
  if (fr->n_slots)
    memcpy(f->slots, fr->slots, fr->n_slots * sizeof *f->slots);
  f->n_slots = fr->n_slots;
  if (fr->n_kids)
    memcpy(f->kids, fr->kids, fr->n_kids * sizeof *f->kids);
  f->n_kids = fr->n_kids;
  f->inner = e->n_frames > 1;
  frame_end(e, h, 1);
  items_push(e, (memo_item_t){{h, e->memo_now, 0, 0}, f, 0});
  return 0;
}

/* host.inputs_begin(kind, ns, name, ...) (no memo): an rt.memo call with
 * these inputs runs; returns its depth for inputs_end. Calls nested
 * deeper than 8 keep their reads (only more reads are recorded). */
static int host_inputs_begin(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  size_t d = e->n_plain++;
  if (d < 8) {
    e->plain_n[d] = 0;
    int n = lua_gettop(L);
    for (int i = 1; i + 2 <= n && e->plain_n[d] < 4; i += 3)
      e->plain_inputs[d][e->plain_n[d]++] =
          input_hash(luaL_checkstring(L, i), opt_string(L, i + 1, "ns"),
                     luaL_checkstring(L, i + 2));
  }
  lua_pushinteger(L, (lua_Integer)e->n_plain);
  return 1;
}

/* host.inputs_end(depth): that call (and any an error left open inside
 * it) has ended. */
static int host_inputs_end(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  lua_Integer d = luaL_checkinteger(L, 1);
  if (d >= 1 && (size_t)d <= e->n_plain)
    e->n_plain = (size_t)d - 1;
  return 0;
}

static const luaL_Reg plain_host_fns[] = {{"inputs_begin", host_inputs_begin},
                                          {"inputs_end", host_inputs_end},
                                          {NULL, NULL}};

static const luaL_Reg memo_host_fns[] = {{"memo_get", host_memo_get},
                                         {"memo_begin", host_memo_begin},
                                         {"memo_end", host_memo_end},
                                         {NULL, NULL}};

static int host_memo_root(lua_State *L);
static int host_memo_input(lua_State *L);
static int host_memo_present(lua_State *L);
static int host_memo_patch_at(lua_State *L);
static const luaL_Reg patch_host_fns[] = {{"memo_root", host_memo_root},
                                          {"memo_input", host_memo_input},
                                          {"memo_present", host_memo_present},
                                          {"memo_patch_at", host_memo_patch_at},
                                          {NULL, NULL}};

/* Translation start: the key's entries are the ones to replay. */
static void memo_start(amc_rules_engine_t *e, const char *key, int replay) {
  frames_reset(e);
  e->n_plain = 0;
  e->memo_replay = replay;
  e->memo_items_n = 0;
  e->n_root_slots = 0;
  amc_buf_reset(&e->root_calls);
  e->n_root_calls = 0;
  e->n_adds = 0;
  e->root_ok = e->memo_on && e->patch_on && e->active &&
               e->active->ref_patch_context != LUA_NOREF;
  if (e->root_ok) { /* the Gateway itself */
    const amc_store_obj_t *o = e->cur_obj;
    amc_read_t r = {(char *)o->kind,
                    (char *)o->namespace_,
                    (char *)o->name,
                    NULL,
                    NULL,
                    NULL};
    root_slot_add(e, read_slot(&r));
  }
  e->memo_cur = e->memo_on ? amc_strmap_get(&e->memo, key) : NULL;
  if (e->memo_cur) {
    free(e->memo_cur->taken);
    e->memo_cur->taken = calloc(e->memo_cur->n ? e->memo_cur->n : 1, 1);
    if (!e->memo_cur->taken)
      abort();
  }
}

static const amc_avi_object_t *find_object(const amc_translation_t *t,
                                           const char *type, const char *name) {
  size_t lo = 0, hi = t->n_objects;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const amc_avi_object_t *o = &t->objects[mid];
    int c = strcmp(o->type, type);
    if (!c)
      c = strcmp(o->name, name);
    if (!c)
      return o;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* Remembers that `r` (a filtered list) filters its kind on its path, so
 * that changes to that kind stamp the lists on their values there. */
static void note_path(amc_rules_engine_t *e, const amc_read_t *r) {
  amc_buf_t p = AMC_BUF_INIT;
  amc_buf_printf(&p, "%s:%s", r->field ? "f" : "l",
                 r->field ? r->field : r->label);
  for (size_t i = 0; i < e->memo_n_paths; i++) {
    if (strcmp(e->memo_paths[i].kind, r->kind) == 0 &&
        strcmp(e->memo_paths[i].path, p.data) == 0) {
      amc_buf_free(&p);
      return;
    }
  }
  memo_path_t *v =
      realloc(e->memo_paths, (e->memo_n_paths + 1) * sizeof *e->memo_paths);
  if (!v)
    abort();
  e->memo_paths = v;
  v[e->memo_n_paths++] = (memo_path_t){xstrdup(r->kind), amc_buf_steal(&p)};
}

static int u16_cmp(const void *a, const void *b) {
  return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static int u64_cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Takes the checksums of a fresh entry's objects from `t`. Returns 0, or
 * -1 when one of its objects is not in t (the entry is dropped). */
static int fresh_cksums(memo_fresh_t *f, const amc_translation_t *t) {
  f->cks = calloc(f->n_objs ? f->n_objs : 1, sizeof *f->cks);
  if (!f->cks)
    abort();
  for (size_t i = 0; i < f->n_objs; i++) {
    const amc_avi_object_t *o =
        find_object(t, f->objs[i].type, f->objs[i].name);
    if (!o || !o->cksum[0])
      return -1;
    f->cks[i] = strtoull(o->cksum, NULL, 16);
  }
  return 0;
}

/* Packs a fresh entry (see the top of this section) for key `k` into
 * e->memo_packs. The key's first pack makes its dictionary. */
static void fresh_pack(amc_rules_engine_t *e, memo_key_t *k, memo_item_t *it) {
  memo_fresh_t *f = it->fresh;
  amc_buf_t *b = &e->memo_plain, *d = &e->memo_scratch;
  uint16_t *slots = calloc(f->n_reads + f->n_slots + 1, sizeof *slots);
  if (!slots)
    abort();
  amc_buf_reset(b);
  put_str(b, f->sub, strlen(f->sub));
  put_str(b, f->blob, f->blob_len);
  put_uv(b, f->n_objs);
  for (size_t i = 0; i < f->n_objs; i++) {
    put_str(b, f->objs[i].type, strlen(f->objs[i].type));
    put_str(b, f->objs[i].name, strlen(f->objs[i].name));
    put_ostr(b, f->objs[i].tenant_ref);
  }
  amc_buf_append(b, f->ev, f->ev_len);
  put_uv(b, f->n_reads + f->n_enc);
  size_t n_slots = f->n_slots;
  memcpy(slots, f->slots, f->n_slots * sizeof *slots);
  for (size_t i = 0; i < f->n_reads; i++) {
    const amc_read_t *r = &f->reads[i];
    put_read(b, r);
    if (!r->name && r->value && (r->field || r->label))
      note_path(e, r);
    slots[n_slots++] = read_slot(r);
  }
  if (f->enc_len)
    amc_buf_append(b, f->enc, f->enc_len);
  qsort(slots, n_slots, sizeof *slots, u16_cmp);
  size_t u = 0;
  for (size_t i = 0; i < n_slots; i++)
    if (!u || slots[u - 1] != slots[i])
      slots[u++] = slots[i];
  if (!k->dict) {
    /* capped: compressing costs a pass over the dictionary */
    k->dict_len = b->len < MEMO_DICT_MAX ? b->len : MEMO_DICT_MAX;
    k->dict = malloc(k->dict_len ? k->dict_len : 1);
    if (!k->dict)
      abort();
    memcpy(k->dict, b->data, k->dict_len);
  }
  amc_buf_reset(d);
  put_uv(d, u);
  for (size_t i = 0; i < u; i++) {
    uint8_t s[2] = {(uint8_t)slots[i], (uint8_t)(slots[i] >> 8)};
    amc_buf_append(d, s, 2);
  }
  put_uv(d, f->n_objs);
  for (size_t i = 0; i < f->n_objs; i++)
    put_u64(d, f->cks[i]);
  if (f->n_kids > 1) /* each once */
    qsort(f->kids, f->n_kids, sizeof *f->kids, u64_cmp);
  size_t nk = 0;
  for (size_t i = 0; i < f->n_kids; i++)
    if (!nk || f->kids[nk - 1] != f->kids[i])
      f->kids[nk++] = f->kids[i];
  put_uv(d, nk);
  for (size_t i = 0; i < nk; i++)
    put_u64(d, f->kids[i]);
  amc_lz_compress(k->dict, k->dict_len, b->data, b->len, d);
  free(slots);
  fresh_free(f);
  it->fresh = NULL;
  /* into memo_packs until the key's new block is made */
  it->ent.len = (uint32_t)d->len;
  it->ent.off = (uint32_t)e->memo_packs.len;
  it->packed = 1;
  amc_buf_append(&e->memo_packs, d->data, d->len);
}

static int item_cmp(const void *a, const void *b) {
  const memo_item_t *x = a, *y = b;
  if (x->ent.hash != y->ent.hash)
    return x->ent.hash < y->ent.hash ? -1 : 1;
  /* same subkey twice: the later one (made later, or fresh) first */
  if (x->ent.tick != y->ent.tick)
    return x->ent.tick > y->ent.tick ? -1 : 1;
  return y->packed - x->packed;
}

/* Translation end: on success the key's entries become exactly those this
 * translation used or made (packed later, by memo_settle: packing is not
 * needed for the translation's result, so it waits until the result has
 * gone out); on failure the old ones stay. */
static void memo_finish(amc_rules_engine_t *e, amc_translation_t *t) {
  frames_free(e);
  memo_key_t *k = e->memo_cur;
  e->memo_cur = NULL;
  if (k && e->patching && !t->error) {
    /* a patch: the entries it did not touch stay the key's */
    for (size_t i = 0; i < k->n; i++)
      if (!k->taken[i])
        items_push(e, (memo_item_t){k->ents[i], NULL, 0});
  }
  if (k) {
    free(k->taken);
    k->taken = NULL;
  }
  if (t->error) {
    for (size_t i = 0; i < e->memo_items_n; i++)
      fresh_free(e->memo_items[i].fresh); /* replayed ones stay k's */
    e->memo_items_n = 0;
    return;
  }
  if (!k && e->memo_items_n) {
    k = calloc(1, sizeof *k);
    if (!k)
      abort();
    amc_strmap_put(&e->memo, t->key, k, NULL);
  }
  if (!k)
    return;
  if (!e->patching) /* (a patch leaves the key's patch state as it is) */
    patch_state_set(e, k);
  size_t n = 0;
  for (size_t i = 0; i < e->memo_items_n; i++) {
    memo_item_t *it = &e->memo_items[i];
    if (it->fresh && fresh_cksums(it->fresh, t) != 0) {
      fresh_free(it->fresh);
      continue;
    }
    e->memo_items[n++] = *it;
  }
  e->memo_items_n = 0;
  e->memo_pend = k;
  e->memo_pend_key = xstrdup(t->key);
  e->memo_pend_n = n;
}

/* Packs what the last translation kept: the key's entries become those
 * replayed (their packs still in the old block) and those made (packed
 * into memo_packs now), in one new block; the others go with the old
 * block. */
static void memo_settle(amc_rules_engine_t *e) {
  memo_key_t *k = e->memo_pend;
  if (!k)
    return;
  size_t n = e->memo_pend_n;
  e->memo_pend = NULL;
  e->memo_pend_n = 0;
  e->memo_entries -= k->n;
  free(k->ents);
  k->ents = NULL;
  k->n = 0;
  amc_buf_reset(&e->memo_packs);
  /* The dictionary from an outermost call's entry (pools, made first, are
   * a poor dictionary for routes: those hold the pools' text too) */
  for (size_t i = 0; i < n && !k->dict; i++)
    if (e->memo_items[i].fresh && !e->memo_items[i].fresh->inner)
      fresh_pack(e, k, &e->memo_items[i]);
  for (size_t i = 0; i < n; i++)
    if (e->memo_items[i].fresh)
      fresh_pack(e, k, &e->memo_items[i]);
  if (n > 1)
    qsort(e->memo_items, n, sizeof *e->memo_items, item_cmp);
  size_t total = 0, kept = 0;
  for (size_t i = 0; i < n; i++) {
    memo_item_t *it = &e->memo_items[i];
    if (kept && e->memo_items[kept - 1].ent.hash == it->ent.hash)
      continue; /* an older one of the same subkey */
    e->memo_items[kept++] = *it;
    total += it->ent.len;
  }
  uint8_t *block = total ? malloc(total) : NULL;
  if (kept) {
    k->ents = malloc(kept * sizeof *k->ents);
    if (!k->ents || !block)
      abort();
  }
  size_t off = 0;
  for (size_t i = 0; i < kept; i++) {
    memo_item_t *it = &e->memo_items[i];
    const uint8_t *src = it->packed
                             ? (const uint8_t *)e->memo_packs.data + it->ent.off
                             : k->block + it->ent.off;
    memcpy(block + off, src, it->ent.len);
    it->ent.off = (uint32_t)off;
    off += it->ent.len;
    k->ents[k->n++] = it->ent;
  }
  free(k->block);
  k->block = block;
  if (e->memo_packs.cap > 65536) /* a burst: give the memory back */
    amc_buf_free(&e->memo_packs);
  e->memo_entries += k->n;
  if (!k->n)
    memo_key_free(amc_strmap_del(&e->memo, e->memo_pend_key));
  free(e->memo_pend_key);
  e->memo_pend_key = NULL;
  if (e->memo_items_cap > 256) { /* a burst: give the memory back */
    free(e->memo_items);
    e->memo_items = NULL;
    e->memo_items_cap = 0;
  }
}

/* Drops what the last translation kept without packing it (the memo goes). */
static void memo_unsettle(amc_rules_engine_t *e) {
  for (size_t i = 0; i < e->memo_pend_n; i++)
    fresh_free(e->memo_items[i].fresh);
  e->memo_pend = NULL;
  e->memo_pend_n = 0;
  free(e->memo_pend_key);
  e->memo_pend_key = NULL;
}

typedef struct {
  amc_rules_engine_t *e;
  const char *kind, *ns;
  const amc_read_t *path; /* its field or label */
  const char *proj;       /* the projected lists' slots instead (or NULL) */
} stamp_t;

static void stamp(amc_rules_engine_t *e, uint16_t slot) {
  e->memo_ticks[slot] = e->memo_now;
}

/* amc_json_string_fn: stamps the filtered lists on `value`. */
static void stamp_value(const char *s, size_t len, void *ud) {
  stamp_t *st = ud;
  slot_hash_t h = sh_start('f');
  sh_str(&h, st->kind);
  sh_str(&h, st->ns);
  sh_path(&h, st->path);
  sh_part(&h, s, len);
  uint16_t slot = sh_slot(&h);
  stamp(st->e, st->proj ? proj_slot(st->proj, slot) : slot);
  h = sh_start('F');
  sh_str(&h, st->kind);
  sh_path(&h, st->path);
  sh_part(&h, s, len);
  slot = sh_slot(&h);
  stamp(st->e, st->proj ? proj_slot(st->proj, slot) : slot);
}

/* Did the change alter what lists projected by `pr` show of the object? */
static int proj_changed(amc_rules_engine_t *e, const proj_reg_t *pr,
                        const char *old_json, const char *new_json) {
  if (!old_json || !new_json)
    return 1;
  amc_buf_reset(&e->proj_old);
  amc_buf_reset(&e->proj_buf);
  if (amc_json_project(pr->p, old_json, strlen(old_json), &e->proj_old) != 0 ||
      amc_json_project(pr->p, new_json, strlen(new_json), &e->proj_buf) != 0)
    return 1;
  return e->proj_old.len != e->proj_buf.len ||
         memcmp(e->proj_old.data, e->proj_buf.data, e->proj_buf.len) != 0;
}

static void stamp_path(stamp_t *st, const char *path, const char *old_json,
                       const char *new_json);

/* Stamps the projected lists' slots of a changed object (kind, ns) whose
 * projection by `pr` changed: its namespace's and every namespace's lists,
 * and the filtered lists on its values before and after. */
static void stamp_projected(stamp_t *st, const proj_reg_t *pr,
                            const char *old_json, const char *new_json) {
  amc_rules_engine_t *e = st->e;
  amc_read_t r = {(char *)st->kind, (char *)st->ns, NULL, NULL, NULL, NULL};
  stamp(e, proj_slot(pr->key, read_slot(&r)));
  r.namespace_ = NULL;
  stamp(e, proj_slot(pr->key, read_slot(&r)));
  st->proj = pr->key;
  for (size_t i = 0; i < e->memo_n_paths; i++)
    if (strcmp(e->memo_paths[i].kind, st->kind) == 0)
      stamp_path(st, e->memo_paths[i].path, old_json, new_json);
  st->proj = NULL;
}

static void stamp_path(stamp_t *st, const char *path, const char *old_json,
                       const char *new_json) {
  amc_read_t r = {0};
  if (path[0] == 'l')
    r.label = (char *)path + 2;
  else
    r.field = (char *)path + 2;
  st->path = &r;
  amc_deps_path_values(path, old_json, new_json, stamp_value, st);
  st->path = NULL; /* r goes */
}

static void memo_drop_all(amc_rules_engine_t *e) {
  memo_unsettle(e);

  amc_strmap_clear(&e->memo, memo_key_free);
  e->memo_entries = 0;
}

void amc_rules_engine_changed(amc_rules_engine_t *e, const char *kind,
                              const char *ns, const char *name,
                              const char *old_json, const char *new_json) {
  if (!e || !e->memo_on)
    return;
  memo_settle(e);                  /* the key's entries may go below */
  if (e->memo_now == UINT32_MAX) { /* the clock wraps: start afresh */
    memo_drop_all(e);
    memset(e->memo_ticks, 0, MEMO_SLOTS * sizeof *e->memo_ticks);
    e->memo_now = 1;
  }
  e->memo_now++;
  if (!ns)
    ns = "";
  stamp_t st = {e, kind, ns, NULL, NULL};
  amc_read_t r = {(char *)kind, (char *)ns, (char *)name, NULL, NULL, NULL};
  stamp(e, read_slot(&r)); /* the object */
  r.name = NULL;
  stamp(e, read_slot(&r)); /* its namespace's list */
  r.namespace_ = NULL;
  stamp(e, read_slot(&r)); /* every namespace's list */
  for (size_t i = 0; i < e->memo_n_paths && (old_json || new_json); i++)
    if (strcmp(e->memo_paths[i].kind, kind) == 0)
      stamp_path(&st, e->memo_paths[i].path, old_json, new_json);
  for (size_t i = 0; i < e->n_projs; i++)
    if (strcmp(e->projs[i].kind, kind) == 0 &&
        proj_changed(e, &e->projs[i], old_json, new_json))
      stamp_projected(&st, &e->projs[i], old_json, new_json);
  if (!new_json) {
    /* A translation key's own object is gone: so are its entries. */
    amc_buf_t b = AMC_BUF_INIT;
    amc_buf_printf(&b, "%s/%s/%s", kind, ns, name);
    memo_key_t *k = amc_strmap_del(&e->memo, b.data);
    if (k) {
      e->memo_entries -= k->n;
      memo_key_free(k);
    }
    amc_buf_free(&b);
  }
}

int amc_rules_engine_set_patch(amc_rules_engine_t *e, int on) {
  e->patch_on = on != 0;
  memo_drop_all(e); /* (entries made either way serve; the state goes) */
  return 0;
}

int amc_rules_engine_set_memo(amc_rules_engine_t *e, int on) {
  if (on && !e->memo_on) {
    e->memo_ticks = calloc(MEMO_SLOTS, sizeof *e->memo_ticks);
    if (!e->memo_ticks)
      return -1;
    e->memo_now = 1;
    e->memo_on = 1;
  } else if (!on && e->memo_on) {
    memo_drop_all(e);
    free(e->memo_ticks);
    e->memo_ticks = NULL;
    for (size_t i = 0; i < e->memo_n_paths; i++) {
      free(e->memo_paths[i].kind);
      free(e->memo_paths[i].path);
    }
    free(e->memo_paths);
    e->memo_paths = NULL;
    e->memo_n_paths = 0;
    free(e->memo_items);
    e->memo_items = NULL;
    e->memo_items_n = e->memo_items_cap = 0;
    amc_buf_free(&e->memo_plain);
    amc_buf_free(&e->memo_scratch);
    amc_buf_free(&e->memo_packs);
    e->memo_on = 0;
  }
  return 0;
}

static int msize_key(const char *key, void *value, void *data) {
  size_t *bytes = data;
  const memo_key_t *k = value;
  *bytes += strlen(key) + 1 + sizeof *k + k->dict_len + k->n * sizeof *k->ents;
  *bytes += k->n_root_slots * sizeof *k->root_slots + k->calls_len +
            k->n_adds * sizeof *k->adds + k->vals_len;
  for (size_t i = 0; i < k->n; i++)
    *bytes += k->ents[i].len;
  return 0;
}

void amc_rules_engine_memo_stats(const amc_rules_engine_t *e,
                                 amc_rules_memo_stats_t *st) {
  memset(st, 0, sizeof *st);
  if (!e->memo_on)
    return;
  memo_settle((amc_rules_engine_t *)e); /* count what is pending too */
  size_t bytes = 0; /* plus the fixed stamp table, MEMO_SLOTS x 4 */
  amc_strmap_foreach((amc_strmap_t *)&e->memo, msize_key, &bytes);
  st->entries = e->memo_entries;
  st->bytes = bytes;
  st->hits = e->memo_hits;
  st->misses = e->memo_misses;
  st->patches = e->patches;
  st->declined = e->patch_declined;
}

/* The host functions every translation's rt gets (rt.lua's M.new). */
static const luaL_Reg host_fns[] = {{"get", host_get},
                                    {"list", host_list},
                                    {"hash", host_hash},
                                    {"base64_decode", host_base64_decode},
                                    {"ipv4", host_ipv4},
                                    {"plain_name", host_plain_name},
                                    {"new_array", host_new_array},
                                    {NULL, NULL}};

/* ------------------------------------------------------------------------ */
/* Patches (rules_engine.h "Patches"): after a change, a Gateway whose own
 * reads (those made outside memoized calls: its list of VirtualServices,
 * projected, its Secrets...) are all unchanged differs from its last
 * translation only inside the top-level memoized calls whose entries went
 * stale. Those calls run again, alone, with the arguments the last
 * translation gave them (rt.lua keeps the context and the values; inputs
 * are read again from the store, unchanged in what the translation saw
 * of them since its reads are). When each gives the same result, the same
 * events (out:get answers, adds by type and name, diagnostics) and the
 * same reads as before, the rest of the translation would run exactly as
 * it did, so its objects are those of the last translation but for the
 * bodies these calls added: the patch is those objects alone
 * (translation.h `partial`). Anything else (a different result, an
 * out:get answered otherwise, an error) and the key is translated as
 * usual; the patch's work is dropped. */

/* The slot of a projected list read (record_read_proj). */
static uint16_t proj_slot(const char *proj, uint16_t slot) {
  slot_hash_t s = sh_start('j');
  sh_str(&s, proj);
  char b[2] = {(char)(slot & 0xff), (char)(slot >> 8)};
  sh_bytes(&s, b, 2);
  return sh_slot(&s);
}

static uint64_t zigzag(lua_Integer v) {
  return v < 0 ? ((uint64_t)(-(v + 1)) << 1) | 1 : (uint64_t)v << 1;
}

static lua_Integer unzigzag(uint64_t u) {
  return u & 1 ? -(lua_Integer)(u >> 1) - 1 : (lua_Integer)(u >> 1);
}

/* host.memo_root(subkey, codes, pos): a top-level rt.memo call of the
 * translation, made after `pos` objects were added; `codes` (integers)
 * tell rt._patch how to make its arguments again. Kept as u64 subkey
 * hash, varint pos, varint n, n zigzag varints. */
static int host_memo_root(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  size_t n;
  const char *sub = luaL_checklstring(L, 1, &n);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer pos = luaL_checkinteger(L, 3);
  if (e->patching || !e->root_ok)
    return 0;
  put_u64(&e->root_calls, amc_fnv64(sub, n));
  put_uv(&e->root_calls, (uint64_t)pos);
  size_t nc = lua_rawlen(L, 2);
  put_uv(&e->root_calls, nc);
  for (size_t i = 1; i <= nc; i++) {
    int isnum;
    lua_rawgeti(L, 2, (lua_Integer)i);
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum)
      e->root_ok = 0;
    put_uv(&e->root_calls, zigzag(v));
  }
  e->n_root_calls++;
  return 0;
}

/* host.memo_input(kind, ns, name): an input of a call a patch runs again,
 * as the translation had it (the same decoded table as rt.get gives), not
 * recorded as a read (the translation's own reads of it are unchanged).
 * nil if it is gone. */
static int host_memo_input(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  const char *kind = luaL_checkstring(L, 1);
  const char *ns = opt_string(L, 2, "memo_input: namespace");
  const char *name = luaL_checkstring(L, 3);
  const amc_store_obj_t *o = amc_store_get(e->store, kind, ns, name);
  if (!o) {
    lua_pushnil(L);
    return 1;
  }
  gen_t *g = GEN(L);
  const char *filter = lua_tostring(L, 5);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref_cache);
  int cache = lua_gettop(L);
  if (lua_istable(L, 4))
    push_projected(L, g, cache, o, proj_get(L, e, kind, 4, filter));
  else
    push_cached(L, g, cache, o);
  return 1;
}

/* After a successful translation: rt._root() gives the values its
 * top-level calls' arguments came from (those not made again otherwise),
 * as an array, or nil when it cannot be patched; kept as JSON
 * (e->root_vals, then the key's) until the next translation. No Lua
 * state is kept between translations: a patch makes its context again
 * (the entry rule's patch_context) and decodes these. */
static void root_keep(lua_State *L, amc_rules_engine_t *e, int rt) {
  amc_buf_reset(&e->root_vals);
  if (lua_getfield(L, rt, "_root") != LUA_TFUNCTION) {
    e->root_ok = 0;
    lua_pop(L, 1);
    return;
  }
  lua_call(L, 0, 1);
  char err[200];
  if (!lua_istable(L, -1) ||
      amc_json_encode(L, lua_gettop(L), &e->root_vals, err, sizeof err) < 0)
    e->root_ok = 0; /* (a value that is not plain data) */
  lua_pop(L, 1);
}

static int obj_at_cmp(const void *a, const void *b) {
  const obj_at_t *x = a, *y = b;
  if (x->h != y->h)
    return x->h < y->h ? -1 : 1;
  return (x->at > y->at) - (x->at < y->at);
}

/* During a patch: had the key's last translation added (type, name) before
 * the running call was made? (Its out:get answers there, which the stale
 * calls must see again; objects of the calls run again are in the patch's
 * own Output.) By a 32-bit hash: a collision can only answer "present"
 * where the last translation's answer was "absent", and that answer was
 * recorded in the call's old entry, so the call's events then differ and
 * the patch is declined -- never a wrong patch. */
static int patch_present(amc_rules_engine_t *e, const char *type, size_t tl,
                         const char *name, size_t nl) {
  const memo_key_t *k = e->patch_key;
  if (!k)
    return 0;
  uint32_t h = (uint32_t)obj_hash(type, tl, name, nl);
  size_t lo = 0, hi = k->n_adds;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (k->adds[mid].h < h)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < k->n_adds && k->adds[lo].h == h && k->adds[lo].at < e->patch_pos;
}

/* host.memo_present(type, name): patch_present for rt._patch's Output. */
static int host_memo_present(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  size_t tl, nl;
  const char *type = luaL_checklstring(L, 1, &tl);
  const char *name = luaL_checklstring(L, 2, &nl);
  lua_pushboolean(L, e->patching && patch_present(e, type, tl, name, nl));
  return 1;
}

/* host.memo_patch_at(pos): the stale call about to run again was made
 * after `pos` objects had been added. */
static int host_memo_patch_at(lua_State *L) {
  amc_rules_engine_t *e = GEN(L)->eng;
  e->patch_pos = (uint32_t)luaL_checkinteger(L, 1);
  return 0;
}

/* memo_finish of a translation that can be patched later: what it read
 * outside memoized calls, and its top-level calls. */
static void patch_state_set(amc_rules_engine_t *e, memo_key_t *k) {
  free(k->root_slots);
  free(k->calls);
  free(k->adds);
  free(k->vals);
  k->root_slots = NULL;
  k->calls = NULL;
  k->adds = NULL;
  k->vals = NULL;
  k->n_root_slots = k->calls_len = k->n_calls = k->n_adds = k->vals_len = 0;
  k->patch_tick = 0;
  if (!e->root_ok || !e->n_root_calls || !e->active)
    return;
  qsort(e->root_slots, e->n_root_slots, sizeof *e->root_slots, u16_cmp);
  size_t u = 0;
  for (size_t i = 0; i < e->n_root_slots; i++)
    if (!u || e->root_slots[u - 1] != e->root_slots[i])
      e->root_slots[u++] = e->root_slots[i];
  k->root_slots = malloc((u ? u : 1) * sizeof *k->root_slots);
  k->calls = malloc(e->root_calls.len);
  if (!k->root_slots || !k->calls)
    abort();
  memcpy(k->root_slots, e->root_slots, u * sizeof *k->root_slots);
  k->n_root_slots = u;
  memcpy(k->calls, e->root_calls.data, e->root_calls.len);
  k->calls_len = e->root_calls.len;
  k->n_calls = e->n_root_calls;
  k->vals = malloc(e->root_vals.len + 1);
  if (!k->vals)
    abort();
  memcpy(k->vals, e->root_vals.data, e->root_vals.len);
  k->vals_len = e->root_vals.len;
  qsort(e->adds, e->n_adds, sizeof *e->adds, obj_at_cmp);
  k->adds = malloc((e->n_adds ? e->n_adds : 1) * sizeof *k->adds);
  if (!k->adds)
    abort();
  memcpy(k->adds, e->adds, e->n_adds * sizeof *k->adds);
  k->n_adds = e->n_adds;
  if (e->adds_cap > 4096) { /* a burst: give the memory back */
    free(e->adds);
    e->adds = NULL;
    e->adds_cap = 0;
  }
  k->patch_tick = e->memo_now;
  k->patch_gen = e->active->number;
}

/* The parts of an entry's plain text (see "Memo"): subkey, result blob,
 * body (its objects and events, as they are encoded) and reads. */
typedef struct {
  span_t sub, blob, body, reads;
  size_t n_reads;
} ent_parts_t;

static void skip_ostr(cur_t *c) {
  size_t l = get_uv(c);
  if (l)
    get_bytes(c, l - 1);
}

static int ent_parts(cur_t c, ent_parts_t *p) {
  p->sub = get_span(&c);
  p->blob = get_span(&c);
  const uint8_t *body = c.p;
  size_t n = get_uv(&c);
  for (size_t j = 0; j < n && !c.bad; j++) {
    get_span(&c);
    get_span(&c);
    skip_ostr(&c);
  }
  n = get_uv(&c);
  for (size_t j = 0; j < n && !c.bad; j++) {
    const uint8_t *tag = get_bytes(&c, 1);
    if (!tag)
      break;
    if (*tag == 'g') {
      get_span(&c);
      get_span(&c);
      get_bytes(&c, 1);
    } else if (*tag == 'd') {
      for (int q = 0; q < 6; q++)
        skip_ostr(&c);
    } else if (*tag != 'a') {
      c.bad = 1;
    }
  }
  p->body = (span_t){(const char *)body, (size_t)(c.p - body)};
  p->n_reads = get_uv(&c);
  p->reads = (span_t){(const char *)c.p, (size_t)(c.end - c.p)};
  return c.bad ? -1 : 0;
}

static int span_cmp(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->p, y->p, n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* The distinct reads of an encoded list (n reads of six ostr each), sorted:
 * an array of spans the caller frees, *n_out of them; NULL if corrupt. */
static span_t *read_set(const char *p, size_t len, size_t n, size_t *n_out) {
  span_t *v = malloc((n ? n : 1) * sizeof *v);
  if (!v)
    abort();
  cur_t c = {(const uint8_t *)p, (const uint8_t *)p + len, 0};
  for (size_t i = 0; i < n; i++) {
    const uint8_t *start = c.p;
    for (int q = 0; q < 6; q++)
      skip_ostr(&c);
    v[i] = (span_t){(const char *)start, (size_t)(c.p - start)};
  }
  if (c.bad) {
    free(v);
    return NULL;
  }
  qsort(v, n, sizeof *v, span_cmp);
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (!u || span_cmp(&v[u - 1], &v[i]) != 0)
      v[u++] = v[i];
  *n_out = u;
  return v;
}

static int same_read_sets(const char *a, size_t alen, size_t an, const char *b,
                          size_t blen, size_t bn) {
  size_t na = 0, nb = 0;
  span_t *x = read_set(a, alen, an, &na), *y = read_set(b, blen, bn, &nb);
  int same = x && y && na == nb;
  for (size_t i = 0; same && i < na; i++)
    same = span_eq(x[i], y[i]);
  free(x);
  free(y);
  return same;
}

/* rt._patch's calls: {codes, ids} per stale call; ids are the inputs'
 * kind, namespace (false: none) and name, from the old entry's subkey
 * ("<key>\x1f<kind>/<ns>/<name>..."). Returns -1 if a subkey does not
 * hold its inputs. */
static int push_patch_calls(lua_State *L, amc_rules_engine_t *e) {
  memo_key_t *k = e->patch_key;
  lua_createtable(L, (int)e->patch_n_stale, 0);
  for (size_t i = 0; i < e->patch_n_stale; i++) {
    stale_call_t *sc = &e->patch_stale[i];
    lua_createtable(L, 2, 0);
    lua_createtable(L, (int)sc->n_codes, 0);
    cur_t c = {k->calls + sc->codes_off, k->calls + k->calls_len, 0};
    lua_Integer ni = 0;
    for (size_t j = 0; j < sc->n_codes; j++) {
      lua_Integer v = unzigzag(get_uv(&c));
      if (j == 1)
        ni = v;
      lua_pushinteger(L, v);
      lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
    lua_rawseti(L, -2, 1);
    /* the last ni parts of the subkey */
    const char *sub = e->patch_old.data + sc->sub_off;
    const char *end = sub + sc->sub_len;
    const char *part[16];
    size_t parts = 0;
    for (const char *q = end; q > sub && parts < 16; q--)
      if (q[-1] == '\x1f')
        part[parts++] = q;
    if (ni < 0 || (size_t)ni > parts)
      return -1;
    /* the key: the subkey before its inputs */
    size_t key_len = ni ? (size_t)(part[ni - 1] - 1 - sub) : sc->sub_len;
    lua_createtable(L, (int)(3 * ni), 0);
    for (lua_Integer j = 0; j < ni; j++) {
      const char *ps = part[ni - 1 - j];
      const char *pe = memchr(ps, '\x1f', (size_t)(end - ps));
      if (!pe)
        pe = end;
      const char *s1 = memchr(ps, '/', (size_t)(pe - ps));
      const char *s2 = NULL;
      for (const char *q = pe; q > ps; q--)
        if (q[-1] == '/') {
          s2 = q - 1;
          break;
        }
      if (!s1 || !s2 || s2 == s1)
        return -1; /* not "<kind>/<ns>/<name>" */
      lua_pushlstring(L, ps, (size_t)(s1 - ps));
      lua_rawseti(L, -2, 3 * j + 1);
      if (s2 > s1 + 1)
        lua_pushlstring(L, s1 + 1, (size_t)(s2 - s1 - 1));
      else
        lua_pushboolean(L, 0);
      lua_rawseti(L, -2, 3 * j + 2);
      lua_pushlstring(L, s2 + 1, (size_t)(pe - s2 - 1));
      lua_rawseti(L, -2, 3 * j + 3);
    }
    lua_rawseti(L, -2, 2);
    lua_pushinteger(L, (lua_Integer)sc->pos);
    lua_rawseti(L, -2, 3);
    lua_pushlstring(L, sub, key_len);
    lua_rawseti(L, -2, 4);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 0;
}

/* The patch itself, in the protected call: rt._patch runs the stale calls
 * with the context the entry rule's patch_context makes for the Gateway
 * and the kept values, into a fresh Output, whose objects are collected.
 * Declines (e->patching = 2) when the kept state does not decode. */
static int patch_protected(lua_State *L) {
  gen_t *g = GEN(L);
  amc_rules_engine_t *e = g->eng;
  lua_settop(L, 0);
  luaL_checkstack(L, 16, "patch");
  lua_createtable(L, 0, 16);
  lua_rawseti(L, LUA_REGISTRYINDEX, g->ref_cache);
  push_rt(L, g); /* 1: a new rt, as a translation has */
  if (lua_getfield(L, 1, "_patch") != LUA_TFUNCTION) { /* 2 */
    e->patching = 2;
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref_patch_context); /* 3 */
  push_obj(L, e->cur_obj);                                 /* 4: the Gateway */
  char err[200];
  if (amc_json_decode(L, e->patch_key->vals, e->patch_key->vals_len, err,
                      sizeof err) != 0 ||
      push_patch_calls(L, e) != 0) { /* 5: vals, 6: the calls */
    e->patching = 2;
    return 0;
  }
  lua_call(L, 4, 1); /* 2: result */
  if (!lua_istable(L, 2)) {
    e->patching = 2;
    return 0;
  }
  int rc = collect_objects(L, g, 2);
  amc_json_memo_free(e->enc_memo);
  e->enc_memo = NULL;
  if (rc < 0)
    e->patching = 2;
  return 0;
}

/* Did the stale call `sc` run again as it ran before? Its fresh entry
 * (the outermost one made for its subkey) must hold the same result, the
 * same objects and events, and the same reads. */
static int patch_same(amc_rules_engine_t *e, const stale_call_t *sc) {
  memo_fresh_t *f = NULL;
  for (size_t i = 0; i < e->memo_items_n; i++) {
    memo_item_t *it = &e->memo_items[i];
    if (it->fresh && !it->fresh->inner && it->ent.hash == sc->hash)
      f = it->fresh;
  }
  if (!f)
    return 0;
  const char *old = e->patch_old.data;
  if (f->blob_len != sc->blob_len ||
      memcmp(f->blob, old + sc->blob_off, sc->blob_len) != 0)
    return 0;
  amc_buf_t b = AMC_BUF_INIT;
  put_uv(&b, f->n_objs);
  for (size_t i = 0; i < f->n_objs; i++) {
    put_str(&b, f->objs[i].type, strlen(f->objs[i].type));
    put_str(&b, f->objs[i].name, strlen(f->objs[i].name));
    put_ostr(&b, f->objs[i].tenant_ref);
  }
  amc_buf_append(&b, f->ev, f->ev_len);
  int same =
      b.len == sc->body_len && memcmp(b.data, old + sc->body_off, b.len) == 0;
  if (same) {
    amc_buf_reset(&b);
    for (size_t i = 0; i < f->n_reads; i++)
      put_read(&b, &f->reads[i]);
    if (f->enc_len)
      amc_buf_append(&b, f->enc, f->enc_len);
    same = same_read_sets(b.data, b.len, f->n_reads + f->n_enc,
                          old + sc->reads_off, sc->reads_len, sc->n_reads);
  }
  amc_buf_free(&b);
  return same;
}

/* Drops what a declined patch did to the memo (its fresh entries; the
 * key's entries stay as they were). */
static void memo_abandon(amc_rules_engine_t *e) {
  frames_reset(e);
  for (size_t i = 0; i < e->memo_items_n; i++)
    fresh_free(e->memo_items[i].fresh);
  e->memo_items_n = 0;
  memo_key_t *k = e->memo_cur;
  e->memo_cur = NULL;
  if (k) {
    free(k->taken);
    k->taken = NULL;
  }
}

/* A patch's reads are the key's last ones: the ones it made go. */
static void drop_reads(amc_translation_t *t) {
  amc_reads_free(t->reads, t->n_reads);
  t->reads = NULL;
  t->n_reads = 0;
}

/* Patches t's key if it can (see above): returns 1 with t the patch, or 0
 * with t untouched (the caller translates). */
static int try_patch(amc_rules_engine_t *e, gen_t *g, amc_translation_t *t) {
  memo_key_t *k = amc_strmap_get(&e->memo, t->key);
  if (!k || !k->patch_tick || k->patch_gen != g->number)
    return 0;
  for (size_t i = 0; i < k->n_root_slots; i++)
    if (e->memo_ticks[k->root_slots[i]] > k->patch_tick)
      return 0; /* the translation's own reads changed */
  /* the stale calls */
  e->patch_n_stale = 0;
  amc_buf_reset(&e->patch_old);
  cur_t c = {k->calls, k->calls + k->calls_len, 0};
  for (size_t j = 0; j < k->n_calls; j++) {
    const uint8_t *h8 = get_bytes(&c, 8);
    if (!h8)
      return 0;
    uint64_t h = get_u64(h8, 0);
    uint32_t pos = (uint32_t)get_uv(&c);
    size_t nc = get_uv(&c);
    size_t codes_off = (size_t)(c.p - k->calls);
    for (size_t q = 0; q < nc; q++)
      get_uv(&c);
    if (c.bad)
      return 0;
    size_t i = ent_find(k, h);
    pack_view_t v;
    if (i == SIZE_MAX || pack_view(k, &k->ents[i], &v) != 0)
      return 0; /* (a call not kept: cannot be compared) */
    if (ent_valid(e, &k->ents[i], &v))
      continue;
    if (e->patch_n_stale == PATCH_MAX_STALE)
      return 0;
    for (size_t q = 0; q < e->patch_n_stale; q++)
      if (e->patch_stale[q].hash == h)
        return 0; /* the same call twice */
    amc_buf_reset(&e->memo_plain);
    if (amc_lz_decompress(k->dict, k->dict_len, v.lz, v.lz_len,
                          &e->memo_plain) != 0)
      return 0;
    cur_t pc = {(const uint8_t *)e->memo_plain.data,
                (const uint8_t *)e->memo_plain.data + e->memo_plain.len, 0};
    ent_parts_t p;
    if (ent_parts(pc, &p) != 0)
      return 0;
    stale_call_t *sc = &e->patch_stale[e->patch_n_stale++];
    sc->hash = h;
    sc->pos = pos;
    sc->codes_off = codes_off;
    sc->n_codes = nc;
    size_t base = e->patch_old.len;
    amc_buf_append(&e->patch_old, e->memo_plain.data, e->memo_plain.len);
    const char *pl = e->memo_plain.data;
    sc->sub_off = base + (size_t)(p.sub.p - pl);
    sc->sub_len = p.sub.n;
    sc->blob_off = base + (size_t)(p.blob.p - pl);
    sc->blob_len = p.blob.n;
    sc->body_off = base + (size_t)(p.body.p - pl);
    sc->body_len = p.body.n;
    sc->reads_off = base + (size_t)(p.reads.p - pl);
    sc->reads_len = p.reads.n;
    sc->n_reads = p.n_reads;
  }
  if (!e->patch_n_stale)
    return 0; /* nothing the translation did changed: not a patch's job */
  e->patch_key = k;
  memo_start(e, t->key, 1);
  e->patching = 1;
  int status = run_protected(e, g, t, patch_protected);
  int ok = status == LUA_OK && !t->error && e->patching == 1;
  for (size_t i = 0; ok && i < e->patch_n_stale; i++)
    ok = patch_same(e, &e->patch_stale[i]);
  e->patching = 0;
  e->patch_key = NULL;
  free(e->out_err);
  e->out_err = NULL;
  if (!ok) {
    memo_abandon(e);
    clear_output(t);
    free(t->error);
    t->error = NULL;
    t->n_unchanged = 0;
    drop_reads(t);
    if (status != LUA_OK) /* (an error: the translation reports it) */
      k->patch_tick = 0;
    e->patch_declined++;
    translation_end(e, g, status);
    return 0;
  }
  /* the patch: its objects only; the key keeps its reads and diagnostics */
  drop_reads(t);
  amc_diags_free(t->diags, t->n_diags);
  t->diags = NULL;
  t->n_diags = 0;
  t->partial = 1;
  e->patching = 3; /* memo_finish: the key's other entries stay */
  memo_finish(e, t);
  e->patching = 0;
  k->patch_tick = e->memo_now;
  e->patches++;
  return 1;
}

/* ---- AMC_PATCH_CHECK: every patch against a full translation ----------- */

/* What check mode keeps of a key's last translation: its objects (type,
 * name, checksum), diagnostics and reads, one line each, sorted. */
static char *check_text(const amc_translation_t *t, int objects_only) {
  amc_buf_t b = AMC_BUF_INIT;
  for (size_t i = 0; i < t->n_objects; i++)
    amc_buf_printf(&b, "o %s %s %s\n", t->objects[i].type, t->objects[i].name,
                   t->objects[i].cksum);
  if (!objects_only) {
    for (size_t i = 0; i < t->n_diags; i++) {
      const amc_diag_t *d = &t->diags[i];
      amc_buf_printf(&b, "d %d %s %s %s %s %s\n", (int)d->severity,
                     d->kind ? d->kind : "", d->namespace_ ? d->namespace_ : "",
                     d->name ? d->name : "", d->field ? d->field : "",
                     d->message ? d->message : "");
    }
    for (size_t i = 0; i < t->n_reads; i++) {
      const amc_read_t *r = &t->reads[i];
      amc_buf_printf(&b, "r %s %s %s %s %s %s\n", r->kind,
                     r->namespace_ ? r->namespace_ : "-",
                     r->name ? r->name : "-", r->field ? r->field : "-",
                     r->label ? r->label : "-", r->value ? r->value : "-");
    }
  }
  return b.data ? b.data : xstrdup("");
}

static void check_keep(amc_rules_engine_t *e, const amc_translation_t *t) {
  char *text = check_text(t, 0);
  free(amc_strmap_del(&e->check_last, t->key));
  amc_strmap_put(&e->check_last, t->key, text, NULL);
}

/* The last translation's text with the patch's objects put in. */
static char *check_patched(const char *last, const amc_translation_t *p) {
  amc_buf_t b = AMC_BUF_INIT;
  const char *q = last;
  while (*q) {
    const char *nl = strchr(q, '\n');
    size_t len = nl ? (size_t)(nl - q) + 1 : strlen(q);
    int replaced = 0;
    if (q[0] == 'o') {
      for (size_t i = 0; i < p->n_objects && !replaced; i++) {
        const amc_avi_object_t *o = &p->objects[i];
        size_t tl = strlen(o->type), nlen = strlen(o->name);
        if (len > 2 + tl + 1 + nlen && memcmp(q + 2, o->type, tl) == 0 &&
            q[2 + tl] == ' ' && memcmp(q + 3 + tl, o->name, nlen) == 0 &&
            q[3 + tl + nlen] == ' ') {
          amc_buf_printf(&b, "o %s %s %s\n", o->type, o->name, o->cksum);
          replaced = 1;
        }
      }
    }
    if (!replaced)
      amc_buf_append(&b, q, len);
    q += len;
  }
  return b.data ? b.data : xstrdup("");
}

static void patch_check(amc_rules_engine_t *e, const char *kind, const char *ns,
                        const char *name, const amc_translation_t *patch) {
  char *last = amc_strmap_get(&e->check_last, patch->key);
  char *want = last ? check_patched(last, patch) : NULL;
  amc_translation_t *full = translate(e, kind, ns, name, 0);
  if (!full || full->error || !want) {
    fprintf(stderr, "AMC_PATCH_CHECK: %s: %s\n", patch->key,
            !want ? "no earlier translation kept"
                  : "the full translation "
                    "failed");
    abort();
  }
  char *got = check_text(full, 0);
  if (strcmp(got, want) != 0) {
    fprintf(stderr,
            "AMC_PATCH_CHECK: %s: the patch differs from a full "
            "translation\n--- patched last:\n%s--- full:\n%s",
            patch->key, want, got);
    abort();
  }
  free(got);
  free(want);
  amc_translation_free(full);
}

/* Pushes a new rt (runtime/lua/rt.lua's rt.new) with the host functions. */
static void push_rt(lua_State *L, gen_t *g) {
  amc_rules_engine_t *e = g->eng;
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref_rt_new);
  lua_createtable(L, 0, 16);
  luaL_setfuncs(L, host_fns, 0);
  lua_pushboolean(L, 1); /* collect_objects sorts by type, name */
  lua_setfield(L, -2, "sorts_objects");
  lua_pushlightuserdata(L, AMC_JSON_NULL);
  lua_setfield(L, -2, "null");
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  lua_setfield(L, -2, "array_mt");
  amc_settings_push(L, e->settings);
  lua_setfield(L, -2, "settings");
  if (e->memo_on)
    luaL_setfuncs(L, memo_host_fns, 0);
  else
    luaL_setfuncs(L, plain_host_fns, 0);
  if (e->memo_on && e->patch_on)
    luaL_setfuncs(L, patch_host_fns, 0);
  lua_call(L, 1, 1);
}

/* Runs under pcall: the whole translation of e->cur_obj. */
static int translate_protected(lua_State *L) {
  gen_t *g = GEN(L);
  amc_rules_engine_t *e = g->eng;
  lua_settop(L, 0);
  luaL_checkstack(L, 16, "translate");
  /* Sized for as many objects as the last translation decoded (keys are
   * usually translated alike), capped: growing rehashes at each power of
   * two. */
  lua_createtable(L, 0, g->cache_n < 4096 ? g->cache_n : 4096);
  g->cache_n = 0;
  lua_rawseti(L, LUA_REGISTRYINDEX, g->ref_cache);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref_translate); /* 1 */
  push_obj(L, e->cur_obj);                             /* 2 */
  push_rt(L, g);                                       /* 3: rt */
  lua_pushvalue(L, 3);
  lua_insert(L, 1);  /* 1: rt, 2: translate, 3: the object, 4: rt */
  lua_call(L, 2, 1); /* 2: result */
  if (lua_type(L, 2) != LUA_TTABLE)
    return out_fail(e, "translate must return a table (out:result()), got %s",
                    luaL_typename(L, 2));
  int rc = collect_objects(L, g, 2);
  amc_json_memo_free(e->enc_memo);
  e->enc_memo = NULL;
  if (rc < 0)
    return 0;
  collect_diags(L, e, 2);
  if (e->memo_on && e->patch_on)
    root_keep(L, e, 1);
  return 0;
}

static void clear_output(amc_translation_t *t) {
  for (size_t i = 0; i < t->n_objects; i++) {
    free(t->objects[i].type);
    free(t->objects[i].name);
    free(t->objects[i].json);
    free(t->objects[i].tenant_ref);
  }
  free(t->objects);
  t->objects = NULL;
  t->n_objects = 0;
  t->n_unchanged = 0;
  amc_diags_free(t->diags, t->n_diags);
  t->diags = NULL;
  t->n_diags = 0;
}

static int cmp_opt(const char *a, const char *b) {
  if (!a || !b)
    return (a != NULL) - (b != NULL);
  return strcmp(a, b);
}

static int read_cmp(const void *pa, const void *pb) {
  const amc_read_t *a = pa, *b = pb;
  int c = strcmp(a->kind, b->kind);
  if (!c)
    c = cmp_opt(a->namespace_, b->namespace_);
  if (!c)
    c = cmp_opt(a->name, b->name);
  if (!c)
    c = cmp_opt(a->field, b->field);
  if (!c)
    c = cmp_opt(a->label, b->label);
  if (!c)
    c = cmp_opt(a->value, b->value);
  return c;
}

static void dedup_reads(amc_translation_t *t) {
  if (t->n_reads < 2)
    return;
  qsort(t->reads, t->n_reads, sizeof *t->reads, read_cmp);
  size_t w = 1;
  for (size_t i = 1; i < t->n_reads; i++) {
    if (read_cmp(&t->reads[w - 1], &t->reads[i]) == 0) {
      free(t->reads[i].kind);
      free(t->reads[i].namespace_);
      free(t->reads[i].name);
      free(t->reads[i].field);
      free(t->reads[i].label);
      free(t->reads[i].value);
    } else {
      t->reads[w++] = t->reads[i];
    }
  }
  t->n_reads = w;
}

/* Puts " while translating KEY" after the first line of `msg`. */
static char *with_key(const char *msg, const char *key) {
  const char *nl = strchr(msg, '\n');
  if (!nl)
    return xasprintf("%s while translating %s", msg, key);
  return xasprintf("%.*s while translating %s%s", (int)(nl - msg), msg, key,
                   nl);
}

static int try_patch(amc_rules_engine_t *e, gen_t *g, amc_translation_t *t);
static void patch_check(amc_rules_engine_t *e, const char *kind, const char *ns,
                        const char *name, const amc_translation_t *patch);
static void check_keep(amc_rules_engine_t *e, const amc_translation_t *t);

amc_translation_t *amc_rules_engine_translate(amc_rules_engine_t *e,
                                              const char *kind, const char *ns,
                                              const char *name) {
  return translate(e, kind, ns, name, 1);
}

amc_translation_t *amc_rules_engine_translate_full(amc_rules_engine_t *e,
                                                   const char *kind,
                                                   const char *ns,
                                                   const char *name) {
  return translate(e, kind, ns, name, 0);
}

static amc_translation_t *translate(amc_rules_engine_t *e, const char *kind,
                                    const char *ns, const char *name,
                                    int replay) {
  amc_translation_t *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->key = xasprintf("%s/%s/%s", kind, ns ? ns : "", name);
  gen_t *g = e->active;
  if (!g) {
    t->error = xasprintf("no rules loaded (while translating %s)", t->key);
    return t;
  }
  const amc_store_obj_t *o = amc_store_get(e->store, kind, ns, name);
  if (!o) {
    t->error = xasprintf("%s: not found in the store", t->key);
    return t;
  }
  amc_rules_engine_settle(e); /* the last translation's deferred work */
  e->cur_obj = o;
  e->cur_t = t;
  if (replay && e->memo_on && e->patch_on) {
    int patched = try_patch(e, g, t);
    if (patched) {
      e->cur_t = NULL;
      e->cur_obj = NULL;
      translation_end(e, g, LUA_OK);
      if (e->patch_check)
        patch_check(e, kind, ns, name, t);
      return t;
    }
  }
  memo_start(e, t->key, replay);
  int status = run_protected(e, g, t, translate_protected);
  if (e->memo_on)
    memo_finish(e, t);
  free(e->out_err);
  e->out_err = NULL;
  e->cur_t = NULL;
  e->cur_obj = NULL;
  translation_end(e, g, status);
  dedup_reads(t);
  if (e->patch_check && !t->error)
    check_keep(e, t);
  return t;
}

/* Runs `fn` (translate_protected or patch_protected) for e->cur_t under the
 * translation's limits; a failure becomes t->error (and empties t). */
static int run_protected(amc_rules_engine_t *e, gen_t *g, amc_translation_t *t,
                         lua_CFunction fn) {
  lua_State *L = g->L;
  e->objs_cap = e->diags_cap = e->reads_cap = 0;
  free(e->out_err);
  e->out_err = NULL;
  g->mem_refused = 0;
  g->limit = g->used + e->tmem < g->cap ? g->used + e->tmem : g->cap;
  lua_settop(L, 0);
  budget_start(e, L);
  lua_pushcfunction(L, msg_handler);
  lua_pushcfunction(L, fn);
  int status = lua_pcall(L, 0, 0, 1);
  int over = budget_stop(e, L);
  g->limit = g->cap;
  if (over) {
    t->error = xasprintf("%s: CPU time budget exceeded (%llu ms) while "
                         "translating %s",
                         e->budget_where[0] ? e->budget_where : g->entry_file,
                         (unsigned long long)e->budget, t->key);
  } else if (status != LUA_OK) {
    if (status == LUA_ERRMEM || g->mem_refused) {
      t->error = xasprintf("%s: memory limit exceeded (%zu bytes per "
                           "translation, %zu per generation) while "
                           "translating %s",
                           g->entry_file, e->tmem, g->cap, t->key);
    } else {
      const char *m = lua_tostring(L, -1);
      t->error = with_key(m ? m : "unknown error", t->key);
    }
  } else if (e->out_err) {
    t->error = xasprintf("%s: %s while translating %s", g->entry_file,
                         e->out_err, t->key);
  }
  if (t->error)
    clear_output(t);
  return status;
}

/* What follows every translation or patch: the Lua state cleaned up. */
static void translation_end(amc_rules_engine_t *e, gen_t *g, int status) {
  lua_State *L = g->L;
  lua_settop(L, 0);
  /* Let this translation's objects go (the table is replaced at the next
   * translation start; dropping it here frees them now). */
  lua_pushboolean(L, 0);
  lua_rawseti(L, LUA_REGISTRYINDEX, g->ref_cache);
  /* The collector is stopped (see amc_rules_engine_load): a translation's
   * tables all die with it, so one full collection now and then is much
   * cheaper than incremental work during every translation. Allocation
   * failures still trigger Lua's emergency collection. */
  if (status == LUA_ERRMEM || g->mem_refused) {
    lua_gc(L, LUA_GCCOLLECT);
    g->gc_base = g->used;
  } else if (g->used > g->gc_base + GC_SLACK) {
    e->gc_due = 1; /* after the result has gone out: amc_rules_engine_settle */
  }
}

/* ------------------------------------------------------------------------ */

amc_rules_engine_t *amc_rules_engine_new(amc_store_t *store,
                                         const amc_settings_t *settings,
                                         const amc_rules_opts_t *opts) {
  amc_rules_engine_t *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  e->store = store;
  e->settings = settings;
  e->cap = opts && opts->memory_cap ? opts->memory_cap : DEFAULT_CAP;
  e->tmem = opts && opts->translation_memory ? opts->translation_memory
                                             : DEFAULT_TMEM;
  e->budget =
      opts && opts->cpu_budget_ms ? opts->cpu_budget_ms : DEFAULT_BUDGET;
  const char *bm =
      opts && opts->cpu_budget_ms ? NULL : getenv("AMC_RULES_CPU_BUDGET_MS");
  char *endp = NULL;
  unsigned long long v = bm && *bm ? strtoull(bm, &endp, 10) : 0;
  if (v > 0 && *endp == '\0') {
    e->budget = v;
  } else if (!(opts && opts->cpu_budget_ms)) {
#ifdef AMC_HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND) /* ~50x slower: keep profiles complete */
      e->budget *= 100;
#endif
  }
  const char *rd = opts ? opts->runtime_lua_dir : NULL;
  if (!rd) {
    rd = getenv("AMC_RUNTIME_LUA_DIR");
    if (rd && !*rd)
      rd = NULL;
  }
  e->runtime_dir = rd ? xstrdup(rd) : NULL;
  const char *pf = getenv("AMC_LUA_PROFILE");
  if (pf && *pf)
    e->prof = calloc(PROF_SLOTS, sizeof *e->prof);
  const char *pa = getenv("AMC_PATCH");
  e->patch_on = !(pa && strcmp(pa, "0") == 0);
  const char *pc = getenv("AMC_PATCH_CHECK");
  e->patch_check = pc && strcmp(pc, "1") == 0;
  return e;
}

void amc_rules_engine_free(amc_rules_engine_t *e) {
  if (!e)
    return;
  if (e->prof) {
    prof_report(e);
    free(e->prof);
  }
  gen_free(e->active);
  e->active = NULL;
  amc_rules_engine_set_memo(e, 0);
  frames_free(e);
  if (e->timer_tid)
    timer_delete(e->timer);
  free(e->runtime_dir);
  free(e->out_err);
  amc_buf_free(&e->import_stack);
  amc_buf_free(&e->scratch);
  amc_json_tape_free(&e->enc_tape);
  amc_json_memo_free(e->enc_memo);
  free(e->root_slots);
  free(e->adds);
  amc_buf_free(&e->root_calls);
  amc_buf_free(&e->root_vals);
  for (size_t i = 0; i < e->n_projs; i++) {
    free(e->projs[i].kind);
    free(e->projs[i].key);
    amc_json_projection_free(e->projs[i].p);
  }
  free(e->projs);
  amc_buf_free(&e->proj_buf);
  amc_buf_free(&e->proj_old);
  amc_buf_free(&e->patch_old);
  amc_strmap_clear(&e->check_last, free);
  free(e);
}

uint64_t amc_rules_engine_generation(const amc_rules_engine_t *e) {
  return e->active ? e->active->number : 0;
}

const char *amc_rules_engine_digest(const amc_rules_engine_t *e) {
  return e->active ? e->active->digest : "";
}

const char *amc_rules_engine_entry_file(const amc_rules_engine_t *e) {
  return e->active ? e->active->entry_file : NULL;
}

size_t amc_rules_engine_memory(const amc_rules_engine_t *e) {
  return e->active ? e->active->used : 0;
}

size_t amc_rules_engine_retained(const amc_rules_engine_t *e) {
  const gen_t *g = e->active;
  return g ? g->n_slabs * SLAB_BYTES + g->large_used : 0;
}

void amc_rules_engine_settle(amc_rules_engine_t *e) {
  if (!e)
    return;
  memo_settle(e);
  gen_t *g = e->active;
  if (e->gc_due && g) {
    lua_gc(g->L, LUA_GCCOLLECT);
    g->gc_base = g->used;
  }
  e->gc_due = 0;
  /* The next translation's slabs in memory now: a fresh huge page costs a
   * route change ~0.2 ms, and 6-9 ms on this project's test VMs (guest
   * memory backed by the host at first touch; docs/benchmarks.md). */
  if (g)
    amc_slab_region_prefault(g->region, PREFAULT_SLABS);
}

size_t amc_rules_engine_compact(amc_rules_engine_t *e) {
  memo_settle(e);
  e->gc_due = 0; /* collected below */
  gen_t *g = e->active;
  if (!g)
    return 0;
  lua_gc(g->L, LUA_GCCOLLECT);
  g->gc_base = g->used;
  size_t released = slabs_reclaim(g);
  /* Changes usually come after idle moments like this one: the next
   * translation's first slabs stay in memory (see _settle). */
  amc_slab_region_prefault(g->region, PREFAULT_SLABS);
  return released;
}
