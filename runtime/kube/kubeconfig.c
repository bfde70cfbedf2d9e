/* kubeconfig.c - kubeconfig files and the in-cluster service account. */
#include "kube/kubeconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "http.h"
#include "util/buf.h"
#include "util/log.h"

/* One parsed kubeconfig file. */
typedef struct {
  char *path;
  char *dir;
  yaml_document_t doc;
  int loaded;
} kc_file_t;

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static char *xstrdup(const char *s) {
  return s ? strdup(s) : NULL;
}

static char *dirname_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static char *resolve(const char *dir, const char *p) {
  if (!p || !*p)
    return NULL;
  if (p[0] == '/' || !dir)
    return strdup(p);
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_printf(&b, "%s/%s", dir, p);
  return amc_buf_steal(&b);
}

/* --- YAML document helpers --- */

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *m,
                            const char *key) {
  if (!m || m->type != YAML_MAPPING_NODE)
    return NULL;
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start;
       p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(d, p->key);
    if (k && k->type == YAML_SCALAR_NODE &&
        strlen(key) == k->data.scalar.length &&
        memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
      return yaml_document_get_node(d, p->value);
  }
  return NULL;
}

/* The scalar's text, or NULL (not a scalar / missing / empty). */
static const char *scalar(yaml_node_t *n) {
  if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length == 0)
    return NULL;
  return (const char *)n->data.scalar.value;
}

/* Finds the entry `name` in the sequence `list` (contexts, clusters, users)
 * and returns its `inner` mapping (context, cluster, user). */
static yaml_node_t *named_entry(yaml_document_t *d, const char *list,
                                const char *inner, const char *name) {
  yaml_node_t *root = yaml_document_get_root_node(d);
  yaml_node_t *seq = map_get(d, root, list);
  if (!seq || seq->type != YAML_SEQUENCE_NODE)
    return NULL;
  for (yaml_node_item_t *i = seq->data.sequence.items.start;
       i < seq->data.sequence.items.top; i++) {
    yaml_node_t *e = yaml_document_get_node(d, *i);
    const char *n = scalar(map_get(d, e, "name"));
    if (n && strcmp(n, name) == 0) {
      yaml_node_t *v = map_get(d, e, inner);
      return v ? v : e; /* an entry without the inner map is still found */
    }
  }
  return NULL;
}

static int load_file(kc_file_t *f, char *err, size_t errlen) {
  FILE *fp = fopen(f->path, "rb");
  if (!fp) {
    seterr(err, errlen, "kubeconfig %s: %s", f->path, strerror(errno));
    return -1;
  }
  yaml_parser_t parser;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, fp);
  int ok = yaml_parser_load(&parser, &f->doc);
  if (!ok) {
    seterr(err, errlen, "kubeconfig %s: line %zu: %s", f->path,
           parser.problem_mark.line + 1,
           parser.problem ? parser.problem : "invalid YAML");
  }
  yaml_parser_delete(&parser);
  fclose(fp);
  if (!ok)
    return -1;
  f->loaded = 1;
  yaml_node_t *root = yaml_document_get_root_node(&f->doc);
  if (root && root->type != YAML_MAPPING_NODE) {
    seterr(err, errlen, "kubeconfig %s: top level is not a mapping", f->path);
    return -1;
  }
  f->dir = dirname_of(f->path);
  return 0;
}

/* Looks up `name` in `list` across the files; first definition wins. */
static yaml_node_t *find_named(kc_file_t *files, size_t n, const char *list,
                               const char *inner, const char *name,
                               kc_file_t **which) {
  for (size_t i = 0; i < n; i++) {
    if (!files[i].loaded || !yaml_document_get_root_node(&files[i].doc))
      continue;
    yaml_node_t *e = named_entry(&files[i].doc, list, inner, name);
    if (e) {
      *which = &files[i];
      return e;
    }
  }
  return NULL;
}

static int is_true(const char *s) {
  return s && (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
               strcmp(s, "yes") == 0);
}

