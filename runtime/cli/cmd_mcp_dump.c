/* cmd_mcp_dump.c - `amc mcp-dump`: stream Istio config from an MCP server
 * (Galley's legacy MCP, or istiod's MCP-over-xDS with --xds) and print what
 * a store would receive, one JSON object per line on stdout:
 *   {"event":"upsert","kind":K,"namespace":NS,"name":N,"object":{...}}
 *   {"event":"delete","kind":K,"namespace":NS,"name":N}
 *   {"event":"replace","kind":K,"count":N}   (after the upserts/deletes)
 *   {"event":"synced","kind":K}
 *   {"event":"connected"|"disconnected"|"nack"|"warning","detail":"..."}
 * Full-state pushes are diffed against what was printed before, so upsert
 * means "new or changed" and delete "gone". With --once it exits 0 after the
 * first complete state of every kind (1 if --timeout-ms passes first). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "mcp/mcp_sink.h"
#include "util/buf.h"
#include "util/log.h"

typedef struct {
  char *kind, *ns, *name, *json;
  int seen;
} entry_t;

typedef struct {
  uv_loop_t *loop;
  amc_mcp_sink_t *sink;
  uv_timer_t timer;
  uv_signal_t sigint, sigterm;
  entry_t *e;
  size_t n, cap;
  int once, synced_kinds[16], rc, closing;
} dump_t;

static void put_str(amc_buf_t *b, const char *s) {
  amc_buf_putc(b, '"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      amc_buf_printf(b, "\\%c", ch);
    else if (ch < 0x20)
      amc_buf_printf(b, "\\u%04x", ch);
    else
      amc_buf_putc(b, (char)ch);
  }
  amc_buf_putc(b, '"');
}

static void emit(amc_buf_t *b) {
  amc_buf_putc(b, '\n');
  fwrite(b->data, 1, b->len, stdout);
  fflush(stdout);
  amc_buf_free(b);
}

static void line_head(amc_buf_t *b, const char *event, const char *kind,
                      const char *ns, const char *name) {
  amc_buf_puts(b, "{\"event\":");
  put_str(b, event);
  if (kind) {
    amc_buf_puts(b, ",\"kind\":");
    put_str(b, kind);
  }
  if (ns) {
    amc_buf_puts(b, ",\"namespace\":");
    put_str(b, ns);
    amc_buf_puts(b, ",\"name\":");
    put_str(b, name);
  }
}

static entry_t *find(dump_t *d, const char *kind, const char *ns,
                     const char *name) {
  for (size_t i = 0; i < d->n; i++)
    if (!strcmp(d->e[i].kind, kind) && !strcmp(d->e[i].ns, ns) &&
        !strcmp(d->e[i].name, name))
      return &d->e[i];
  return NULL;
}

static void upsert(dump_t *d, const char *kind, const amc_mcp_object_t *o) {
  entry_t *e = find(d, kind, o->ns, o->name);
  if (e) {
    e->seen = 1;
    if (!strcmp(e->json, o->json))
      return;
    free(e->json);
    e->json = strdup(o->json);
  } else {
    if (d->n == d->cap) {
      d->cap = d->cap ? d->cap * 2 : 16;
      d->e = realloc(d->e, d->cap * sizeof *d->e);
    }
    d->e[d->n++] = (entry_t){strdup(kind), strdup(o->ns), strdup(o->name),
                             strdup(o->json), 1};
  }
  amc_buf_t b = AMC_BUF_INIT;
  line_head(&b, "upsert", kind, o->ns, o->name);
  amc_buf_puts(&b, ",\"object\":");
  amc_buf_append(&b, o->json, o->json_len);
  amc_buf_putc(&b, '}');
  emit(&b);
}

static void drop(dump_t *d, size_t i) {
  amc_buf_t b = AMC_BUF_INIT;
  line_head(&b, "delete", d->e[i].kind, d->e[i].ns, d->e[i].name);
  amc_buf_putc(&b, '}');
  emit(&b);
  free(d->e[i].kind);
  free(d->e[i].ns);
  free(d->e[i].name);
  free(d->e[i].json);
  d->e[i] = d->e[--d->n];
}

static void on_replace(void *ud, const char *kind, const amc_mcp_object_t *o,
                       size_t n) {
  dump_t *d = ud;
  for (size_t i = 0; i < d->n; i++)
    if (!strcmp(d->e[i].kind, kind))
      d->e[i].seen = 0;
  for (size_t i = 0; i < n; i++)
    upsert(d, kind, &o[i]);
  /* deletions in a stable order: by namespace/name */
  for (;;) {
    size_t best = d->n;
    for (size_t i = 0; i < d->n; i++) {
      if (strcmp(d->e[i].kind, kind) || d->e[i].seen)
        continue;
      if (best == d->n || strcmp(d->e[i].ns, d->e[best].ns) < 0 ||
          (!strcmp(d->e[i].ns, d->e[best].ns) &&
           strcmp(d->e[i].name, d->e[best].name) < 0))
        best = i;
    }
    if (best == d->n)
      break;
    drop(d, best);
  }
  amc_buf_t b = AMC_BUF_INIT;
  line_head(&b, "replace", kind, NULL, NULL);
  amc_buf_printf(&b, ",\"count\":%zu}", n);
  emit(&b);
}

