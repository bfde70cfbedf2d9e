/* report.c - see report.h. */
#include "kube/report.h"

#include <stdlib.h>
#include <string.h>

#include "kube/kjson.h"
#include "util/buf.h"

#define MAX_WARNINGS 32

/* metadata.generation of a stored object, 0 when absent. */
static long long generation_of(const amc_store_obj_t *o) {
  amc_kjson_t doc, g;
  long long v = 0;
  if (!o || amc_kjson_parse(o->json, strlen(o->json), &doc) != 0 ||
      amc_kjson_path(doc, "metadata.generation", &g) != 0 ||
      amc_kjson_int(g, &v) != 0)
    return 0;
  return v;
}

static int same(const char *a, const char *b) {
  return (a ? a : "")[0] == (b ? b : "")[0] && !strcmp(a ? a : "", b ? b : "");
}

/* 1 when VirtualService `vs` names gateway gw_ns/gw_name in spec.gateways. */
static int bound(const amc_store_obj_t *vs, const char *gw_ns,
                 const char *gw_name) {
  amc_kjson_t doc, gws, e;
  if (amc_kjson_parse(vs->json, strlen(vs->json), &doc) != 0 ||
      amc_kjson_path(doc, "spec.gateways", &gws) != 0)
    return 0;
  size_t pos = 0;
  int found = 0;
  while (!found && amc_kjson_array_next(gws, &pos, &e) == 1) {
    char *s = amc_kjson_strdup(e);
    if (!s)
      continue;
    const char *slash = strchr(s, '/');
    if (slash)
      found = (size_t)(slash - s) == strlen(gw_ns) &&
              !strncmp(s, gw_ns, slash - s) && !strcmp(slash + 1, gw_name);
    else
      found = same(vs->namespace_, gw_ns) && !strcmp(s, gw_name);
    free(s);
  }
  return found;
}

/* Writes the status of one object from the diagnostics that concern it. */
static int report_one(amc_kube_status_writer_t *w, const char *kind,
                      const amc_store_obj_t *o, const amc_translation_t *t,
                      const char *fail, int avi_ok, const char *avi_error) {
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
    st.programmed = 0;
  } else {
    st.accepted = first_error == NULL;
    st.accepted_message = first_error;
    st.programmed = avi_ok;
    st.programmed_reason = avi_ok ? "Programmed" : "ProgrammingFailed";
    st.programmed_message = avi_ok ? NULL : avi_error;
  }
  amc_kube_status_write(w, kind, o->namespace_, o->name, &st);
  for (size_t i = 0; i < nw; i++)
    amc_buf_free(&text[i]);
  return 1;
}

int amc_kube_report(amc_kube_status_writer_t *w, amc_store_t *store,
                    const char *key, const amc_translation_t *t, int avi_ok,
                    const char *avi_error) {
  /* key: Gateway/<ns>/<name> */
  const char *a = strchr(key, '/');
  const char *b = a ? strchr(a + 1, '/') : NULL;
  if (!w || !a || !b)
    return 0;
  char ns[256], name[256];
  size_t nl = (size_t)(b - a - 1);
  if (nl >= sizeof ns || strlen(b + 1) >= sizeof name)
    return 0;
  memcpy(ns, a + 1, nl);
  ns[nl] = 0;
  strcpy(name, b + 1);
  const amc_store_obj_t *gw =
      amc_store_get(store, "Gateway", ns[0] ? ns : NULL, name);
  if (!t || !gw) {
    amc_kube_status_forget(w, "Gateway", ns, name);
    return 0;
  }
  amc_buf_t why = AMC_BUF_INIT;
  const char *fail = t->error;
  int n = report_one(w, "Gateway", gw, t, fail, avi_ok, avi_error);
  if (fail)
    amc_buf_printf(&why, "Gateway %s/%s: %s", ns, name, fail);
  const amc_store_obj_t *const *vs;
  size_t nvs = amc_store_list(store, "VirtualService", NULL, &vs);
  for (size_t i = 0; i < nvs; i++)
    if (bound(vs[i], ns, name))
      n += report_one(w, "VirtualService", vs[i], t,
                      fail ? why.data : NULL, avi_ok, avi_error);
  amc_buf_free(&why);
  return n;
}
