/* rules_engine.h - runs the Lua rules: generations, sandbox, limits, reads.
 *
 * Generations. A generation is one lua_State holding one consistent set of
 * rule files: the runtime's own Lua library (rt.lua, validate.lua,
 * avi_schema.lua, embedded in the binary) and every rules/ **.lua file of a
 * directory. amc_rules_engine_load() builds a new generation from scratch:
 * it reads all files, loads every module (text chunks only, chunk names
 * "@rules/<path>"), finds the entry rule and checks it; only when all of
 * that succeeded does the new generation replace the active one. On any
 * failure the active generation (if any) stays, untouched and serving.
 * Each generation has a number (1, 2, ...) and a content digest (SHA-256
 * over the sorted (path, content) pairs of the rule files).
 *
 * Modules. `rules/<name>.lua` is module `<name>` (`lib/names` for
 * rules/lib/names.lua). Each module runs once per generation in its own
 * sandbox environment and must return a table; `import("<name>")` returns
 * another module of the same generation (loading it first if needed; an
 * import cycle is an error). The entry rule is the module with a
 * `translate` function; it must declare `api_version = 1` and
 * `kind = "Gateway"`, and there must be exactly one.
 *
 * Sandbox. Rules see only: assert, error, ipairs, next, pairs, pcall,
 * xpcall, select, tonumber, tostring, type, getmetatable, setmetatable
 * (refuses __gc), rawequal, rawget, rawlen, _VERSION, import, and
 * read-only `string` (no dump), `table`, `math` (no random/randomseed) and
 * `utf8`. No io, os, debug, package, require, load, dofile, loadfile,
 * collectgarbage, print, coroutine or rawset. Reading an undefined global or
 * assigning any global raises an error. getmetatable("") returns false (the
 * string metatable cannot be reached); the JSON array metatable is
 * read-only.
 *
 * Limits. Every translation runs with a CPU-time budget (the thread's CPU
 * clock, default 1000 ms) and a memory budget (bytes the VM may grow by
 * during the translation), inside a per-generation memory cap (a counting
 * allocator). Loading a generation has the same CPU-time budget. A rule's
 * pcall cannot swallow a limit error. Errors name the rule file and the
 * key: "rules/gateway.lua:12: CPU time budget exceeded (1000 ms) while
 * translating Gateway/ns/gw" (the line is where Lua was when the budget ran
 * out; an operation whose budget ran out while in C fails the same way,
 * naming the entry rule). The budget is enforced without a per-instruction
 * hook: a POSIX timer on the thread's CPU clock (timer_create with
 * SIGEV_THREAD_ID) delivers signal SIGRTMIN+5 to the calling thread when it
 * runs out, and the handler arms a count hook that raises the error. The
 * engine installs that signal's handler (SA_RESTART) on first use; the host
 * must not use SIGRTMIN+5 for anything else. If no timer can be made, a
 * count hook reads the CPU clock every 1000 VM instructions instead. Being
 * time, the budget is not deterministic to the instruction: keep it far
 * above what real translations take.
 *
 * Host functions given to rt.new (runtime/lua/rt.lua): get, list, hash,
 * base64_decode and ipv4 (rt.lua's functions of those names in C, same
 * result for every input; rt.lua uses them instead of its Lua copies),
 * null, array_mt, settings, sorts_objects (true: the engine sorts the
 * result's objects by type and name, so out:result() need not).
 *
 * Reads. The host functions behind rt.get / rt.list decode objects from the
 * store into fresh tables on every call (rules cannot change stored
 * objects), and record each read (deduplicated, sorted) in the translation:
 * gets with their name (also when nothing was found), lists with name NULL.
 * host.list(kind, ns, labels) takes an optional label selector (table of
 * label -> value, all must match metadata.labels) and filters in C.
 *
 * Output. translate() runs the entry rule on the key's object and checks
 * the result: { objects = { {type=, object=}, ... }, diagnostics = {...} };
 * every object must pass validate.object(type, object) and names must be
 * unique per type. Objects are encoded canonically (json.h) and sorted by
 * type then name; diagnostics keep their order. Any problem makes the whole
 * translation an error (t->error set, no objects). An object whose exact
 * (type, canonical bytes) already passed validate.object in this generation
 * is not validated again (the schema cannot have changed), and a C check
 * of the canonical bytes against avi_schema.lua compiled once per
 * generation (schema_proof.h) proves most objects valid without running
 * validate.lua; it only ever says "certainly valid", so anything else
 * still goes through validate.object, the authority for what is refused
 * and for the messages.
 *
 * Garbage collection: the collector is stopped while a generation serves;
 * the engine runs a full collection between translations once 32 MiB of
 * garbage may have piled up (and after a memory error). A translation's
 * tables all die when it ends, so this costs far less than incremental
 * collection during every translation; running out of the budget still
 * triggers Lua's emergency collection.
 *
 * Reads within one translation: a second rt.get/rt.list of the same object
 * returns the same table as the first (decoded once per translation).
 *
 * Profiling: with the environment variable AMC_LUA_PROFILE set, a count
 * hook samples which Lua function runs every 1000 VM instructions, and
 * amc_rules_engine_free prints the top ones on stderr (time spent inside C
 * library calls such as table.sort is not seen).
 *
 * Single-threaded (the loop thread). */
