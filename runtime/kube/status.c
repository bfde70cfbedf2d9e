/* status.c - Istio status write-back (see status.h). */
#include "kube/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube/kjson.h"
#include "util/log.h"
#include "util/strmap.h"

/* --- body building (pure) --- */

/* Finds "<type>=<status>@<time>" in `prev`; copies the time when the status
 * matches. */
static int prev_time(const char *prev, const char *type, const char *status,
                     char *out, size_t n) {
  if (!prev)
    return 0;
  char want[64];
  snprintf(want, sizeof want, "%s=%s@", type, status);
  const char *p = prev;
  while ((p = strstr(p, want))) {
    if (p == prev || p[-1] == ';') {
      p += strlen(want);
      size_t k = strcspn(p, ";");
      if (k >= n)
        return 0;
      memcpy(out, p, k);
      out[k] = 0;
      return 1;
    }
    p++;
  }
  return 0;
}

static void condition(amc_buf_t *body, amc_buf_t *next, amc_buf_t *fp,
                      const char *prev, const char *now, const char *type,
                      int ok, const char *reason, const char *message,
                      long long gen, int first) {
  const char *status = ok ? "True" : "False";
  char t[64];
  if (!prev_time(prev, type, status, t, sizeof t))
    snprintf(t, sizeof t, "%s", now);
  if (!first)
    amc_buf_putc(body, ',');
  amc_buf_puts(body, "{\"lastTransitionTime\":");
  amc_kjson_quote(body, t);
  amc_buf_puts(body, ",\"message\":");
  amc_kjson_quote(body, message ? message : "");
  if (gen > 0)
    amc_buf_printf(body, ",\"observedGeneration\":%lld", gen);
  amc_buf_puts(body, ",\"reason\":");
  amc_kjson_quote(body, reason);
  amc_buf_printf(body, ",\"status\":\"%s\",\"type\":\"%s\"}", status, type);
  amc_buf_printf(next, "%s%s=%s@%s", first ? "" : ";", type, status, t);
  amc_buf_printf(fp, "%s=%s|%s|", type, status, reason);
  amc_buf_puts(fp, message ? message : "");
  amc_buf_putc(fp, '\n');
}

void amc_kube_status_body(const amc_kube_status_t *st, const char *prev,
                          const char *now, amc_buf_t *body, amc_buf_t *next,
                          amc_buf_t *fp) {
  const char *ar = st->accepted_reason
                       ? st->accepted_reason
                       : (st->accepted ? "Accepted" : "Invalid");
  const char *pr = st->programmed_reason ? st->programmed_reason
                   : st->programmed      ? "Programmed"
                   : st->accepted        ? "ProgrammingFailed"
                                         : "Pending";
  long long gen = st->observed_generation;
  amc_buf_puts(body, "{\"status\":{\"conditions\":[");
  condition(body, next, fp, prev, now, "Accepted", st->accepted, ar,
            st->accepted_message, gen, 1);
  condition(body, next, fp, prev, now, "Programmed", st->programmed, pr,
            st->programmed_message, gen, 0);
  amc_buf_puts(body, "]");
  if (gen > 0) {
    amc_buf_printf(body, ",\"observedGeneration\":%lld", gen);
    amc_buf_printf(fp, "gen=%lld\n", gen);
  }
  /* Always sent, so that fixed diagnostics disappear (merge patch replaces
   * arrays). */
  amc_buf_puts(body, ",\"validationMessages\":[");
  int i = 0;
  for (const char *const *w = st->warnings; w && *w; w++, i++) {
    if (i)
      amc_buf_putc(body, ',');
    amc_buf_puts(body, "{\"description\":");
    amc_kjson_quote(body, *w);
    amc_buf_puts(body, ",\"level\":\"WARNING\",\"type\":{\"code\":\"AMC0001\","
                       "\"name\":\"Unsupported\"}}");
    amc_buf_printf(fp, "w:%s\n", *w);
  }
  amc_buf_puts(body, "]}}");
}

/* --- writer --- */

typedef struct pending pending_t;

struct amc_kube_status_writer {
  amc_kube_client_t *client;
  amc_kube_status_done_fn done;
  void *data;
  char *version;
  int enabled, events;
  /* key -> owned string */
  amc_strmap_t written; /* fingerprint of the last status written */
  amc_strmap_t conds;   /* condition memory (for transition times) */
  amc_strmap_t evsent;  /* error text of the last Event */
  pending_t *inflight;  /* list */
  unsigned writes, nevents;
};

