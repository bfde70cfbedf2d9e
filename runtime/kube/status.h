/* status.h - writing sync results back to Istio objects' status.
 *
 * After each sync, amc sets on every Gateway and VirtualService it handled
 * two conditions, in the style Gateway API users know (and kubectl wait
 * understands: `kubectl wait --for=condition=Programmed gateway/x`):
 *
 *   Accepted    True  the rules translated the object (reason Accepted);
 *               False the rules rejected it (reason Invalid + the error)
 *   Programmed  True  AVI holds the translated objects (reason Programmed);
 *               False AVI refused them or was unreachable (reason
 *               ProgrammingFailed, or Pending when not translated)
 *
 * Diagnostics (what Istio can express but AVI cannot) go to
 * `validationMessages` (level WARNING, type {code: "AMC0001", name:
 * "Unsupported"}): with `conditions` and `observedGeneration` the only fields
 * of IstioStatus that survive schema pruning. lastTransitionTime changes only
 * when a condition's status flips.
 *
 * Writes are merge patches (application/merge-patch+json) on the /status
 * subresource, sent only when the status differs from what this writer last
 * wrote for that object (timestamps excluded), one in flight per object
 * (later ones coalesce). Only an enabled writer writes (the leader); enabling
 * forgets what was written, since another replica may have written since.
 * With events on, a status that carries an error also creates a core/v1
 * Event (type Warning) on the object, once per distinct error. */
#ifndef AMC_KUBE_STATUS_H
#define AMC_KUBE_STATUS_H

#include <stddef.h>

#include "kube/client.h"
#include "util/buf.h"

typedef struct {
  int accepted;
  const char *accepted_reason;  /* NULL = "Accepted" / "Invalid" */
  const char *accepted_message; /* NULL = "" */
  int programmed;
  const char *programmed_reason;
  const char *programmed_message;
  const char *const *warnings;   /* NULL-terminated diagnostics, or NULL */
  long long observed_generation; /* 0 = not set */
} amc_kube_status_t;

enum {
  AMC_STATUS_WRITTEN = 0,
  AMC_STATUS_UNCHANGED = 1,
  AMC_STATUS_SKIPPED = 2, /* writer disabled (not the leader) */
  AMC_STATUS_FAILED = -1
};

/* Builds the merge-patch body. `prev` holds the last written conditions as
 * "Accepted=True@<time>;Programmed=False@<time>" (NULL = none) to keep
 * lastTransitionTime; `now` is an RFC 3339 time. Writes the new condition
 * memory to `next` and the time-free fingerprint to `fingerprint`. */
void amc_kube_status_body(const amc_kube_status_t *st, const char *prev,
                          const char *now, amc_buf_t *body, amc_buf_t *next,
                          amc_buf_t *fingerprint);

typedef struct amc_kube_status_writer amc_kube_status_writer_t;

/* `done` (may be NULL) reports each write's result. */
typedef void (*amc_kube_status_done_fn)(void *data, const char *kind,
                                        const char *ns, const char *name,
                                        int result);

amc_kube_status_writer_t *
amc_kube_status_writer_new(amc_kube_client_t *client,
                           amc_kube_status_done_fn done, void *data);
/* The networking.istio.io version to write to (from discovery; default
 * "v1"). Copied. */
void amc_kube_status_writer_set_version(amc_kube_status_writer_t *w,
                                        const char *version);
void amc_kube_status_writer_enable(amc_kube_status_writer_t *w, int on);
void amc_kube_status_writer_set_events(amc_kube_status_writer_t *w, int on);

/* Writes the status of Istio object kind/ns/name if changed. Returns
 * AMC_STATUS_UNCHANGED or _SKIPPED at once (done is called too), or
 * AMC_STATUS_WRITTEN when a patch was started or queued (done reports the
 * outcome later), or AMC_STATUS_FAILED for an unknown kind. */
int amc_kube_status_write(amc_kube_status_writer_t *w, const char *kind,
                          const char *ns, const char *name,
                          const amc_kube_status_t *st);
/* Forgets an object (deleted). */
void amc_kube_status_forget(amc_kube_status_writer_t *w, const char *kind,
                            const char *ns, const char *name);
/* Cancels calls in flight (no callbacks). */
void amc_kube_status_writer_cancel(amc_kube_status_writer_t *w);
void amc_kube_status_writer_free(amc_kube_status_writer_t *w);

/* Counters (tests, metrics). */
unsigned amc_kube_status_writes(const amc_kube_status_writer_t *w);
unsigned amc_kube_status_events(const amc_kube_status_writer_t *w);

#endif
