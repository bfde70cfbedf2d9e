/* metrics.c - metric registry and Prometheus text exposition. */
#include "metrics.h"

#include "util/strmap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind_t;

typedef struct {
  char **values; /* n_labels copies */
  double value;  /* counter/gauge */
  double sum;    /* histogram */
  unsigned long long count;
  unsigned long long *buckets; /* histogram: per-bucket (not cumulative) */
} series_t;

struct amc_metric {
  amc_metric_t *next;
  kind_t kind;
  char *name;
  char *help;
  char **labels;
  size_t n_labels;
  double *bounds;
  size_t n_bounds;
  amc_strmap_t series; /* joined label values -> series_t */
};

struct amc_metrics {
  amc_metric_t *first, *last;
  amc_metrics_collect_fn collect;
  void *collect_data;
};

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

static char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (!p)
    abort();
  return p;
}

amc_metrics_t *amc_metrics_new(void) {
  return calloc(1, sizeof(amc_metrics_t));
}

static void series_free(void *p) {
  series_t *s = p;
  if (!s)
    return;
  /* n_labels is not stored per series: values is NULL-terminated */
  for (char **v = s->values; v && *v; v++)
    free(*v);
  free(s->values);
  free(s->buckets);
  free(s);
}

void amc_metrics_free(amc_metrics_t *reg) {
  if (!reg)
    return;
  amc_metric_t *m = reg->first;
  while (m) {
    amc_metric_t *next = m->next;
    amc_strmap_clear(&m->series, series_free);
    for (size_t i = 0; i < m->n_labels; i++)
      free(m->labels[i]);
    free(m->labels);
    free(m->bounds);
    free(m->name);
    free(m->help);
    free(m);
    m = next;
  }
  free(reg);
}

static amc_metric_t *family_new(amc_metrics_t *reg, kind_t kind,
                                const char *name, const char *help,
                                const char *const *labels) {
  for (amc_metric_t *m = reg->first; m; m = m->next) {
    if (strcmp(m->name, name) == 0)
      return NULL;
  }
  amc_metric_t *m = xcalloc(1, sizeof *m);
  m->kind = kind;
  m->name = xstrdup(name);
  m->help = xstrdup(help ? help : "");
  for (const char *const *l = labels; l && *l; l++)
    m->n_labels++;
  m->labels = xcalloc(m->n_labels, sizeof *m->labels);
  for (size_t i = 0; i < m->n_labels; i++)
    m->labels[i] = xstrdup(labels[i]);
  if (reg->last)
    reg->last->next = m;
  else
    reg->first = m;
  reg->last = m;
  return m;
}

amc_metric_t *amc_metrics_counter(amc_metrics_t *reg, const char *name,
                                  const char *help, const char *const *labels) {
  return family_new(reg, KIND_COUNTER, name, help, labels);
}

amc_metric_t *amc_metrics_gauge(amc_metrics_t *reg, const char *name,
                                const char *help, const char *const *labels) {
  return family_new(reg, KIND_GAUGE, name, help, labels);
}

amc_metric_t *amc_metrics_histogram(amc_metrics_t *reg, const char *name,
                                    const char *help, const char *const *labels,
                                    const double *bounds, size_t n_bounds) {
  amc_metric_t *m = family_new(reg, KIND_HISTOGRAM, name, help, labels);
  if (!m)
    return NULL;
  m->bounds = xcalloc(n_bounds, sizeof *m->bounds);
  memcpy(m->bounds, bounds, n_bounds * sizeof *bounds);
  m->n_bounds = n_bounds;
  return m;
}

/* The series for `values`, created on first use. The map key joins the
 * values with '\x1f' (a byte no label value here carries). */
static series_t *series_get(amc_metric_t *m, const char *const *values,
                            int create) {
  amc_buf_t k = AMC_BUF_INIT;
  amc_buf_puts(&k, "");
  for (size_t i = 0; i < m->n_labels; i++) {
    if (i)
      amc_buf_putc(&k, '\x1f');
    amc_buf_puts(&k, values && values[i] ? values[i] : "");
  }
  series_t *s = amc_strmap_get(&m->series, k.data);
  if (!s && create) {
    s = xcalloc(1, sizeof *s);
    s->values = xcalloc(m->n_labels + 1, sizeof *s->values);
    for (size_t i = 0; i < m->n_labels; i++)
      s->values[i] = xstrdup(values && values[i] ? values[i] : "");
    if (m->kind == KIND_HISTOGRAM)
      s->buckets = xcalloc(m->n_bounds + 1, sizeof *s->buckets);
    amc_strmap_put(&m->series, k.data, s, NULL);
  }
  amc_buf_free(&k);
  return s;
}

void amc_metric_add(amc_metric_t *m, const char *const *values, double v) {
  if (!m || m->kind == KIND_HISTOGRAM)
    return;
  if (m->kind == KIND_COUNTER && !(v >= 0))
    return;
  series_get(m, values, 1)->value += v;
}

void amc_metric_set(amc_metric_t *m, const char *const *values, double v) {
  if (!m || m->kind != KIND_GAUGE)
    return;
  series_get(m, values, 1)->value = v;
}

void amc_metric_reset(amc_metric_t *m) {
  if (m)
    amc_strmap_clear(&m->series, series_free);
}