struct pending {
  amc_kube_status_writer_t *w;
  amc_kube_call_t *call;
  char *key, *kind, *ns, *name;
  char *fp, *conds;
  int is_event;
  /* a newer status queued while this one is in flight */
  amc_kube_status_t *queued;
  char **queued_warnings;
  pending_t *next;
};

static const char *plural_of(const char *kind) {
  if (!strcmp(kind, "Gateway"))
    return "gateways";
  if (!strcmp(kind, "VirtualService"))
    return "virtualservices";
  if (!strcmp(kind, "DestinationRule"))
    return "destinationrules";
  if (!strcmp(kind, "ServiceEntry"))
    return "serviceentries";
  return NULL;
}

amc_kube_status_writer_t *
amc_kube_status_writer_new(amc_kube_client_t *client,
                           amc_kube_status_done_fn done, void *data) {
  amc_kube_status_writer_t *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  w->client = client;
  w->done = done;
  w->data = data;
  w->version = strdup("v1");
  return w;
}

void amc_kube_status_writer_set_version(amc_kube_status_writer_t *w,
                                        const char *version) {
  if (!version)
    return;
  free(w->version);
  w->version = strdup(version);
}

void amc_kube_status_writer_enable(amc_kube_status_writer_t *w, int on) {
  if (on && !w->enabled) {
    amc_strmap_clear(&w->written, free);
    amc_strmap_clear(&w->evsent, free);
  }
  w->enabled = on;
}

void amc_kube_status_writer_set_events(amc_kube_status_writer_t *w, int on) {
  w->events = on;
}

static void key_of(amc_buf_t *b, const char *kind, const char *ns,
                   const char *name) {
  amc_buf_printf(b, "%s/%s/%s", kind, ns, name);
}

static void report(amc_kube_status_writer_t *w, const char *kind,
                   const char *ns, const char *name, int result) {
  if (w->done)
    w->done(w->data, kind, ns, name, result);
}

static void unlink_pending(amc_kube_status_writer_t *w, pending_t *p) {
  for (pending_t **pp = &w->inflight; *pp; pp = &(*pp)->next) {
    if (*pp == p) {
      *pp = p->next;
      return;
    }
  }
}

static void free_queued(pending_t *p) {
  if (p->queued_warnings) {
    for (char **q = p->queued_warnings; *q; q++)
      free(*q);
    free(p->queued_warnings);
  }
  if (p->queued) {
    free((char *)p->queued->accepted_reason);
    free((char *)p->queued->accepted_message);
    free((char *)p->queued->programmed_reason);
    free((char *)p->queued->programmed_message);
    free(p->queued);
  }
  p->queued = NULL;
  p->queued_warnings = NULL;
}

static void pending_free(pending_t *p) {
  free_queued(p);
  free(p->key);
  free(p->kind);
  free(p->ns);
  free(p->name);
  free(p->fp);
  free(p->conds);
  free(p);
}

