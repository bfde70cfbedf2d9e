/* report.c - see report.h. */
#include "kube/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kjson.h"
#include "util/buf.h"
#include "util/strmap.h"

#define MAX_WARNINGS 32

/* The last outcome of one gateway key. */
typedef struct {
  int failed; /* translation failed */
  int avi_ok;
  char *error;       /* the translation or AVI error ("" when none) */
  amc_diag_t *diags; /* the key's diagnostics: a patch (translation.h
                        `partial`) has none of its own, they are these */
  size_t n_diags;
} outcome_t;

struct amc_kube_report {
  amc_kube_status_writer_t *w;
  amc_store_t *store;
  amc_strmap_t outcomes; /* "Gateway/<ns>/<name>" -> outcome_t */
};

static char *dup_or_null(const char *s) {
  char *c = s ? strdup(s) : NULL;
  if (s && !c)
    abort();
  return c;
}

static amc_diag_t *diags_copy(const amc_diag_t *d, size_t n) {
  amc_diag_t *c = calloc(n ? n : 1, sizeof *c);
  if (!c)
    abort();
  for (size_t i = 0; i < n; i++) {
    c[i].severity = d[i].severity;
    c[i].kind = dup_or_null(d[i].kind);
    c[i].namespace_ = dup_or_null(d[i].namespace_);
    c[i].name = dup_or_null(d[i].name);
    c[i].field = dup_or_null(d[i].field);
    c[i].message = dup_or_null(d[i].message);
  }
  return c;
}

static void outcome_free(void *p) {
  outcome_t *o = p;
  if (o) {
    free(o->error);
    amc_diags_free(o->diags, o->n_diags);
  }
  free(o);
}

amc_kube_report_t *amc_kube_report_new(amc_kube_status_writer_t *w,
                                       amc_store_t *store) {
  amc_kube_report_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->w = w;
  r->store = store;
  r->outcomes = (amc_strmap_t)AMC_STRMAP_INIT;
  return r;
}

void amc_kube_report_free(amc_kube_report_t *r) {
  if (!r)
    return;
  amc_strmap_clear(&r->outcomes, outcome_free);
  free(r);
}

/* metadata.generation of a stored object, 0 when absent. */
static long long generation_of(const amc_store_obj_t *o) {
  amc_kjson_t doc, g;
  long long v = 0;
  if (!o)
    return 0;
  amc_buf_t b = AMC_BUF_INIT;
  size_t n;
  const char *json = amc_store_json(o, &b, &n);
  if (amc_kjson_parse(json, n, &doc) != 0 ||
      amc_kjson_path(doc, "metadata.generation", &g) != 0 ||
      amc_kjson_int(g, &v) != 0)
    v = 0;
  amc_buf_free(&b);
  return v;
}

static int same(const char *a, const char *b) {
  return !strcmp(a ? a : "", b ? b : "");
}

/* Calls fn for each gateway key ("Gateway/<ns>/<name>") that VirtualService
 * `vs` names in spec.gateways ("mesh" is not a gateway). */
static void each_gateway(const amc_store_obj_t *vs,
                         void (*fn)(const char *key, void *data), void *data) {
  amc_kjson_t doc, gws, e;
  amc_buf_t b = AMC_BUF_INIT;
  size_t n;
  const char *json = amc_store_json(vs, &b, &n);
  if (amc_kjson_parse(json, n, &doc) != 0 ||
      amc_kjson_path(doc, "spec.gateways", &gws) != 0) {
    amc_buf_free(&b);
    return;
  }
  size_t pos = 0;
  while (amc_kjson_array_next(gws, &pos, &e) == 1) {
    char *s = amc_kjson_strdup(e);
    if (!s || !strcmp(s, "mesh")) {
      free(s);
      continue;
    }
    amc_buf_t key = AMC_BUF_INIT;
    if (strchr(s, '/'))
      amc_buf_printf(&key, "Gateway/%s", s);
    else
      amc_buf_printf(&key, "Gateway/%s/%s",
                     vs->namespace_ ? vs->namespace_ : "", s);
    fn(key.data, data);
    amc_buf_free(&key);
    free(s);
  }
  amc_buf_free(&b);
}

typedef struct {
  amc_kube_report_t *r;
  const char *current; /* the key being reported */
  const outcome_t *now;
  int bound;
  amc_buf_t failed, unprogrammed; /* first messages */
} vs_scan_t;

static void scan_gateway(const char *key, void *data) {
  vs_scan_t *s = data;
  const outcome_t *o =
      !strcmp(key, s->current) ? s->now : amc_strmap_get(&s->r->outcomes, key);
  if (!strcmp(key, s->current))
    s->bound = 1;
  if (!o)
    return;
  const char *g = key + strlen("Gateway/");
  if (o->failed && !s->failed.len)
    amc_buf_printf(&s->failed, "Gateway %s: %s", g, o->error);
  if (!o->failed && !o->avi_ok && !s->unprogrammed.len)
    amc_buf_printf(&s->unprogrammed, "Gateway %s: %s", g, o->error);
}

/* Writes the status of one object: `fail` (not accepted, from outside its
 * own diagnostics), `unprogrammed` (AVI failed; NULL = programmed). */