/* Reads a `<field>` (file) / `<field>-data` (base64) pair. */
static int file_or_data(yaml_document_t *d, yaml_node_t *m, const char *dir,
                        const char *field, char **file, char **pem,
                        const char *origin, char *err, size_t errlen) {
  char dkey[96];
  snprintf(dkey, sizeof dkey, "%s-data", field);
  const char *data = scalar(map_get(d, m, dkey));
  const char *path = scalar(map_get(d, m, field));
  if (data) {
    size_t n;
    *pem = amc_base64_decode(data, &n);
    if (!*pem) {
      seterr(err, errlen, "kubeconfig %s: %s is not valid base64", origin,
             dkey);
      return -1;
    }
  } else if (path) {
    *file = resolve(dir, path);
  }
  return 0;
}

int amc_kubeconfig_load(const char *paths, const char *context,
                        amc_kubeconfig_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  amc_buf_t def = AMC_BUF_INIT;
  if (!paths || !*paths)
    paths = getenv("KUBECONFIG");
  if (!paths || !*paths) {
    const char *home = getenv("HOME");
    amc_buf_printf(&def, "%s/.kube/config", home ? home : "");
    paths = def.data;
  }
  /* Split the list. */
  size_t nfiles = 0;
  kc_file_t files[16];
  memset(files, 0, sizeof files);
  int rc = -1;
  const char *p = paths;
  while (*p && nfiles < 16) {
    const char *c = strchr(p, ':');
    size_t len = c ? (size_t)(c - p) : strlen(p);
    if (len > 0)
      files[nfiles++].path = strndup(p, len);
    p += len;
    if (*p == ':')
      p++;
  }
  if (nfiles == 0) {
    seterr(err, errlen, "kubeconfig: no file given");
    goto done;
  }
  for (size_t i = 0; i < nfiles; i++) {
    /* As kubectl: missing files in a KUBECONFIG list are skipped; a single
     * file must exist. */
    if (nfiles > 1) {
      FILE *fp = fopen(files[i].path, "rb");
      if (!fp)
        continue;
      fclose(fp);
    }
    if (load_file(&files[i], err, errlen) != 0)
      goto done;
  }

  const char *ctx_name = context;
  kc_file_t *ctx_file = NULL;
  if (!ctx_name) {
    for (size_t i = 0; i < nfiles && !ctx_name; i++) {
      if (!files[i].loaded)
        continue;
      yaml_document_t *d = &files[i].doc;
      ctx_name =
          scalar(map_get(d, yaml_document_get_root_node(d), "current-context"));
    }
    if (!ctx_name) {
      seterr(err, errlen, "kubeconfig %s: no current-context (use --context)",
             paths);
      goto done;
    }
  }
  yaml_node_t *ctx =
      find_named(files, nfiles, "contexts", "context", ctx_name, &ctx_file);
  if (!ctx) {
    seterr(err, errlen, "kubeconfig %s: context \"%s\" not found", paths,
           ctx_name);
    goto done;
  }
  out->context = strdup(ctx_name);
  out->origin = strdup(ctx_file->path);
  yaml_document_t *cd = &ctx_file->doc;
  const char *cluster_name = scalar(map_get(cd, ctx, "cluster"));
  const char *user_name = scalar(map_get(cd, ctx, "user"));
  out->namespace_ = xstrdup(scalar(map_get(cd, ctx, "namespace")));
  if (!cluster_name) {
    seterr(err, errlen, "kubeconfig %s: context \"%s\": no cluster",
           ctx_file->path, ctx_name);
    goto done;
  }

  kc_file_t *cf = NULL;
  yaml_node_t *cl =
      find_named(files, nfiles, "clusters", "cluster", cluster_name, &cf);
  if (!cl) {
    seterr(err, errlen, "kubeconfig %s: cluster \"%s\" not found", paths,
           cluster_name);
    goto done;
  }
  const char *server = scalar(map_get(&cf->doc, cl, "server"));
  if (!server) {
    seterr(err, errlen, "kubeconfig %s: cluster \"%s\": no server", cf->path,
           cluster_name);
    goto done;
  }
  out->server = strdup(server);
  size_t sl = strlen(out->server);
  while (sl > 0 && out->server[sl - 1] == '/')
    out->server[--sl] = 0;
  out->insecure =
      is_true(scalar(map_get(&cf->doc, cl, "insecure-skip-tls-verify")));
  out->tls_server_name =
      xstrdup(scalar(map_get(&cf->doc, cl, "tls-server-name")));
  if (out->tls_server_name && !amc_http_server_name_ok(out->tls_server_name)) {
    seterr(err, errlen,
           "kubeconfig %s: cluster \"%s\": tls-server-name \"%s\" is not a "
           "host name",
           cf->path, cluster_name, out->tls_server_name);
    goto done;
  }
  if (file_or_data(&cf->doc, cl, cf->dir, "certificate-authority",
                   &out->ca_file, &out->ca_pem, cf->path, err, errlen) != 0)
    goto done;

  if (user_name) {
    kc_file_t *uf = NULL;
    yaml_node_t *u = find_named(files, nfiles, "users", "user", user_name, &uf);
    if (!u) {
      seterr(err, errlen, "kubeconfig %s: user \"%s\" not found", paths,
             user_name);
      goto done;
    }
    yaml_document_t *ud = &uf->doc;
    static const char *unsupported[] = {"exec", "auth-provider", "username",
                                        "password"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
      if (map_get(ud, u, unsupported[i])) {
        seterr(err, errlen,
               "kubeconfig %s: user \"%s\": %s is not supported (use a "
               "token, tokenFile or client certificate)",
               uf->path, user_name, unsupported[i]);
        goto done;
      }
    }
    out->token = xstrdup(scalar(map_get(ud, u, "token")));
    out->token_file = resolve(uf->dir, scalar(map_get(ud, u, "tokenFile")));
    if (file_or_data(ud, u, uf->dir, "client-certificate", &out->cert_file,
                     &out->cert_pem, uf->path, err, errlen) != 0 ||
        file_or_data(ud, u, uf->dir, "client-key", &out->key_file,
                     &out->key_pem, uf->path, err, errlen) != 0)
      goto done;
    int has_cert = out->cert_file || out->cert_pem;
    int has_key = out->key_file || out->key_pem;
    if (has_cert != has_key) {
      seterr(err, errlen,
             "kubeconfig %s: user \"%s\": client-certificate and client-key "
             "must be given together",
             uf->path, user_name);
      goto done;
    }
  }
  rc = 0;
done:
  for (size_t i = 0; i < nfiles; i++) {
    if (files[i].loaded)
      yaml_document_delete(&files[i].doc);
    free(files[i].path);
    free(files[i].dir);
  }
  amc_buf_free(&def);
  return rc;
}