static pending_t *find_inflight(amc_kube_status_writer_t *w, const char *key) {
  for (pending_t *p = w->inflight; p; p = p->next)
    if (!p->is_event && !strcmp(p->key, key))
      return p;
  return NULL;
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

static void now_rfc3339(char *out, size_t n) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void event_done(void *data, const amc_kube_resp_t *resp) {
  pending_t *p = data;
  amc_kube_status_writer_t *w = p->w;
  unlink_pending(w, p);
  if (resp->error || (resp->status != 201 && resp->status != 200)) {
    char err[256];
    amc_kube_resp_describe(resp, err, sizeof err);
    amc_log(AMC_WARN, "kube.event_failed", AMC_S("object", p->key),
            AMC_S("error", err));
  } else {
    w->nevents++;
  }
  pending_free(p);
}

static void post_event(amc_kube_status_writer_t *w, const char *kind,
                       const char *ns, const char *name, const char *reason,
                       const char *message) {
  amc_buf_t key = AMC_BUF_INIT;
  key_of(&key, kind, ns, name);
  const char *last = amc_strmap_get(&w->evsent, key.data);
  if (last && !strcmp(last, message)) {
    amc_buf_free(&key);
    return;
  }
  amc_strmap_set_str(&w->evsent, key.data, message);
  char now[40];
  now_rfc3339(now, sizeof now);
  amc_buf_t b = AMC_BUF_INIT, path = AMC_BUF_INIT;
  amc_buf_puts(&b, "{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":"
                   "{\"generateName\":");
  amc_buf_t gn = AMC_BUF_INIT;
  amc_buf_printf(&gn, "%s.", name);
  amc_kjson_quote(&b, gn.data);
  amc_buf_free(&gn);
  amc_buf_puts(&b, ",\"namespace\":");
  amc_kjson_quote(&b, ns);
  amc_buf_printf(&b,
                 "},\"involvedObject\":{\"apiVersion\":"
                 "\"networking.istio.io/%s\",\"kind\":",
                 w->version);
  amc_kjson_quote(&b, kind);
  amc_buf_puts(&b, ",\"name\":");
  amc_kjson_quote(&b, name);
  amc_buf_puts(&b, ",\"namespace\":");
  amc_kjson_quote(&b, ns);
  amc_buf_puts(&b, "},\"reason\":");
  amc_kjson_quote(&b, reason);
  amc_buf_puts(&b, ",\"message\":");
  amc_kjson_quote(&b, message);
  amc_buf_printf(&b,
                 ",\"type\":\"Warning\",\"source\":{\"component\":\"amc\"},"
                 "\"reportingComponent\":\"amc\",\"firstTimestamp\":\"%s\","
                 "\"lastTimestamp\":\"%s\",\"count\":1}",
                 now, now);
  amc_buf_printf(&path, "/api/v1/namespaces/%s/events", ns);
  pending_t *p = calloc(1, sizeof *p);
  p->w = w;
  p->is_event = 1;
  p->key = amc_buf_steal(&key);
  amc_kube_req_t req = {.method = "POST",
                        .path = path.data,
                        .content_type = "application/json",
                        .body = b.data,
                        .body_len = b.len};
  p->call = amc_kube_call(w->client, &req, event_done, p);
  amc_buf_free(&b);
  amc_buf_free(&path);
  if (!p->call) {
    pending_free(p);
    return;
  }
  p->next = w->inflight;
  w->inflight = p;
}

static int start_patch(amc_kube_status_writer_t *w, const char *kind,
                       const char *ns, const char *name,
                       const amc_kube_status_t *st);

static void patch_done(void *data, const amc_kube_resp_t *resp) {
  pending_t *p = data;
  amc_kube_status_writer_t *w = p->w;
  unlink_pending(w, p);
  int result;
  if (!resp->error && resp->status == 200) {
    amc_strmap_set_str(&w->written, p->key, p->fp);
    amc_strmap_set_str(&w->conds, p->key, p->conds);
    w->writes++;
    result = AMC_STATUS_WRITTEN;
  } else {
    /* Not remembered: the next sync writes it again. */
    char err[256];
    amc_kube_resp_describe(resp, err, sizeof err);
    amc_log(resp->status == 404 ? AMC_INFO : AMC_WARN, "kube.status_failed",
            AMC_S("object", p->key), AMC_S("error", err));
    result = AMC_STATUS_FAILED;
  }
  report(w, p->kind, p->ns, p->name, result);
  if (p->queued && w->enabled)
    start_patch(w, p->kind, p->ns, p->name, p->queued);
  pending_free(p);
}

static amc_kube_status_t *copy_status(const amc_kube_status_t *st,
                                      char ***warnings) {
  amc_kube_status_t *c = calloc(1, sizeof *c);
  *c = *st;
  c->accepted_reason = dup_or_null(st->accepted_reason);
  c->accepted_message = dup_or_null(st->accepted_message);
  c->programmed_reason = dup_or_null(st->programmed_reason);
  c->programmed_message = dup_or_null(st->programmed_message);
  size_t n = 0;
  while (st->warnings && st->warnings[n])
    n++;
  *warnings = calloc(n + 1, sizeof **warnings);
  for (size_t i = 0; i < n; i++)
    (*warnings)[i] = strdup(st->warnings[i]);
  c->warnings = (const char *const *)*warnings;
  return c;
}

static int start_patch(amc_kube_status_writer_t *w, const char *kind,
                       const char *ns, const char *name,
                       const amc_kube_status_t *st) {
  const char *plural = plural_of(kind);
  amc_buf_t key = AMC_BUF_INIT, body = AMC_BUF_INIT, next = AMC_BUF_INIT,
            fp = AMC_BUF_INIT, path = AMC_BUF_INIT;
  key_of(&key, kind, ns, name);
  char now[40];
  now_rfc3339(now, sizeof now);
  amc_kube_status_body(st, amc_strmap_get(&w->conds, key.data), now, &body,
                       &next, &fp);
  const char *last = amc_strmap_get(&w->written, key.data);
  pending_t *fl = find_inflight(w, key.data);
  int rc;
  if (fl) {
    if (strcmp(fl->fp, fp.data) == 0) {
      free_queued(fl); /* the one in flight is what we want */
      rc = AMC_STATUS_UNCHANGED;
    } else {
      free_queued(fl);
      fl->queued = copy_status(st, &fl->queued_warnings);
      rc = AMC_STATUS_WRITTEN;
    }
    goto done;
  }
  if (last && strcmp(last, fp.data) == 0) {
    rc = AMC_STATUS_UNCHANGED;
    goto done;
  }
  amc_buf_printf(&path,
                 "/apis/networking.istio.io/%s/namespaces/%s/%s/%s/status",
                 w->version, ns, plural, name);
  pending_t *p = calloc(1, sizeof *p);
  p->w = w;
  p->key = amc_buf_steal(&key);
  p->kind = strdup(kind);
  p->ns = strdup(ns);
  p->name = strdup(name);
  p->fp = amc_buf_steal(&fp);
  p->conds = amc_buf_steal(&next);
  amc_kube_req_t req = {.method = "PATCH",
                        .path = path.data,
                        .content_type = "application/merge-patch+json",
                        .body = body.data,
                        .body_len = body.len};
  p->call = amc_kube_call(w->client, &req, patch_done, p);
  if (!p->call) {
    pending_free(p);
    rc = AMC_STATUS_FAILED;
    goto done;
  }
  p->next = w->inflight;
  w->inflight = p;
  rc = AMC_STATUS_WRITTEN;
  if (w->events && (!st->accepted || !st->programmed)) {
    const char *msg =
        !st->accepted ? st->accepted_message : st->programmed_message;
    const char *reason = !st->accepted ? "Invalid" : "ProgrammingFailed";
    post_event(w, kind, ns, name, reason, msg && *msg ? msg : reason);
  }
done:
  amc_buf_free(&key);
  amc_buf_free(&body);
  amc_buf_free(&next);
  amc_buf_free(&fp);
  amc_buf_free(&path);
  return rc;
}

int amc_kube_status_write(amc_kube_status_writer_t *w, const char *kind,
                          const char *ns, const char *name,
                          const amc_kube_status_t *st) {
  if (!plural_of(kind) || !ns || !*ns) {
    report(w, kind, ns, name, AMC_STATUS_FAILED);
    return AMC_STATUS_FAILED;
  }
  if (!w->enabled) {
    report(w, kind, ns, name, AMC_STATUS_SKIPPED);
    return AMC_STATUS_SKIPPED;
  }
  int rc = start_patch(w, kind, ns, name, st);
  if (rc != AMC_STATUS_WRITTEN)
    report(w, kind, ns, name, rc);
  return rc;
}

void amc_kube_status_forget(amc_kube_status_writer_t *w, const char *kind,
                            const char *ns, const char *name) {
  amc_buf_t key = AMC_BUF_INIT;
  key_of(&key, kind, ns, name);
  free(amc_strmap_del(&w->written, key.data));
  free(amc_strmap_del(&w->conds, key.data));
  free(amc_strmap_del(&w->evsent, key.data));
  amc_buf_free(&key);
}

void amc_kube_status_writer_cancel(amc_kube_status_writer_t *w) {
  if (!w)
    return;
  while (w->inflight) {
    pending_t *p = w->inflight;
    w->inflight = p->next;
    amc_kube_call_cancel(p->call);
    pending_free(p);
  }
}

void amc_kube_status_writer_free(amc_kube_status_writer_t *w) {
  if (!w)
    return;
  amc_kube_status_writer_cancel(w);
  amc_strmap_clear(&w->written, free);
  amc_strmap_clear(&w->conds, free);
  amc_strmap_clear(&w->evsent, free);
  free(w->version);
  free(w);
}

unsigned amc_kube_status_writes(const amc_kube_status_writer_t *w) {
  return w->writes;
}

unsigned amc_kube_status_events(const amc_kube_status_writer_t *w) {
  return w->nevents;
}