void amc_metric_observe(amc_metric_t *m, const char *const *values, double v) {
  if (!m || m->kind != KIND_HISTOGRAM)
    return;
  series_t *s = series_get(m, values, 1);
  size_t i = 0;
  while (i < m->n_bounds && v > m->bounds[i])
    i++;
  s->buckets[i]++;
  s->count++;
  s->sum += v;
}

double amc_metric_value(amc_metric_t *m, const char *const *values) {
  if (!m)
    return 0;
  series_t *s = series_get(m, values, 0);
  if (!s)
    return 0;
  return m->kind == KIND_HISTOGRAM ? (double)s->count : s->value;
}

void amc_metrics_set_collect(amc_metrics_t *reg, amc_metrics_collect_fn fn,
                             void *data) {
  reg->collect = fn;
  reg->collect_data = data;
}

/* ------------------------------------------------------------------------ */
/* Exposition */

static void put_number(amc_buf_t *b, double v) {
  if (isnan(v)) {
    amc_buf_puts(b, "NaN");
  } else if (isinf(v)) {
    amc_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
  } else if (v == (double)(long long)v && fabs(v) < 1e15) {
    amc_buf_printf(b, "%lld", (long long)v);
  } else {
    char tmp[40];
    /* Shortest of %.15g..%.17g that reads back exactly. */
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(tmp, sizeof tmp, "%.*g", prec, v);
      if (strtod(tmp, NULL) == v)
        break;
    }
    amc_buf_puts(b, tmp);
  }
}

static void put_escaped(amc_buf_t *b, const char *s, int quote) {
  for (; *s; s++) {
    if (*s == '\\')
      amc_buf_puts(b, "\\\\");
    else if (*s == '\n')
      amc_buf_puts(b, "\\n");
    else if (quote && *s == '"')
      amc_buf_puts(b, "\\\"");
    else
      amc_buf_putc(b, *s);
  }
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels. */
static void put_labels(amc_buf_t *b, const amc_metric_t *m, const series_t *s,
                       const char *le) {
  if (m->n_labels == 0 && !le)
    return;
  amc_buf_putc(b, '{');
  for (size_t i = 0; i < m->n_labels; i++) {
    if (i)
      amc_buf_putc(b, ',');
    amc_buf_printf(b, "%s=\"", m->labels[i]);
    put_escaped(b, s->values[i], 1);
    amc_buf_putc(b, '"');
  }
  if (le) {
    if (m->n_labels)
      amc_buf_putc(b, ',');
    amc_buf_printf(b, "le=\"%s\"", le);
  }
  amc_buf_putc(b, '}');
}

typedef struct {
  const char *key;
  series_t *s;
} sorted_t;

typedef struct {
  sorted_t *v;
  size_t n;
} sorted_list_t;

static int collect_series(const char *key, void *value, void *data) {
  sorted_list_t *l = data;
  l->v[l->n].key = key;
  l->v[l->n].s = value;
  l->n++;
  return 0;
}

static int cmp_sorted(const void *a, const void *b) {
  return strcmp(((const sorted_t *)a)->key, ((const sorted_t *)b)->key);
}

static void render_family(amc_buf_t *b, amc_metric_t *m) {
  static const char *types[] = {"counter", "gauge", "histogram"};
  amc_buf_printf(b, "# HELP %s ", m->name);
  put_escaped(b, m->help, 0);
  amc_buf_printf(b, "\n# TYPE %s %s\n", m->name, types[m->kind]);
  sorted_list_t l = {xcalloc(m->series.count, sizeof(sorted_t)), 0};
  amc_strmap_foreach(&m->series, collect_series, &l);
  qsort(l.v, l.n, sizeof *l.v, cmp_sorted);
  for (size_t i = 0; i < l.n; i++) {
    series_t *s = l.v[i].s;
    if (m->kind != KIND_HISTOGRAM) {
      amc_buf_puts(b, m->name);
      put_labels(b, m, s, NULL);
      amc_buf_putc(b, ' ');
      put_number(b, s->value);
      amc_buf_putc(b, '\n');
      continue;
    }
    unsigned long long cum = 0;
    char le[40];
    for (size_t j = 0; j <= m->n_bounds; j++) {
      cum += s->buckets[j];
      if (j < m->n_bounds) {
        amc_buf_t t = AMC_BUF_INIT;
        put_number(&t, m->bounds[j]);
        snprintf(le, sizeof le, "%s", t.data);
        amc_buf_free(&t);
      } else {
        snprintf(le, sizeof le, "+Inf");
      }
      amc_buf_printf(b, "%s_bucket", m->name);
      put_labels(b, m, s, le);
      amc_buf_printf(b, " %llu\n", cum);
    }
    amc_buf_printf(b, "%s_sum", m->name);
    put_labels(b, m, s, NULL);
    amc_buf_putc(b, ' ');
    put_number(b, s->sum);
    amc_buf_printf(b, "\n%s_count", m->name);
    put_labels(b, m, s, NULL);
    amc_buf_printf(b, " %llu\n", s->count);
  }
  free(l.v);
}

void amc_metrics_render(amc_metrics_t *reg, amc_buf_t *out) {
  if (reg->collect)
    reg->collect(reg, reg->collect_data);
  amc_buf_puts(out, "");
  for (amc_metric_t *m = reg->first; m; m = m->next)
    render_family(out, m);
}
