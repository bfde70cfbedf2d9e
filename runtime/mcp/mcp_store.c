/* mcp_store.c - MCP sink output -> object store (see mcp_store.h). */
#include "mcp/mcp_store.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"

void amc_mcp_store_init(amc_mcp_store_t *ms, amc_store_t *store) {
  memset(ms, 0, sizeof *ms);
  ms->store = store;
}

static void put(amc_mcp_store_t *ms, const char *kind,
                const amc_mcp_object_t *o) {
  int changed = 0;
  if (amc_store_put_json(ms->store, kind, o->ns, o->name, o->json, o->json_len,
                         o->resource_version, AMC_MCP_STORE_SOURCE,
                         &changed) < 0) {
    amc_log(AMC_ERROR, "mcp.store", AMC_S("kind", kind), AMC_S("ns", o->ns),
            AMC_S("name", o->name), AMC_S("detail", "put refused"));
    return;
  }
  ms->changes += changed != 0;
}

static int in_set(const amc_mcp_object_t *objs, size_t n, const char *ns,
                  const char *name) {
  /* objs are sorted by namespace/name: binary search */
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(objs[mid].ns, ns ? ns : "");
    if (!c)
      c = strcmp(objs[mid].name, name);
    if (!c)
      return 1;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

static void on_replace(void *ud, const char *kind, const amc_mcp_object_t *objs,
                       size_t n) {
  amc_mcp_store_t *ms = ud;
  /* deletions first, from a copy of the names (the list array is only valid
   * until the next change) */
  const amc_store_obj_t *const *list;
  size_t cnt = amc_store_list(ms->store, kind, NULL, &list);
  char **gone = calloc(cnt * 2 + 1, sizeof *gone);
  size_t ng = 0;
  for (size_t i = 0; i < cnt; i++) {
    const amc_store_obj_t *o = list[i];
    if (!o->source || strcmp(o->source, AMC_MCP_STORE_SOURCE) != 0)
      continue;
    if (!in_set(objs, n, o->namespace_, o->name)) {
      gone[ng * 2] = strdup(o->namespace_ ? o->namespace_ : "");
      gone[ng * 2 + 1] = strdup(o->name);
      ng++;
    }
  }
  for (size_t i = 0; i < ng; i++) {
    ms->changes +=
        amc_store_delete(ms->store, kind, gone[i * 2], gone[i * 2 + 1]) == 1;
    free(gone[i * 2]);
    free(gone[i * 2 + 1]);
  }
  free(gone);
  for (size_t i = 0; i < n; i++)
    put(ms, kind, &objs[i]);
}

static void on_upsert(void *ud, const char *kind, const amc_mcp_object_t *o) {
  put(ud, kind, o);
}

static void on_delete(void *ud, const char *kind, const char *ns,
                      const char *name) {
  amc_mcp_store_t *ms = ud;
  const amc_store_obj_t *o = amc_store_get(ms->store, kind, ns, name);
  if (o && o->source && strcmp(o->source, AMC_MCP_STORE_SOURCE) == 0)
    ms->changes += amc_store_delete(ms->store, kind, ns, name) == 1;
}

int amc_mcp_store_synced(const amc_mcp_store_t *ms);

static void on_synced(void *ud, const char *kind) {
  amc_mcp_store_t *ms = ud;
  const amc_pb_kind_t *k = amc_pb_kind_by_name(kind);
  if (k)
    ms->synced |= 1u << (k - amc_pb_kinds);
  if (amc_mcp_store_synced(ms) && !ms->synced_all_called) {
    ms->synced_all_called = 1;
    if (ms->on_synced_all)
      ms->on_synced_all(ms->data);
  }
}

static void on_event(void *ud, const char *event, const char *detail) {
  amc_mcp_store_t *ms = ud;
  if (ms->on_event)
    ms->on_event(ms->data, event, detail);
}

static const amc_mcp_ops_t ops = {on_replace, on_upsert, on_delete, on_synced,
                                  on_event};

const amc_mcp_ops_t *amc_mcp_store_ops(void) {
  return &ops;
}

int amc_mcp_store_synced(const amc_mcp_store_t *ms) {
  return ms->synced == (1u << amc_pb_nkinds) - 1;
}
