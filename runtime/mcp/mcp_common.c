/* mcp_common.c - resource conversion and backoff for the MCP sinks. */
#include "mcp/mcp_common.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int amc_mcp_conv_init(amc_mcp_conv_t *c) {
  memset(c, 0, sizeof *c);
  c->L = luaL_newstate();
  if (!c->L)
    return -1;
  amc_pb_lua_array_mt(c->L);
  lua_pop(c->L, 1);
  return 0;
}

void amc_mcp_conv_free(amc_mcp_conv_t *c) {
  if (c->L)
    lua_close(c->L);
  amc_buf_free(&c->warn);
  c->L = NULL;
}

int amc_mcp_conv_resource(amc_mcp_conv_t *c, const uint8_t *data, size_t len,
                          const amc_pb_kind_t *want, int simple_lb_legacy,
                          amc_mcp_item_t *out, char *err, size_t errlen) {
  amc_pb_lua_opts_t o = {.simple_lb_legacy = simple_lb_legacy,
                         .warn = &c->warn};
  memset(out, 0, sizeof *out);
  int top = lua_gettop(c->L);
  if (amc_pb_lua_push_mcp_resource(c->L, data, len, want, &o, &out->kind,
                                   out->ns, out->name, err, errlen) < 0)
    return -1;
  lua_getfield(c->L, -1, "metadata");
  lua_getfield(c->L, -1, "resourceVersion");
  if (lua_type(c->L, -1) == LUA_TSTRING)
    out->resource_version = strdup(lua_tostring(c->L, -1));
  lua_pop(c->L, 2);
  amc_buf_t b = AMC_BUF_INIT;
  char jerr[256];
  int rc = amc_json_encode(c->L, -1, &b, jerr, sizeof jerr);
  lua_settop(c->L, top);
  if (rc < 0) {
    snprintf(err, errlen, "%s/%s: %s", out->ns, out->name, jerr);
    amc_buf_free(&b);
    amc_mcp_item_clear(out);
    return -1;
  }
  out->json_len = b.len;
  out->json = amc_buf_steal(&b);
  return 0;
}

void amc_mcp_item_clear(amc_mcp_item_t *item) {
  free(item->json);
  free(item->resource_version);
  item->json = item->resource_version = NULL;
}

void amc_mcp_items_free(amc_mcp_item_t *items, size_t n) {
  for (size_t i = 0; items && i < n; i++)
    amc_mcp_item_clear(&items[i]);
  free(items);
}

amc_mcp_object_t amc_mcp_item_object(const amc_mcp_item_t *it) {
  return (amc_mcp_object_t){it->ns, it->name, it->json, it->json_len,
                            it->resource_version};
}

static int item_cmp(const void *a, const void *b) {
  const amc_mcp_item_t *x = a, *y = b;
  int r = strcmp(x->ns, y->ns);
  return r ? r : strcmp(x->name, y->name);
}

void amc_mcp_items_sort(amc_mcp_item_t *items, size_t n) {
  if (n > 1)
    qsort(items, n, sizeof *items, item_cmp);
}

const amc_mcp_item_t *amc_mcp_items_dup(const amc_mcp_item_t *items, size_t n) {
  for (size_t i = 1; i < n; i++)
    if (item_cmp(&items[i - 1], &items[i]) == 0)
      return &items[i];
  return NULL;
}

void amc_mcp_backoff_init(amc_mcp_backoff_t *b, uint64_t initial,
                          uint64_t max) {
  b->initial = initial ? initial : 500;
  b->max = max ? max : 30000;
  if (b->max < b->initial)
    b->max = b->initial;
  b->cur = b->initial;
  b->rnd = uv_hrtime() | 1;
}

uint64_t amc_mcp_backoff_next(amc_mcp_backoff_t *b) {
  uint64_t d = b->cur;
  b->cur = b->cur * 2 > b->max ? b->max : b->cur * 2;
  /* xorshift64: jitter only, not security relevant */
  b->rnd ^= b->rnd << 13;
  b->rnd ^= b->rnd >> 7;
  b->rnd ^= b->rnd << 17;
  uint64_t half = d / 2;
  return half + (half ? b->rnd % (d - half + 1) : 0);
}

void amc_mcp_backoff_reset(amc_mcp_backoff_t *b) {
  b->cur = b->initial;
}