#ifndef AMC_RULES_ENGINE_H
#define AMC_RULES_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"
#include "store.h"
#include "translation.h"

typedef struct amc_rules_engine amc_rules_engine_t;

typedef struct {
  size_t memory_cap;         /* bytes per generation; 0: 256 MiB */
  size_t translation_memory; /* bytes a translation may add; 0: 64 MiB */
  /* Per translation and per load. 0: the environment variable
   * AMC_RULES_CPU_BUDGET_MS if set, else 1000 (100000 when running under
   * valgrind, which is ~50x slower). */
  uint64_t cpu_budget_ms;
  /* Development only: read rt.lua, validate.lua and avi_schema.lua from
   * this directory instead of the copies embedded in the binary. NULL: the
   * environment variable AMC_RUNTIME_LUA_DIR, else the embedded copies. */
  const char *runtime_lua_dir;
} amc_rules_opts_t;

/* `store` and `settings` are borrowed and must outlive the engine (settings
 * are read at every translation). `opts` may be NULL (defaults). */
amc_rules_engine_t *amc_rules_engine_new(amc_store_t *store,
                                         const amc_settings_t *settings,
                                         const amc_rules_opts_t *opts);
void amc_rules_engine_free(amc_rules_engine_t *e);

/* Builds a new generation from the *.lua files under `dir` (recursively,
 * hidden names skipped) and makes it active. Returns 0, or -1 with `err`
 * set (the previous generation, if any, stays active). */
int amc_rules_engine_load(amc_rules_engine_t *e, const char *dir, char *err,
                          size_t errlen);

/* The digest amc_rules_engine_load would give a generation built from `dir`
 * now (SHA-256 over the rule files' names and contents, 64 hex digits and
 * a NUL into `out`), without building one: a reload whose files did not
 * change needs no new VM. Returns 0, or -1 with `err` set (the directory
 * or a file cannot be read, or holds no rule file). */
int amc_rules_dir_digest(const char *dir, char out[65], char *err,
                         size_t errlen);

/* Translates the object kind/namespace/name (today kind is "Gateway").
 * Returns a translation (free with amc_translation_free); it has `error`
 * set when there is no active generation, the object is not in the store,
 * or the rules failed. Returns NULL only when out of memory. */
amc_translation_t *amc_rules_engine_translate(amc_rules_engine_t *e,
                                              const char *kind,
                                              const char *namespace_,
                                              const char *name);

/* Memo (off in a new engine; `amc run` turns it on unless
 * --incremental=false). rt.memo(ctx, inputs, key, fn, ...) in the rules
 * (runtime/lua/rt.lua; docs/rules-contract.md) runs fn once and keeps, per
 * translation key and memo key, what the call produced: its result, the
 * order of its out:get / out:add / diagnostic events, the (type, name,
 * checksum) of the objects it added, and its reads. The next translation
 * of the same translation key replays the entry instead of running fn
 * when the entry is still valid: nothing it read, none of `inputs` and not
 * the root object has changed since it was made (amc_rules_engine_changed
 * stamps what a change affects, by the same dependency rules as deps.h),
 * and its out:get answers are the same at this point of the translation
 * (checked in C against the Output's tables; the events are kept as
 * compact tagged bytes, the result as canonical JSON).
 * A replay records the entry's reads (exactly fn's: the root and the
 * inputs are not re-recorded, the translation read them itself), adds the
 * same diagnostics and adds the objects as unchanged objects
 * (translation.h: no body, the checksum of the body last produced), so
 * that a translation with replays differs from one without only in that.
 * Calls nest (a memoized fn may call rt.memo): an inner call has its own
 * entry, and whether it runs or replays, what it did (reads, events,
 * objects, inputs) is also recorded in the entries of the calls around
 * it, as if its fn had run inline; a replayed outer entry keeps its inner
 * entries (those still valid) for when the outer call runs again.
 * After a successful translation the key's entries are exactly those it
 * used, made or kept so; a failed one keeps the old ones.
 *
 * Memory: an entry is one byte string (result, events, object names and
 * checksums, reads) compressed against a dictionary per translation key
 * (~0.2 KB for a VirtualService route) plus 24 bytes; validity is checked
 * against a fixed table of 65536 stamps (256 KB), not a reverse index:
 * reads hash to slots, so a change may make an unrelated entry run again
 * (rarely), never replay a stale one.
 *
 * Whoever turns the memo on must report every store change with
 * amc_rules_engine_changed (the controller does), and must hand a
 * translation with unchanged objects only to a sink that holds those
 * objects with those checksums; otherwise translate again with
 * amc_rules_engine_translate_full, which runs every memoized call afresh
 * (and refreshes the entries). Returns 0, or -1 when out of memory. Turning
 * it off drops every entry. */
int amc_rules_engine_set_memo(amc_rules_engine_t *e, int on);

