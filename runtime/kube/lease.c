/* lease.c - leader election (see lease.h). */
#include "kube/lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "kube/kjson.h"
#include "util/log.h"

struct amc_lease {
  uv_loop_t *loop;
  amc_kube_client_t *client;
  char *ns, *name, *identity;
  uint64_t duration_ms, deadline_ms, period_ms;
  void (*on_change)(void *, int);
  void *data;
  uv_timer_t timer;
  amc_kube_call_t *call;
  amc_lease_observed_t obs;
  amc_lease_record_t rec; /* last read */
  int have_rec;
  int leader;
  uint64_t last_renew_ms; /* last successful acquire/renew */
  int stopping;
  int release_retried; /* the release was re-read after a 409 */
  void (*closed)(void *);
  void *closed_data;
};

/* --- pure part --- */

static char *jstr(amc_kjson_t obj, const char *key) {
  amc_kjson_t v;
  if (amc_kjson_get(obj, key, &v) != 0)
    return NULL;
  return amc_kjson_strdup(v);
}

static long long jint(amc_kjson_t obj, const char *key) {
  amc_kjson_t v;
  long long x = 0;
  if (amc_kjson_get(obj, key, &v) == 0)
    amc_kjson_int(v, &x);
  return x;
}

int amc_lease_record_parse(const char *json, size_t len,
                           amc_lease_record_t *out) {
  memset(out, 0, sizeof *out);
  amc_kjson_t doc, md, spec = {0};
  if (amc_kjson_parse(json, len, &doc) != 0 ||
      amc_kjson_get(doc, "metadata", &md) != 0)
    return -1;
  out->rv = jstr(md, "resourceVersion");
  if (!out->rv)
    return -1;
  if (amc_kjson_get(doc, "spec", &spec) == 0 && amc_kjson_type(spec) == 'o') {
    out->holder = jstr(spec, "holderIdentity");
    out->duration_s = jint(spec, "leaseDurationSeconds");
    out->acquire_time = jstr(spec, "acquireTime");
    out->renew_time = jstr(spec, "renewTime");
    out->transitions = jint(spec, "leaseTransitions");
  }
  if (!out->holder)
    out->holder = strdup("");
  return 0;
}

void amc_lease_record_free(amc_lease_record_t *r) {
  free(r->holder);
  free(r->acquire_time);
  free(r->renew_time);
  free(r->rv);
  memset(r, 0, sizeof *r);
}

amc_lease_action_t amc_lease_decide(amc_lease_observed_t *obs,
                                    const amc_lease_record_t *rec,
                                    const char *identity, uint64_t now_ms) {
  amc_buf_t fp = AMC_BUF_INIT;
  amc_buf_printf(&fp, "%s|%lld|%s|%s|%lld", rec->holder, rec->duration_s,
                 rec->acquire_time ? rec->acquire_time : "",
                 rec->renew_time ? rec->renew_time : "", rec->transitions);
  if (!obs->fingerprint || strcmp(obs->fingerprint, fp.data) != 0) {
    free(obs->fingerprint);
    obs->fingerprint = amc_buf_steal(&fp);
    obs->observed_ms = now_ms;
  }
  amc_buf_free(&fp);
  if (strcmp(rec->holder, identity) == 0)
    return AMC_LEASE_RENEW;
  if (!*rec->holder)
    return AMC_LEASE_TAKE;
  uint64_t dur = rec->duration_s > 0 ? (uint64_t)rec->duration_s * 1000 : 0;
  if (now_ms < obs->observed_ms + dur)
    return AMC_LEASE_WAIT;
  return AMC_LEASE_TAKE;
}

static void put_str(amc_buf_t *b, const char *k, const char *v, int comma) {
  amc_buf_printf(b, "%s\"%s\":", comma ? "," : "", k);
  amc_kjson_quote(b, v);
}