static char *read_trimmed(const char *path, int *errnum) {
  amc_buf_t b = AMC_BUF_INIT;
  int r = amc_buf_read_file(&b, path);
  if (r < 0) {
    *errnum = -r;
    amc_buf_free(&b);
    return NULL;
  }
  char *s = amc_buf_steal(&b);
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
                   s[n - 1] == '\t'))
    s[--n] = 0;
  return s;
}

int amc_kubeconfig_in_cluster(const char *sa_dir, amc_kubeconfig_t *out,
                              char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (!sa_dir)
    sa_dir = getenv("AMC_SERVICEACCOUNT_DIR");
  if (!sa_dir || !*sa_dir)
    sa_dir = AMC_SERVICEACCOUNT_DIR;
  const char *host = getenv("KUBERNETES_SERVICE_HOST");
  const char *port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port) {
    seterr(err, errlen,
           "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
           "must be set");
    return -1;
  }
  amc_buf_t b = AMC_BUF_INIT;
  if (strchr(host, ':'))
    amc_buf_printf(&b, "https://[%s]:%s", host, port);
  else
    amc_buf_printf(&b, "https://%s:%s", host, port);
  out->server = amc_buf_steal(&b);
  amc_buf_printf(&b, "%s/token", sa_dir);
  out->token_file = amc_buf_steal(&b);
  amc_buf_printf(&b, "%s/ca.crt", sa_dir);
  out->ca_file = amc_buf_steal(&b);
  out->context = strdup("in-cluster");
  out->origin = strdup(sa_dir);
  FILE *fp = fopen(out->token_file, "rb");
  if (!fp) {
    seterr(err, errlen, "in-cluster: %s: %s", out->token_file, strerror(errno));
    return -1;
  }
  fclose(fp);
  fp = fopen(out->ca_file, "rb");
  if (!fp) {
    seterr(err, errlen, "in-cluster: %s: %s", out->ca_file, strerror(errno));
    return -1;
  }
  fclose(fp);
  amc_buf_printf(&b, "%s/namespace", sa_dir);
  int e = 0;
  out->namespace_ = read_trimmed(b.data, &e);
  amc_buf_free(&b);
  return 0;
}