static void on_upsert(void *ud, const char *kind, const amc_mcp_object_t *o) {
  upsert(ud, kind, o);
}

static void on_delete(void *ud, const char *kind, const char *ns,
                      const char *name) {
  dump_t *d = ud;
  for (size_t i = 0; i < d->n; i++)
    if (!strcmp(d->e[i].kind, kind) && !strcmp(d->e[i].ns, ns) &&
        !strcmp(d->e[i].name, name)) {
      drop(d, i);
      return;
    }
}

static void on_closed(void *ud) {
  dump_t *d = ud;
  uv_close((uv_handle_t *)&d->timer, NULL);
  uv_close((uv_handle_t *)&d->sigint, NULL);
  uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static void finish(dump_t *d, int rc) {
  if (d->closing)
    return;
  d->closing = 1;
  d->rc = rc;
  amc_mcp_sink_close(d->sink, on_closed);
}

static void on_synced(void *ud, const char *kind) {
  dump_t *d = ud;
  amc_buf_t b = AMC_BUF_INIT;
  line_head(&b, "synced", kind, NULL, NULL);
  amc_buf_putc(&b, '}');
  emit(&b);
  const amc_pb_kind_t *k = amc_pb_kind_by_name(kind);
  if (k)
    d->synced_kinds[k - amc_pb_kinds] = 1;
  int all = 1;
  for (size_t i = 0; i < amc_pb_nkinds; i++)
    all &= d->synced_kinds[i];
  if (d->once && all)
    finish(d, AMC_EXIT_OK);
}

static void on_event(void *ud, const char *event, const char *detail) {
  amc_buf_t b = AMC_BUF_INIT;
  line_head(&b, event, NULL, NULL, NULL);
  amc_buf_puts(&b, ",\"detail\":");
  put_str(&b, detail);
  amc_buf_putc(&b, '}');
  emit(&b);
}

static void on_timeout(uv_timer_t *t) {
  fprintf(stderr, "amc mcp-dump: no complete state within the timeout\n");
  finish(t->data, AMC_EXIT_FAIL);
}

static void on_signal(uv_signal_t *s, int signum) {
  finish(s->data, 0);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: amc mcp-dump [--mcp-url URL] [--xds] [--once] [options]\n"
          "  --mcp-url URL        mcp://host:port (Galley), xds://host:port "
          "(istiod h2c),\n"
          "                       xdss://host:port (istiod TLS), or "
          "http(s)://host:port;\n"
          "                       default: $MCP_URL\n"
          "  --xds                MCP over xDS (istiod) for http(s):// URLs\n"
          "  --delta              xDS: DeltaAggregatedResources (implies "
          "--xds)\n"
          "  --once               exit after the first complete state\n"
          "  --timeout-ms N       with --once: give up after N ms (exit 1)\n"
          "  --ca-file FILE       TLS trust roots (istio-ca-root-cert)\n"
          "  --server-name NAME   TLS name to verify (e.g. "
          "istiod.istio-system.svc)\n"
          "  --token-file FILE    bearer token (audience istio-ca)\n"
          "  --namespace NS       xDS node NAMESPACE (default istio-system)\n"
          "  --node-id ID         node / sink id\n"
          "  --backoff-ms N       initial reconnect delay (default 500)\n"
          "  --keepalive-ms N     PING interval (default 30000; istiod refuses "
          "< 15000)\n"
          "  --keepalive-timeout-ms N  PING answer deadline (default 10000)\n"
          "  --connect-timeout-ms N    TCP+TLS+SETTINGS deadline (default "
          "10000)\n"
          "  --insecure-skip-verify  do not verify the server certificate\n");
}