void amc_lease_body(amc_buf_t *out, const char *ns, const char *name,
                    const char *rv, const char *holder, long long duration_s,
                    const char *acquire_time, const char *renew_time,
                    long long transitions) {
  amc_buf_puts(out, "{\"apiVersion\":\"coordination.k8s.io/v1\","
                    "\"kind\":\"Lease\",\"metadata\":{");
  put_str(out, "name", name, 0);
  put_str(out, "namespace", ns, 1);
  if (rv)
    put_str(out, "resourceVersion", rv, 1);
  amc_buf_puts(out, "},\"spec\":{");
  put_str(out, "holderIdentity", holder, 0);
  amc_buf_printf(out, ",\"leaseDurationSeconds\":%lld", duration_s);
  if (acquire_time)
    put_str(out, "acquireTime", acquire_time, 1);
  if (renew_time)
    put_str(out, "renewTime", renew_time, 1);
  amc_buf_printf(out, ",\"leaseTransitions\":%lld}}", transitions);
}

void amc_lease_microtime(char *out, size_t n) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, n, "%s.%06ldZ", base, (long)tv.tv_usec);
}

/* --- the loop driver --- */

static void tick(amc_lease_t *l);

static void set_leader(amc_lease_t *l, int leader) {
  if (l->leader == leader)
    return;
  l->leader = leader;
  amc_log(AMC_INFO, leader ? "lease.acquired" : "lease.lost",
          AMC_S("lease", l->name), AMC_S("identity", l->identity));
  if (l->on_change)
    l->on_change(l->data, leader);
}

static void timer_cb(uv_timer_t *t) {
  amc_lease_t *l = t->data;
  if (!l->stopping)
    tick(l);
}

static void again(amc_lease_t *l) {
  uint64_t d = l->period_ms;
  if (!l->leader)
    d += (uint64_t)((double)d * 0.2 * ((double)rand() / RAND_MAX));
  uv_timer_start(&l->timer, timer_cb, d, 0);
}

/* Called after every failed attempt: a leader that could not renew for
 * RenewDeadline steps down. */
static void attempt_failed(amc_lease_t *l, const char *why) {
  if (l->leader && uv_now(l->loop) - l->last_renew_ms >= l->deadline_ms) {
    amc_log(AMC_WARN, "lease.renew_deadline", AMC_S("lease", l->name),
            AMC_S("error", why));
    set_leader(l, 0);
  } else if (why) {
    amc_log(AMC_DEBUG, "lease.attempt_failed", AMC_S("lease", l->name),
            AMC_S("error", why));
  }
  again(l);
}

static void lease_path(amc_lease_t *l, amc_buf_t *p, int with_name) {
  amc_buf_printf(p, "/apis/coordination.k8s.io/v1/namespaces/%s/leases", l->ns);
  if (with_name)
    amc_buf_printf(p, "/%s", l->name);
}

static void write_done(void *data, const amc_kube_resp_t *resp) {
  amc_lease_t *l = data;
  l->call = NULL;
  if (!resp->error && (resp->status == 200 || resp->status == 201)) {
    amc_lease_record_t rec;
    if (amc_lease_record_parse(resp->body, resp->body_len, &rec) == 0) {
      amc_lease_record_free(&l->rec);
      l->rec = rec;
      l->have_rec = 1;
      amc_lease_decide(&l->obs, &l->rec, l->identity, uv_now(l->loop));
    }
    l->last_renew_ms = uv_now(l->loop);
    set_leader(l, 1);
    again(l);
    return;
  }
  char err[256];
  amc_kube_resp_describe(resp, err, sizeof err);
  if (resp->status == 409) {
    /* Lost the race (or our view was stale). */
    amc_log(AMC_DEBUG, "lease.conflict", AMC_S("lease", l->name));
  }
  attempt_failed(l, err);
}

static void try_write(amc_lease_t *l, int create, int renew) {
  char now[40];
  amc_lease_microtime(now, sizeof now);
  amc_buf_t body = AMC_BUF_INIT, path = AMC_BUF_INIT;
  long long dur = (long long)(l->duration_ms / 1000);
  if (dur < 1)
    dur = 1;
  if (create) {
    amc_lease_body(&body, l->ns, l->name, NULL, l->identity, dur, now, now, 0);
  } else {
    const char *acq = renew && l->rec.acquire_time ? l->rec.acquire_time : now;
    long long tr = renew ? l->rec.transitions : l->rec.transitions + 1;
    amc_lease_body(&body, l->ns, l->name, l->rec.rv, l->identity, dur, acq, now,
                   tr);
  }
  lease_path(l, &path, !create);
  amc_kube_req_t req = {.method = create ? "POST" : "PUT",
                        .path = path.data,
                        .content_type = "application/json",
                        .body = body.data,
                        .body_len = body.len,
                        .timeout_ms = (long)l->deadline_ms / 2};
  l->call = amc_kube_call(l->client, &req, write_done, l);
  amc_buf_free(&body);
  amc_buf_free(&path);
  if (!l->call)
    attempt_failed(l, "request refused");
}

