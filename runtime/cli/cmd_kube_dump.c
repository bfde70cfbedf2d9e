/* cmd_kube_dump.c - `amc kube-dump`: runs the Kubernetes source alone and
 * prints what it delivers, one JSON object per line on stdout:
 *
 *   {"event":"upsert","kind":"Service","namespace":"ns","name":"a","rv":"7"}
 *   {"event":"delete","kind":"Service","namespace":"ns","name":"a"}
 *   {"event":"relisted","kind":"Service","items":3,"deleted":1}
 *   {"event":"synced"}                       every resource listed once
 *   {"event":"leading","identity":"a"}       with --lease-name
 *   {"event":"stopped_leading","identity":"a"}
 *   {"event":"status","kind":"Gateway",...,"result":"written"|"unchanged"}
 *   {"event":"stats",...}                    at exit
 *
 * A debugging aid and the driver of the Kubernetes integration tests. */
#include "cli/cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <lauxlib.h>
#include <lualib.h>

#include "http.h"
#include "kube/client.h"
#include "kube/kjson.h"
#include "kube/kube_source.h"
#include "kube/lease.h"
#include "kube/status.h"
#include "store.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/strmap.h"

typedef struct {
  uv_loop_t *loop;
  amc_http_t *http;
  amc_kube_client_t *client;
  amc_kube_source_t *src;
  amc_lease_t *lease;
  amc_kube_status_writer_t *status;
  uv_signal_t sigterm, sigint;
  uv_timer_t status_timer;
  int once;
  int write_status;
  const char *status_error; /* write Programmed=False with this message */
  int stopping;
  int exit_code;
  int synced;
  int leading;
  amc_strmap_t istio; /* set of "Kind/ns/name" of Gateways and VSs */
  amc_store_t *store; /* fed as `amc run` feeds it */
  lua_State *L;
} dump_t;

static void emit_line(amc_buf_t *b) {
  amc_buf_putc(b, '\n');
  fwrite(b->data, 1, b->len, stdout);
  fflush(stdout);
  amc_buf_free(b);
}

static void kv(amc_buf_t *b, const char *k, const char *v) {
  if (!v || !*v)
    return;
  amc_buf_printf(b, ",\"%s\":", k);
  amc_kjson_quote(b, v);
}

static void on_upsert(void *data, const char *kind, const char *ns,
                      const char *name, const char *json, size_t len) {
  dump_t *d = data;
  amc_buf_t b = AMC_BUF_INIT;
  amc_kjson_t obj, v;
  char *rv = NULL, *labels = NULL;
  if (amc_kjson_parse(json, len, &obj) == 0) {
    if (amc_kjson_path(obj, "metadata.resourceVersion", &v) == 0)
      rv = amc_kjson_strdup(v);
    if (amc_kjson_path(obj, "metadata.labels", &v) == 0)
      labels = strndup(v.p, v.n);
  }
  int changed = 0;
  char err[256];
  int put =
      amc_kube_store_put(d->store, d->L, json, len, &changed, err, sizeof err);
  amc_buf_puts(&b, "{\"event\":\"upsert\"");
  kv(&b, "kind", kind);
  kv(&b, "namespace", ns);
  kv(&b, "name", name);
  kv(&b, "rv", rv);
  if (put != 0)
    kv(&b, "store_error", err);
  else
    amc_buf_printf(&b, ",\"changed\":%s", changed ? "true" : "false");
  if (labels)
    amc_buf_printf(&b, ",\"labels\":%s", labels);
  amc_buf_putc(&b, '}');
  emit_line(&b);
  free(rv);
  free(labels);
  if (!strcmp(kind, "Gateway") || !strcmp(kind, "VirtualService")) {
    amc_buf_printf(&b, "%s/%s/%s", kind, ns, name);
    amc_strmap_put(&d->istio, b.data, NULL, NULL);
    amc_buf_free(&b);
  }
}

static void on_remove(void *data, const char *kind, const char *ns,
                      const char *name) {
  dump_t *d = data;
  amc_buf_t b = AMC_BUF_INIT;
  amc_store_delete(d->store, kind, *ns ? ns : NULL, name);
  amc_buf_puts(&b, "{\"event\":\"delete\"");
  kv(&b, "kind", kind);
  kv(&b, "namespace", ns);
  kv(&b, "name", name);
  amc_buf_putc(&b, '}');
  emit_line(&b);
  amc_buf_printf(&b, "%s/%s/%s", kind, ns, name);
  amc_strmap_del(&d->istio, b.data);
  amc_buf_free(&b);
}

static void on_relisted(void *data, const char *kind, size_t items,
                        size_t deleted) {
  (void)data;
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_puts(&b, "{\"event\":\"relisted\"");
  kv(&b, "kind", kind);
  amc_buf_printf(&b, ",\"items\":%zu,\"deleted\":%zu}", items, deleted);
  emit_line(&b);
}