void amc_kubeconfig_free(amc_kubeconfig_t *c) {
  if (!c)
    return;
  free(c->server);
  free(c->ca_file);
  free(c->ca_pem);
  free(c->cert_file);
  free(c->cert_pem);
  if (c->key_pem) {
    memset(c->key_pem, 0, strlen(c->key_pem));
    free(c->key_pem);
  }
  free(c->key_file);
  if (c->token) {
    memset(c->token, 0, strlen(c->token));
    free(c->token);
  }
  free(c->token_file);
  free(c->tls_server_name);
  free(c->namespace_);
  free(c->context);
  free(c->origin);
  memset(c, 0, sizeof *c);
}

static int b64val(int c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+' || c == '-')
    return 62;
  if (c == '/' || c == '_')
    return 63;
  return -1;
}

char *amc_base64_decode(const char *s, size_t *n) {
  size_t len = strlen(s);
  char *out = malloc(len / 4 * 3 + 4);
  if (!out)
    return NULL;
  size_t o = 0;
  unsigned acc = 0;
  int bits = 0, pad = 0;
  for (size_t i = 0; i < len; i++) {
    int c = (unsigned char)s[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
      continue;
    if (c == '=') {
      pad++;
      continue;
    }
    int v = b64val(c);
    if (v < 0 || pad) {
      free(out);
      return NULL;
    }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char)((acc >> bits) & 0xFF);
    }
  }
  if (pad > 2 || bits >= 6) {
    free(out);
    return NULL;
  }
  out[o] = 0;
  if (n)
    *n = o;
  return out;
}

/* --- token source --- */

struct amc_token_source {
  char *token;      /* static or last read */
  char *file;       /* NULL for a static token */
  uint64_t read_at; /* when `token` was read */
  uint64_t refresh_ms;
  int stale; /* invalidated or never read */
  int logged_error;
  unsigned reads;
};

amc_token_source_t *amc_token_source_new(const amc_kubeconfig_t *cfg,
                                         uint64_t refresh_ms) {
  amc_token_source_t *ts = calloc(1, sizeof *ts);
  if (!ts)
    return NULL;
  ts->refresh_ms = refresh_ms ? refresh_ms : 60000;
  ts->stale = 1;
  /* tokenFile wins over token, as in client-go (the file may rotate). */
  if (cfg->token_file)
    ts->file = strdup(cfg->token_file);
  else if (cfg->token)
    ts->token = strdup(cfg->token);
  return ts;
}

const char *amc_token_source_get(amc_token_source_t *ts, uint64_t now_ms) {
  if (!ts->file)
    return ts->token;
  if (ts->stale || !ts->token || now_ms - ts->read_at >= ts->refresh_ms) {
    int e = 0;
    char *t = read_trimmed(ts->file, &e);
    ts->reads++;
    if (t && *t) {
      if (ts->token) {
        memset(ts->token, 0, strlen(ts->token));
        free(ts->token);
      }
      ts->token = t;
      ts->logged_error = 0;
    } else {
      free(t);
      if (!ts->logged_error)
        amc_log(AMC_WARN, "kube.token_file_unreadable", AMC_S("file", ts->file),
                AMC_S("error", e ? strerror(e) : "empty file"));
      ts->logged_error = 1;
    }
    ts->read_at = now_ms;
    ts->stale = 0;
  }
  return ts->token;
}

int amc_token_source_invalidate(amc_token_source_t *ts) {
  ts->stale = 1;
  return ts->file != NULL;
}

unsigned amc_token_source_reads(const amc_token_source_t *ts) {
  return ts->reads;
}

void amc_token_source_free(amc_token_source_t *ts) {
  if (!ts)
    return;
  if (ts->token) {
    memset(ts->token, 0, strlen(ts->token));
    free(ts->token);
  }
  free(ts->file);
  free(ts);
}