static void get_done(void *data, const amc_kube_resp_t *resp) {
  amc_lease_t *l = data;
  l->call = NULL;
  if (resp->status == 404 && !resp->error) {
    try_write(l, 1, 0);
    return;
  }
  amc_lease_record_t rec;
  if (resp->error || resp->status != 200 ||
      amc_lease_record_parse(resp->body, resp->body_len, &rec) != 0) {
    char err[256];
    amc_kube_resp_describe(resp, err, sizeof err);
    attempt_failed(l, err);
    return;
  }
  amc_lease_record_free(&l->rec);
  l->rec = rec;
  l->have_rec = 1;
  amc_lease_action_t a =
      amc_lease_decide(&l->obs, &l->rec, l->identity, uv_now(l->loop));
  if (a == AMC_LEASE_WAIT) {
    if (l->leader) /* someone else holds it now */
      set_leader(l, 0);
    again(l);
    return;
  }
  try_write(l, 0, a == AMC_LEASE_RENEW);
}

static void tick(amc_lease_t *l) {
  amc_buf_t path = AMC_BUF_INIT;
  lease_path(l, &path, 1);
  amc_kube_req_t req = {.path = path.data,
                        .timeout_ms = (long)l->deadline_ms / 2};
  l->call = amc_kube_call(l->client, &req, get_done, l);
  amc_buf_free(&path);
  if (!l->call)
    attempt_failed(l, "request refused");
}

amc_lease_t *amc_lease_new(uv_loop_t *loop, amc_kube_client_t *client,
                           const amc_lease_opts_t *o, char *err,
                           size_t errlen) {
  uint64_t dur = o->lease_duration_ms ? o->lease_duration_ms : 15000;
  uint64_t dl = o->renew_deadline_ms ? o->renew_deadline_ms : 10000;
  uint64_t rp = o->retry_period_ms ? o->retry_period_ms : 2000;
  if (!o->namespace_ || !*o->namespace_ || !o->name || !*o->name) {
    snprintf(err, errlen, "the lease needs a namespace and a name");
    return NULL;
  }
  if (!(dur > dl && (double)dl > 1.2 * (double)rp) || dur < 1000) {
    snprintf(err, errlen,
             "lease durations must satisfy lease-duration (%llu ms) > "
             "renew-deadline (%llu ms) > 1.2 * retry-period (%llu ms), and "
             "lease-duration >= 1 s",
             (unsigned long long)dur, (unsigned long long)dl,
             (unsigned long long)rp);
    return NULL;
  }
  amc_lease_t *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  l->loop = loop;
  l->client = client;
  l->ns = strdup(o->namespace_);
  l->name = strdup(o->name);
  if (o->identity && *o->identity) {
    l->identity = strdup(o->identity);
  } else if (getenv("POD_NAME") && *getenv("POD_NAME")) {
    l->identity = strdup(getenv("POD_NAME"));
  } else {
    char host[256] = "amc";
    gethostname(host, sizeof host - 1);
    amc_buf_t b = AMC_BUF_INIT;
    amc_buf_printf(&b, "%s_%ld", host, (long)getpid());
    l->identity = amc_buf_steal(&b);
  }
  l->duration_ms = dur;
  l->deadline_ms = dl;
  l->period_ms = rp;
  l->on_change = o->on_change;
  l->data = o->data;
  uv_timer_init(loop, &l->timer);
  l->timer.data = l;
  return l;
}

int amc_lease_start(amc_lease_t *l) {
  amc_log(AMC_INFO, "lease.start", AMC_S("lease", l->name),
          AMC_S("namespace", l->ns), AMC_S("identity", l->identity));
  tick(l);
  return 0;
}