/* Patches (with the memo, for an entry rule that exports patch_context;
 * on in a new engine unless the environment has AMC_PATCH=0). A
 * translation with the memo also keeps what a later *patch* of its key
 * needs, none of it in Lua: the slots of the reads it made outside
 * memoized calls, its top-level rt.memo calls (subkey, fn by number, how
 * to make their arguments again), the plain argument values as JSON, and
 * when each of its objects was added (rt.lua: rt._root, rt._patch). When
 * the key is translated next and none of those reads changed, while some
 * of its top-level calls' entries went stale (at most 8), amc_rules_
 * engine_translate runs just those calls again, in order, with the
 * context patch_context(gateway, rt) makes and the kept arguments (inputs
 * read again from the store: the objects, or their projections for
 * projected lists) into a fresh Output whose out:get answers as the
 * translation's did at that call. If each
 * gives the same result, the same out:get answers, objects (by type and
 * name) and diagnostics, and the same reads as its old entry, the rest of
 * the translation would run exactly as before, and the translation
 * returned is a patch (translation.h `partial`): the objects those calls
 * added (the changed bodies, and unchanged ones for their replays), no
 * diagnostics and no reads (both are as last time). Otherwise the patch's
 * work is dropped and the key is translated as usual (what this asks of
 * the rules: docs/rules-contract.md "Patches"). Translations with
 * amc_rules_engine_translate_full never patch.
 *
 * AMC_PATCH_CHECK=1 (tests): after every patch the key is also translated
 * in full, and the result must equal the last translation with the
 * patch's objects put in (objects, checksums, diagnostics, reads);
 * otherwise the process aborts with both on stderr. */
int amc_rules_engine_set_patch(amc_rules_engine_t *e, int on);
/* A store change (as deps.h's amc_deps_affected takes it: the canonical
 * JSON before and after, NULL when absent): invalidates the memo entries
 * that read the object, a list containing it, or a filtered list on its
 * values before or after; when the object is a translation key's root and
 * is gone, that key's entries are freed. No-op without the memo. */
void amc_rules_engine_changed(amc_rules_engine_t *e, const char *kind,
                              const char *ns, const char *name,
                              const char *old_json, const char *new_json);
/* As amc_rules_engine_translate, but never replays a memo entry. */
amc_translation_t *amc_rules_engine_translate_full(amc_rules_engine_t *e,
                                                   const char *kind,
                                                   const char *ns,
                                                   const char *name);
typedef struct {
  size_t entries;        /* memo entries kept */
  size_t bytes;          /* their size (packed entries, their arrays and the
                            keys' dictionaries; not the fixed 256 KB table) */
  uint64_t hits, misses; /* replays and calls run, since the start */
  uint64_t patches;      /* translations that were patches */
  uint64_t declined;     /* patches tried and dropped (translated instead) */
} amc_rules_memo_stats_t;
void amc_rules_engine_memo_stats(const amc_rules_engine_t *e,
                                 amc_rules_memo_stats_t *st);

/* The active generation's number (0: none yet), digest (64 hex digits, ""
 * when none) and entry rule file ("rules/gateway.lua"). */
uint64_t amc_rules_engine_generation(const amc_rules_engine_t *e);
const char *amc_rules_engine_digest(const amc_rules_engine_t *e);
const char *amc_rules_engine_entry_file(const amc_rules_engine_t *e);

/* Bytes the active generation's VM holds now (its live objects plus the
 * garbage not yet collected: the collector runs only every so many
 * megabytes of garbage, see amc_rules_engine_compact). This is what the
 * memory cap and the per-translation budget count. */
size_t amc_rules_engine_memory(const amc_rules_engine_t *e);

/* Bytes the active generation holds: its small-block slabs
 * (including free blocks) and its large blocks. At least
 * amc_rules_engine_memory(), often much more after a burst of
 * translations, until amc_rules_engine_compact(). */
size_t amc_rules_engine_retained(const amc_rules_engine_t *e);

/* Does the work a translation leaves for later because its result does
 * not need it: packing the memo entries it made and, every so many
 * megabytes of garbage, a full collection; then it makes sure the memory
 * the next translation starts allocating from is faulted in (1 MiB of
 * the VM's slabs, util/slab_region.h). For the moment after the
 * result has gone out (the controller calls it once the sink has started
 * the sync), so that it is not in the time from a change to its first AVI
 * call. The next translation (and amc_rules_engine_compact, _changed,
 * _memo_stats) does it first when nobody did. */
void amc_rules_engine_settle(amc_rules_engine_t *e);

/* Runs a full collection of the active generation and gives the slabs
 * that hold no live object back (memory returns to the system a 2 MiB
 * chunk at a time, see util/slab_region.h; the caller may then
 * malloc_trim for the rest), keeping 1 MiB of slabs in memory for the
 * next translation. Returns the bytes given back. For idle moments (after
 * the initial pass or a burst of changes): it costs a walk of everything
 * live. Translations work as before afterwards; the memory cap and the
 * per-translation budget are unchanged. */
size_t amc_rules_engine_compact(amc_rules_engine_t *e);

#endif
