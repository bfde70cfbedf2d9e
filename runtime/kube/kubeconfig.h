/* kubeconfig.h - where the Kubernetes API is and how to authenticate to it.
 *
 * Two ways to get an amc_kubeconfig_t:
 *
 *   amc_kubeconfig_load()       kubeconfig files: the current context or a
 *                               named one; server, CA (file or data), client
 *                               cert/key (file or data), bearer token or
 *                               tokenFile, insecure-skip-tls-verify,
 *                               tls-server-name, the context's namespace.
 *                               KUBECONFIG may list several files separated
 *                               by ':'; as in kubectl, the first file that
 *                               sets `current-context` wins, and the first
 *                               definition of each named context, cluster and
 *                               user wins. Relative file paths are resolved
 *                               against the directory of the kubeconfig file
 *                               that defines them.
 *   amc_kubeconfig_in_cluster() the pod's service account:
 *                               https://$KUBERNETES_SERVICE_HOST:$..._PORT,
 *                               <dir>/ca.crt, <dir>/token (as a token file,
 *                               so rotation is followed), <dir>/namespace.
 *                               <dir> defaults to
 *                               /var/run/secrets/kubernetes.io/serviceaccount
 *                               and can be overridden (tests) by the argument
 *                               or $AMC_SERVICEACCOUNT_DIR.
 *
 * Not supported (reported as errors naming the field, never silently
 * ignored): exec credential plugins, auth-provider, username/password.
 *
 * Data fields (`*-data`) are base64-decoded into memory (PEM) and passed to
 * the HTTP module as blobs; they are never written to disk or logged.
 *
 * The token source (amc_token_source_t) is how every request gets its bearer
 * token: a static token, or a file re-read when the cached copy is older than
 * the refresh period (60 s by default) and immediately after the API server
 * answered 401 (amc_token_source_invalidate). The file is opened by path each
 * time, so the kubelet's atomic symlink swaps are seen. */
#ifndef AMC_KUBE_KUBECONFIG_H
#define AMC_KUBE_KUBECONFIG_H

#include <stddef.h>
#include <stdint.h>

#define AMC_SERVICEACCOUNT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct {
  char *server;          /* "https://host:port", no trailing '/' */
  char *ca_file;         /* absolute path, or NULL */
  char *ca_pem;          /* decoded certificate-authority-data, or NULL */
  char *cert_file;       /* client certificate (absolute path) or NULL */
  char *cert_pem;        /* or decoded client-certificate-data */
  char *key_file;        /* client key */
  char *key_pem;         /* or decoded client-key-data (secret) */
  char *token;           /* static bearer token (secret), or NULL */
  char *token_file;      /* absolute path of a token file, or NULL */
  char *tls_server_name; /* name the server cert is checked against, or NULL */
  int insecure;          /* insecure-skip-tls-verify: true */
  char *namespace_;      /* context / service-account namespace, or NULL */
  char *context;         /* context name, or "in-cluster" */
  char *origin;          /* the file that defined the context (for errors) */
} amc_kubeconfig_t;

/* Loads from `paths` (a ':'-separated list; NULL = $KUBECONFIG, else
 * $HOME/.kube/config) using `context` (NULL = current-context). Returns 0,
 * or -1 with `err` naming the file and field. `out` is zeroed first and must
 * be released with amc_kubeconfig_free in both cases. */
int amc_kubeconfig_load(const char *paths, const char *context,
                        amc_kubeconfig_t *out, char *err, size_t errlen);

/* The in-cluster configuration (see above). `sa_dir` may be NULL. Returns 0,
 * or -1 with `err` set (not in a cluster, unreadable CA...). */
int amc_kubeconfig_in_cluster(const char *sa_dir, amc_kubeconfig_t *out,
                              char *err, size_t errlen);

void amc_kubeconfig_free(amc_kubeconfig_t *c);

/* Decodes standard base64 (whitespace ignored). Returns a malloc'd,
 * NUL-terminated buffer (length in *n), or NULL when invalid. */
char *amc_base64_decode(const char *s, size_t *n);

/* --- bearer tokens --- */

typedef struct amc_token_source amc_token_source_t;

/* A source for `cfg` (copies what it needs; a config without token and token
 * file gives a source that returns NULL). `refresh_ms` 0 = 60000. */
amc_token_source_t *amc_token_source_new(const amc_kubeconfig_t *cfg,
                                         uint64_t refresh_ms);

/* The current token (borrowed until the next call), re-reading the file
 * when the cached copy is older than the refresh period or invalidated.
 * A failed re-read keeps the previous token (and logs the error once).
 * NULL when there is no token. `now_ms` is a monotonic clock. */
const char *amc_token_source_get(amc_token_source_t *ts, uint64_t now_ms);

/* Forces a re-read on the next get (after a 401). Returns 1 when the source
 * is file-backed (a retry may help), 0 otherwise. */
int amc_token_source_invalidate(amc_token_source_t *ts);

/* Number of times the file was read (tests, metrics). */
unsigned amc_token_source_reads(const amc_token_source_t *ts);

void amc_token_source_free(amc_token_source_t *ts);

#endif