static void lease_free_cb(uv_handle_t *h) {
  amc_lease_t *l = h->data;
  void (*cb)(void *) = l->closed;
  void *d = l->closed_data;
  amc_lease_record_free(&l->rec);
  free(l->obs.fingerprint);
  free(l->ns);
  free(l->name);
  free(l->identity);
  free(l);
  if (cb)
    cb(d);
}

static void finish_stop(amc_lease_t *l) {
  uv_timer_stop(&l->timer);
  uv_close((uv_handle_t *)&l->timer, lease_free_cb);
}

static void release_done(void *data, const amc_kube_resp_t *resp);

/* PUTs the Lease with no holder, on the resourceVersion of l->rec. */
static void release_put(amc_lease_t *l) {
  char now[40];
  amc_lease_microtime(now, sizeof now);
  amc_buf_t body = AMC_BUF_INIT, path = AMC_BUF_INIT;
  amc_lease_body(&body, l->ns, l->name, l->rec.rv, "", 1, now, now,
                 l->rec.transitions);
  lease_path(l, &path, 1);
  amc_kube_req_t req = {.method = "PUT",
                        .path = path.data,
                        .content_type = "application/json",
                        .body = body.data,
                        .body_len = body.len,
                        .timeout_ms = 5000};
  l->call = amc_kube_call(l->client, &req, release_done, l);
  amc_buf_free(&body);
  amc_buf_free(&path);
  if (!l->call)
    finish_stop(l);
}

/* The re-read after a conflicting release: release again only while the
 * Lease still names us (someone else may have taken it meanwhile). */
static void release_get_done(void *data, const amc_kube_resp_t *resp) {
  amc_lease_t *l = data;
  l->call = NULL;
  amc_lease_record_t rec;
  if (resp->error || resp->status != 200 ||
      amc_lease_record_parse(resp->body, resp->body_len, &rec) != 0) {
    char err[256];
    amc_kube_resp_describe(resp, err, sizeof err);
    amc_log(AMC_WARN, "lease.release_failed", AMC_S("lease", l->name),
            AMC_S("error", err));
    finish_stop(l);
    return;
  }
  amc_lease_record_free(&l->rec);
  l->rec = rec;
  if (strcmp(l->rec.holder, l->identity) != 0) {
    finish_stop(l); /* not ours any more: nothing to release */
    return;
  }
  release_put(l);
}

static void release_done(void *data, const amc_kube_resp_t *resp) {
  amc_lease_t *l = data;
  l->call = NULL;
  if (!resp->error && resp->status == 409 && !l->release_retried) {
    /* The renewal that stop() cancelled may still have reached the server
     * and moved the resourceVersion: re-read once and release again, or
     * the followers wait out the whole lease duration. */
    l->release_retried = 1;
    amc_buf_t path = AMC_BUF_INIT;
    lease_path(l, &path, 1);
    amc_kube_req_t req = {.path = path.data, .timeout_ms = 5000};
    l->call = amc_kube_call(l->client, &req, release_get_done, l);
    amc_buf_free(&path);
    if (!l->call)
      finish_stop(l);
    return;
  }
  if (resp->error || resp->status != 200) {
    char err[256];
    amc_kube_resp_describe(resp, err, sizeof err);
    amc_log(AMC_WARN, "lease.release_failed", AMC_S("lease", l->name),
            AMC_S("error", err));
  } else {
    amc_log(AMC_INFO, "lease.released", AMC_S("lease", l->name),
            AMC_S("identity", l->identity));
  }
  finish_stop(l);
}

void amc_lease_stop(amc_lease_t *l, void (*closed)(void *), void *data) {
  l->stopping = 1;
  l->closed = closed;
  l->closed_data = data;
  uv_timer_stop(&l->timer);
  if (l->call) {
    amc_kube_call_cancel(l->call);
    l->call = NULL;
  }
  if (!l->leader || !l->have_rec) {
    finish_stop(l);
    return;
  }
  /* Step down first: nothing may write once the release is on its way. */
  set_leader(l, 0);
  release_put(l);
}

int amc_lease_is_leader(const amc_lease_t *l) {
  return l->leader;
}

const char *amc_lease_identity(const amc_lease_t *l) {
  return l->identity;
}