static void stop_all(dump_t *d);

static void on_status_done(void *data, const char *kind, const char *ns,
                           const char *name, int result) {
  (void)data;
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_puts(&b, "{\"event\":\"status\"");
  kv(&b, "kind", kind);
  kv(&b, "namespace", ns);
  kv(&b, "name", name);
  kv(&b, "result",
     result == AMC_STATUS_WRITTEN     ? "written"
     : result == AMC_STATUS_UNCHANGED ? "unchanged"
     : result == AMC_STATUS_SKIPPED   ? "skipped"
                                      : "failed");
  amc_buf_putc(&b, '}');
  emit_line(&b);
}

static int write_status(const char *key, void *value, void *data) {
  dump_t *d = data;
  (void)value;
  char *k = strdup(key);
  char *ns = strchr(k, '/');
  *ns++ = 0;
  char *name = strchr(ns, '/');
  *name++ = 0;
  amc_kube_status_t st = {.accepted = 1,
                          .programmed = d->status_error == NULL,
                          .programmed_message = d->status_error};
  amc_kube_status_write(d->status, k, ns, name, &st);
  free(k);
  return 0;
}

/* Writes Accepted/Programmed=True on every Gateway and VirtualService, as
 * `amc run` does after a successful sync. The writer itself refuses
 * ("skipped") unless this replica leads. */
static void write_statuses(dump_t *d) {
  if (!d->write_status || !d->synced)
    return;
  amc_strmap_foreach(&d->istio, write_status, d);
}

static void status_tick(uv_timer_t *t) {
  write_statuses(t->data);
}

static void on_synced(void *data) {
  dump_t *d = data;
  d->synced = 1;
  amc_kube_status_writer_set_version(d->status,
                                     amc_kube_source_istio_version(d->src));
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_puts(&b, "{\"event\":\"synced\"");
  kv(&b, "istio_version", amc_kube_source_istio_version(d->src));
  amc_buf_putc(&b, '}');
  emit_line(&b);
  if (d->once) {
    stop_all(d);
    return;
  }
  if (d->write_status)
    uv_timer_start(&d->status_timer, status_tick, 0, 500);
}

static void on_leading(void *data, int leading) {
  dump_t *d = data;
  d->leading = leading;
  amc_kube_status_writer_enable(d->status, leading);
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_printf(&b, "{\"event\":\"%s\"",
                 leading ? "leading" : "stopped_leading");
  kv(&b, "identity", amc_lease_identity(d->lease));
  amc_buf_putc(&b, '}');
  emit_line(&b);
}

static void print_stats(dump_t *d) {
  amc_kube_source_stats_t s;
  amc_kube_source_stats(d->src, &s);
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_printf(&b, "{\"event\":\"store\",\"objects\":%zu}",
                 amc_store_count(d->store, NULL));
  emit_line(&b);
  amc_buf_printf(&b,
                 "{\"event\":\"stats\",\"reflectors\":%u,\"synced\":%u,"
                 "\"lists\":%u,\"list_failures\":%u,\"relists_410\":%u,"
                 "\"watches\":%u,\"watch_restarts\":%u,\"watch_errors\":%u,"
                 "\"events\":%u,\"bookmarks\":%u,\"unauthorized\":%u,"
                 "\"token_reads\":%u}",
                 s.reflectors, s.synced, s.lists, s.list_failures,
                 s.relists_410, s.watches, s.watch_restarts, s.watch_errors,
                 s.events, s.bookmarks, s.unauthorized, s.token_reads);
  emit_line(&b);
}

static void http_closed(void *data) {
  (void)data;
}

static void source_closed(void *data) {
  dump_t *d = data;
  d->src = NULL;
  if (d->status)
    amc_kube_status_writer_free(d->status);
  d->status = NULL;
  amc_kube_client_free(d->client);
  d->client = NULL;
  amc_http_close(d->http, http_closed, d);
}

static void lease_stopped(void *data) {
  dump_t *d = data;
  d->lease = NULL;
  print_stats(d);
  amc_kube_source_stop(d->src, source_closed, d);
}

static void stop_all(dump_t *d) {
  if (d->stopping)
    return;
  d->stopping = 1;
  uv_close((uv_handle_t *)&d->sigterm, NULL);
  uv_close((uv_handle_t *)&d->sigint, NULL);
  uv_close((uv_handle_t *)&d->status_timer, NULL);
  amc_kube_status_writer_cancel(d->status);
  if (d->lease) {
    amc_lease_stop(d->lease, lease_stopped, d); /* releases if leader */
    return;
  }
  lease_stopped(d);
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)signum;
  stop_all(s->data);
}

