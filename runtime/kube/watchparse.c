/* watchparse.c - watch stream framing and event decoding. */
#include "kube/watchparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void amc_watch_lines_init(amc_watch_lines_t *w) {
  memset(w, 0, sizeof *w);
  w->max_line = 64u << 20;
}

static int blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
      return 0;
  return 1;
}

int amc_watch_lines_feed(amc_watch_lines_t *w, const char *p, size_t n,
                         amc_watch_line_fn on_line, void *data) {
  while (n > 0) {
    const char *nl = memchr(p, '\n', n);
    if (!nl) {
      if (w->pending.len + n > w->max_line)
        return -1;
      amc_buf_append(&w->pending, p, n);
      return 0;
    }
    size_t k = (size_t)(nl - p);
    int r = 0;
    if (w->pending.len > 0) {
      if (w->pending.len + k > w->max_line)
        return -1;
      amc_buf_append(&w->pending, p, k);
      /* The callback may reset this parser; work on a stolen copy. */
      size_t len = w->pending.len;
      char *line = amc_buf_steal(&w->pending);
      if (!blank(line, len))
        r = on_line(line, len, data);
      free(line);
    } else if (!blank(p, k)) {
      r = on_line(p, k, data);
    }
    if (r)
      return r;
    p = nl + 1;
    n -= k + 1;
  }
  return 0;
}

size_t amc_watch_lines_pending(const amc_watch_lines_t *w) {
  return w->pending.len;
}

void amc_watch_lines_reset(amc_watch_lines_t *w) {
  amc_buf_reset(&w->pending);
}

void amc_watch_lines_free(amc_watch_lines_t *w) {
  amc_buf_free(&w->pending);
}

int amc_watch_event_parse(const char *line, size_t n, amc_watch_event_t *ev,
                          char *err, size_t errlen) {
  memset(ev, 0, sizeof *ev);
  amc_kjson_t doc, t;
  if (amc_kjson_parse(line, n, &doc) != 0 || amc_kjson_type(doc) != 'o') {
    snprintf(err, errlen, "watch event is not a JSON object");
    return -1;
  }
  if (amc_kjson_get(doc, "type", &t) != 0 || amc_kjson_type(t) != 's') {
    snprintf(err, errlen, "watch event has no type");
    return -1;
  }
  static const struct {
    const char *name;
    amc_watch_type_t type;
  } types[] = {{"ADDED", AMC_WATCH_ADDED},
               {"MODIFIED", AMC_WATCH_MODIFIED},
               {"DELETED", AMC_WATCH_DELETED},
               {"BOOKMARK", AMC_WATCH_BOOKMARK},
               {"ERROR", AMC_WATCH_ERROR}};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++)
    if (amc_kjson_streq(t, types[i].name))
      ev->type = types[i].type;
  if (!ev->type) {
    snprintf(err, errlen, "watch event has an unknown type");
    return -1;
  }
  if (amc_kjson_get(doc, "object", &ev->object) != 0 ||
      amc_kjson_type(ev->object) != 'o') {
    snprintf(err, errlen, "watch event has no object");
    return -1;
  }
  if (ev->type == AMC_WATCH_ERROR) {
    amc_kjson_t c;
    if (amc_kjson_get(ev->object, "code", &c) == 0)
      amc_kjson_int(c, &ev->code);
    amc_kjson_t reason;
    if (ev->code == 0 && amc_kjson_get(ev->object, "reason", &reason) == 0 &&
        (amc_kjson_streq(reason, "Expired") || amc_kjson_streq(reason, "Gone")))
      ev->code = 410;
  }
  return 0;
}

int amc_kube_object_meta(amc_kjson_t obj, char **ns, char **name, char **rv) {
  amc_kjson_t md, v;
  if (ns)
    *ns = NULL;
  if (name)
    *name = NULL;
  *rv = NULL;
  if (amc_kjson_get(obj, "metadata", &md) != 0)
    return -1;
  if (amc_kjson_get(md, "resourceVersion", &v) == 0)
    *rv = amc_kjson_strdup(v);
  if (!*rv)
    return -1;
  if (ns && amc_kjson_get(md, "namespace", &v) == 0) {
    *ns = amc_kjson_strdup(v);
    if (*ns && !**ns) {
      free(*ns);
      *ns = NULL;
    }
  }
  if (name) {
    if (amc_kjson_get(md, "name", &v) == 0)
      *name = amc_kjson_strdup(v);
    if (!*name || !**name) {
      free(*rv);
      *rv = NULL;
      if (ns) {
        free(*ns);
        *ns = NULL;
      }
      free(*name);
      *name = NULL;
      return -1;
    }
  }
  return 0;
}