static void report_one(amc_kube_report_t *r, const char *kind,
                       const amc_store_obj_t *o, const amc_translation_t *t,
                       const char *fail, const char *unprogrammed) {
  const char *warnings[MAX_WARNINGS + 1];
  amc_buf_t text[MAX_WARNINGS];
  size_t nw = 0;
  const char *first_error = NULL;
  for (size_t i = 0; t && i < t->n_diags && nw < MAX_WARNINGS; i++) {
    const amc_diag_t *d = &t->diags[i];
    if (!d->kind || strcmp(d->kind, kind) || !d->name ||
        strcmp(d->name, o->name) || !same(d->namespace_, o->namespace_))
      continue;
    text[nw] = (amc_buf_t)AMC_BUF_INIT;
    amc_buf_printf(&text[nw], "%s%s%s", d->field ? d->field : "",
                   d->field ? ": " : "", d->message ? d->message : "");
    warnings[nw] = text[nw].data ? text[nw].data : "";
    if (d->severity == AMC_DIAG_ERROR && !first_error)
      first_error = warnings[nw];
    nw++;
  }
  warnings[nw] = NULL;
  amc_kube_status_t st = {0};
  st.observed_generation = generation_of(o);
  st.warnings = nw ? warnings : NULL;
  if (fail) {
    st.accepted = 0;
    st.accepted_message = fail;
    st.programmed = 0; /* Pending */
  } else {
    st.accepted = first_error == NULL;
    st.accepted_message = first_error;
    st.programmed = unprogrammed == NULL;
    st.programmed_reason = unprogrammed ? "ProgrammingFailed" : "Programmed";
    st.programmed_message = unprogrammed;
  }
  amc_kube_status_write(r->w, kind, o->namespace_, o->name, &st);
  for (size_t i = 0; i < nw; i++)
    amc_buf_free(&text[i]);
}

int amc_kube_report(amc_kube_report_t *r, const char *key,
                    const amc_translation_t *t, int avi_ok,
                    const char *avi_error) {
  /* key: Gateway/<ns>/<name> */
  const char *a = strchr(key, '/');
  const char *b = a ? strchr(a + 1, '/') : NULL;
  if (!r || !a || !b)
    return 0;
  char ns[256], name[256];
  size_t nl = (size_t)(b - a - 1);
  if (nl >= sizeof ns || strlen(b + 1) >= sizeof name)
    return 0;
  memcpy(ns, a + 1, nl);
  ns[nl] = 0;
  strcpy(name, b + 1);
  const amc_store_obj_t *gw =
      amc_store_get(r->store, "Gateway", ns[0] ? ns : NULL, name);
  if (!t || !gw) {
    amc_kube_status_forget(r->w, "Gateway", ns, name);
    outcome_free(amc_strmap_del(&r->outcomes, key));
    return 0;
  }
  /* A rule error's Lua traceback is for the log, not for a condition. */
  const char *msg = t->error ? t->error : (avi_error ? avi_error : "");
  const char *tb = strstr(msg, "\nstack traceback:");
  char *err = strndup(msg, tb ? (size_t)(tb - msg) : strlen(msg));
  if (!err)
    abort();
  outcome_t now = {t->error != NULL, t->error ? 0 : avi_ok, err, NULL, 0};
  /* a patch: the diagnostics are the key's last translation's */
  amc_translation_t view;
  if (t->partial) {
    const outcome_t *last = amc_strmap_get(&r->outcomes, key);
    view = *t;
    view.diags = last ? last->diags : NULL;
    view.n_diags = last ? last->n_diags : 0;
    t = &view;
  }
  if (!t->error) { /* (after a failure the next translation is full) */
    now.diags = diags_copy(t->diags, t->n_diags);
    now.n_diags = t->n_diags;
  }
  report_one(r, "Gateway", gw, t, now.failed ? now.error : NULL,
             !now.failed && !now.avi_ok ? now.error : NULL);
  int n = 1;
  /* The bound VirtualServices, through the store's index on spec.gateways
   * (a scan of every VirtualService per key would make a full sync
   * quadratic): "<ns>/<name>" from anywhere, "<name>" from <ns>. The
   * first result is copied: the second lookup invalidates it. */
  static const char *const path[] = {"spec", "gateways"};
  const amc_store_obj_t *const *found;
  amc_buf_t full = AMC_BUF_INIT;
  amc_buf_printf(&full, "%s/%s", ns, name);
  size_t n1 = amc_store_find(r->store, "VirtualService", NULL, path, 2,
                             full.data, &found);
  const amc_store_obj_t **vs = malloc((n1 + 1) * sizeof *vs);
  if (!vs)
    abort();
  if (n1)
    memcpy(vs, found, n1 * sizeof *vs);
  size_t n2 = amc_store_find(r->store, "VirtualService", ns[0] ? ns : NULL,
                             path, 2, name, &found);
  for (size_t i = 0; i < n1 + n2; i++) {
    const amc_store_obj_t *o = i < n1 ? vs[i] : found[i - n1];
    if (i >= n1) { /* bound both ways: report once */
      size_t j = 0;
      while (j < n1 && vs[j] != o)
        j++;
      if (j < n1)
        continue;
    }
    vs_scan_t s = {r, key, &now, 0, AMC_BUF_INIT, AMC_BUF_INIT};
    each_gateway(o, scan_gateway, &s);
    if (s.bound) {
      report_one(r, "VirtualService", o, t, s.failed.len ? s.failed.data : NULL,
                 s.unprogrammed.len ? s.unprogrammed.data : NULL);
      n++;
    }
    amc_buf_free(&s.failed);
    amc_buf_free(&s.unprogrammed);
  }
  free(vs);
  amc_buf_free(&full);
  /* Remember this outcome for the other gateways' VirtualServices. */
  outcome_t *keep = malloc(sizeof *keep);
  if (!keep)
    abort();
  *keep = now; /* takes err */
  void *old = NULL;
  amc_strmap_put(&r->outcomes, key, keep, &old);
  outcome_free(old);
  return n;
}