static char **split(const char *s) {
  if (!s)
    return NULL;
  size_t n = 1;
  for (const char *p = s; *p; p++)
    n += *p == ',';
  char **out = calloc(n + 1, sizeof *out);
  char *copy = strdup(s), *save = NULL;
  size_t i = 0;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
    out[i++] = strdup(t);
  free(copy);
  return out;
}

static void free_split(char **l) {
  if (!l)
    return;
  for (char **p = l; *p; p++)
    free(*p);
  free(l);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: amc kube-dump [--kubeconfig FILE] [--context NAME] "
          "[--in-cluster]\n"
          "         [--once] [--resources LIST] [--namespaces LIST]\n"
          "         [--exclude-namespaces LIST] [--label-selector SEL]\n"
          "         [--secret-namespaces LIST] [--page-limit N]\n"
          "         [--watch-timeout S] [--backoff-ms MS]\n"
          "         [--lease-name NAME [--lease-namespace NS] [--identity ID]\n"
          "          [--lease-duration S] [--renew-deadline S] "
          "[--retry-period S]]\n"
          "         [--write-status] [--status-error MSG] [--events]\n"
          "Runs the Kubernetes source and prints what it delivers as JSON "
          "lines.\n");
}

int amc_cmd_kube_dump(int argc, char **argv) {
  const char *kubeconfig = NULL, *context = NULL, *resources = NULL;
  const char *namespaces = NULL, *exclude = NULL, *selector = NULL;
  const char *secret_ns = NULL, *lease_name = NULL, *lease_ns = NULL;
  const char *identity = NULL, *status_error = NULL;
  int in_cluster = 0, once = 0, write_status = 0, events = 0;
  unsigned page_limit = 0, watch_timeout = 0;
  unsigned long backoff_ms = 0;
  double lease_duration = 15, renew_deadline = 10, retry_period = 2;
  enum {
    O_KC = 1,
    O_CTX,
    O_INC,
    O_ONCE,
    O_RES,
    O_NS,
    O_XNS,
    O_SEL,
    O_SNS,
    O_PAGE,
    O_WT,
    O_BO,
    O_LN,
    O_LNS,
    O_ID,
    O_LD,
    O_RD,
    O_RP,
    O_WS,
    O_SE,
    O_EV,
    O_HELP
  };
  static const struct option opts[] = {
      {"kubeconfig", required_argument, 0, O_KC},
      {"context", required_argument, 0, O_CTX},
      {"in-cluster", no_argument, 0, O_INC},
      {"once", no_argument, 0, O_ONCE},
      {"resources", required_argument, 0, O_RES},
      {"namespaces", required_argument, 0, O_NS},
      {"exclude-namespaces", required_argument, 0, O_XNS},
      {"label-selector", required_argument, 0, O_SEL},
      {"secret-namespaces", required_argument, 0, O_SNS},
      {"page-limit", required_argument, 0, O_PAGE},
      {"watch-timeout", required_argument, 0, O_WT},
      {"backoff-ms", required_argument, 0, O_BO},
      {"lease-name", required_argument, 0, O_LN},
      {"lease-namespace", required_argument, 0, O_LNS},
      {"identity", required_argument, 0, O_ID},
      {"lease-duration", required_argument, 0, O_LD},
      {"renew-deadline", required_argument, 0, O_RD},
      {"retry-period", required_argument, 0, O_RP},
      {"write-status", no_argument, 0, O_WS},
      {"status-error", required_argument, 0, O_SE},
      {"events", no_argument, 0, O_EV},
      {"help", no_argument, 0, O_HELP},
      {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case O_KC:
      kubeconfig = optarg;
      break;
    case O_CTX:
      context = optarg;
      break;
    case O_INC:
      in_cluster = 1;
      break;
    case O_ONCE:
      once = 1;
      break;
    case O_RES:
      resources = optarg;
      break;
    case O_NS:
      namespaces = optarg;
      break;
    case O_XNS:
      exclude = optarg;
      break;
    case O_SEL:
      selector = optarg;
      break;
    case O_SNS:
      secret_ns = optarg;
      break;
    case O_PAGE:
      page_limit = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case O_WT:
      watch_timeout = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case O_BO:
      backoff_ms = strtoul(optarg, NULL, 10);
      break;
    case O_LN:
      lease_name = optarg;
      break;
    case O_LNS:
      lease_ns = optarg;
      break;
    case O_ID:
      identity = optarg;
      break;
    case O_LD:
      lease_duration = strtod(optarg, NULL);
      break;
    case O_RD:
      renew_deadline = strtod(optarg, NULL);
      break;
    case O_RP:
      retry_period = strtod(optarg, NULL);
      break;
    case O_WS:
      write_status = 1;
      break;
    case O_SE:
      status_error = optarg;
      write_status = 1;
      break;
    case O_EV:
      events = 1;
      break;
    case O_HELP:
      usage(stdout);
      return AMC_EXIT_OK;
    default:
      usage(stderr);
      return AMC_EXIT_USAGE;
    }
  }
  const char *lvl = getenv("AMC_LOG_LEVEL");
  amc_log_init(lvl && amc_log_level_parse(lvl) >= 0
                   ? (amc_log_level_t)amc_log_level_parse(lvl)
                   : AMC_INFO,
               AMC_LOG_LOGFMT, stderr);
  unsigned res_bits = 0;
  if (resources && amc_kube_resources_parse(resources, &res_bits) != 0) {
    fprintf(stderr, "amc kube-dump: --resources: unknown resource in '%s'\n",
            resources);
    return AMC_EXIT_USAGE;
  }
  amc_kubeconfig_t cfg;
  char err[512];
  int rc = in_cluster ? amc_kubeconfig_in_cluster(NULL, &cfg, err, sizeof err)
                      : amc_kubeconfig_load(kubeconfig, context, &cfg, err,
                                            sizeof err);
  if (rc != 0) {
    fprintf(stderr, "amc kube-dump: %s\n", err);
    amc_kubeconfig_free(&cfg);
    return AMC_EXIT_USAGE;
  }
  signal(SIGPIPE, SIG_IGN);
  dump_t d = {0};
  d.loop = uv_default_loop();
  d.once = once;
  d.write_status = write_status;
  d.status_error = status_error;
  d.store = amc_store_new();
  d.L = luaL_newstate();
  d.http = amc_http_new(d.loop);
  d.client = d.http ? amc_kube_client_new(d.loop, d.http, &cfg) : NULL;
  if (!d.client) {
    fprintf(stderr, "amc kube-dump: cannot create the HTTP client\n");
    amc_kubeconfig_free(&cfg);
    amc_store_free(d.store);
    lua_close(d.L);
    return AMC_EXIT_FAIL;
  }
  char **ns_inc = split(namespaces), **ns_exc = split(exclude);
  char **sec_ns = split(secret_ns);
  amc_kube_source_opts_t so = {
      .resources = res_bits,
      .ns_include = (const char *const *)ns_inc,
      .ns_exclude = (const char *const *)ns_exc,
      .istio_label_selector = selector,
      .secret_namespaces = (const char *const *)sec_ns,
      .page_limit = page_limit,
      .watch_timeout_s = watch_timeout,
      .backoff_initial_ms = backoff_ms,
      .backoff_max_ms = backoff_ms ? backoff_ms * 8 : 0,
  };
  amc_kube_source_sink_t sink = {on_upsert, on_remove, on_synced, on_relisted,
                                 NULL};
  d.src = amc_kube_source_new(d.loop, d.client, &so, &sink, &d);
  d.status = amc_kube_status_writer_new(d.client, on_status_done, &d);
  amc_kube_status_writer_set_events(d.status, events);
  uv_timer_init(d.loop, &d.status_timer);
  d.status_timer.data = &d;
  if (lease_name) {
    amc_lease_opts_t lo = {
        .namespace_ =
            lease_ns ? lease_ns : (cfg.namespace_ ? cfg.namespace_ : "default"),
        .name = lease_name,
        .identity = identity,
        .lease_duration_ms = (uint64_t)(lease_duration * 1000),
        .renew_deadline_ms = (uint64_t)(renew_deadline * 1000),
        .retry_period_ms = (uint64_t)(retry_period * 1000),
        .on_change = on_leading,
        .data = &d,
    };
    d.lease = amc_lease_new(d.loop, d.client, &lo, err, sizeof err);
    if (!d.lease) {
      fprintf(stderr, "amc kube-dump: lease: %s\n", err);
      d.exit_code = AMC_EXIT_USAGE;
    }
  } else {
    amc_kube_status_writer_enable(d.status, 1);
  }
  amc_kubeconfig_free(&cfg);
  uv_signal_init(d.loop, &d.sigterm);
  uv_signal_init(d.loop, &d.sigint);
  d.sigterm.data = d.sigint.data = &d;
  uv_signal_start(&d.sigterm, on_signal, SIGTERM);
  uv_signal_start(&d.sigint, on_signal, SIGINT);
  if (d.exit_code == 0) {
    if (d.lease)
      amc_lease_start(d.lease);
    amc_kube_source_start(d.src);
  } else {
    stop_all(&d);
  }
  uv_run(d.loop, UV_RUN_DEFAULT);
  uv_loop_close(d.loop);
  amc_strmap_clear(&d.istio, NULL);
  amc_store_free(d.store);
  lua_close(d.L);
  free_split(ns_inc);
  free_split(ns_exc);
  free_split(sec_ns);
  return d.exit_code;
}