int amc_cmd_mcp_dump(int argc, char **argv) {
  amc_mcp_options_t o = {.url = getenv("MCP_URL")};
  int xds = 0, once = 0;
  uint64_t timeout = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(flag) (!strcmp(a, flag) && v && (i++, 1))
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return AMC_EXIT_OK;
    } else if (!strcmp(a, "--xds")) {
      xds = 1;
    } else if (!strcmp(a, "--delta")) {
      o.delta = 1;
      xds = 1;
    } else if (!strcmp(a, "--once")) {
      once = 1;
    } else if (!strcmp(a, "--insecure-skip-verify")) {
      o.insecure_skip_verify = 1;
    } else if (ARG("--mcp-url")) {
      o.url = v;
    } else if (ARG("--ca-file")) {
      o.ca_file = v;
    } else if (ARG("--server-name")) {
      o.server_name = v;
    } else if (ARG("--token-file")) {
      o.token_file = v;
    } else if (ARG("--namespace")) {
      o.node_namespace = v;
    } else if (ARG("--node-id")) {
      o.node_id = v;
    } else if (ARG("--backoff-ms")) {
      o.backoff_initial_ms = strtoull(v, NULL, 10);
    } else if (ARG("--keepalive-ms")) {
      o.keepalive_ms = strtoull(v, NULL, 10);
    } else if (ARG("--keepalive-timeout-ms")) {
      o.keepalive_timeout_ms = strtoull(v, NULL, 10);
    } else if (ARG("--connect-timeout-ms")) {
      o.connect_timeout_ms = strtoull(v, NULL, 10);
    } else if (ARG("--timeout-ms")) {
      timeout = strtoull(v, NULL, 10);
    } else {
      fprintf(stderr, "amc mcp-dump: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return AMC_EXIT_USAGE;
    }
#undef ARG
  }
  if (!o.url) {
    fprintf(stderr, "amc mcp-dump: --mcp-url (or MCP_URL) is required\n");
    return AMC_EXIT_USAGE;
  }
  char grpc_url[512], uerr[300];
  amc_mcp_mode_t mode;
  if (amc_mcp_parse_url(o.url, xds ? AMC_MCP_XDS : AMC_MCP_LEGACY, &mode,
                        grpc_url, sizeof grpc_url, uerr, sizeof uerr) < 0) {
    fprintf(stderr, "amc mcp-dump: %s\n", uerr);
    return AMC_EXIT_USAGE;
  }
  if (xds)
    mode = AMC_MCP_XDS;
  o.url = grpc_url;
  dump_t d = {.loop = uv_default_loop(), .once = once};
  amc_mcp_ops_t ops = {on_replace, on_upsert, on_delete, on_synced, on_event};
  char err[300];
  uv_timer_init(d.loop, &d.timer);
  d.timer.data = &d;
  uv_signal_init(d.loop, &d.sigint);
  uv_signal_init(d.loop, &d.sigterm);
  d.sigint.data = d.sigterm.data = &d;
  uv_signal_start(&d.sigint, on_signal, SIGINT);
  uv_signal_start(&d.sigterm, on_signal, SIGTERM);
  d.sink = amc_mcp_sink_start(d.loop, mode, &o, &ops, &d, err, sizeof err);
  if (!d.sink) {
    fprintf(stderr, "amc mcp-dump: %s\n", err);
    on_closed(&d);
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    return AMC_EXIT_USAGE;
  }
  if (once && timeout)
    uv_timer_start(&d.timer, on_timeout, timeout, 0);
  uv_run(d.loop, UV_RUN_DEFAULT);
  uv_loop_close(d.loop);
  for (size_t i = 0; i < d.n; i++) {
    free(d.e[i].kind);
    free(d.e[i].ns);
    free(d.e[i].name);
    free(d.e[i].json);
  }
  free(d.e);
  return d.rc;
}
