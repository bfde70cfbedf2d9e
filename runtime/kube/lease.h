/* lease.h - leader election with a coordination.k8s.io/v1 Lease.
 *
 * client-go's algorithm (tools/leaderelection), on the libuv loop:
 *   - every RetryPeriod (jittered by up to 20 % while following) GET the
 *     Lease; 404 -> create it holding it (POST);
 *   - held by another identity and not expired -> wait. Expiry is measured
 *     from the local monotonic time at which this process last saw the
 *     record change, plus the record's leaseDurationSeconds; the remote
 *     renewTime is never compared with the local clock (clock skew);
 *   - expired, released (holderIdentity "") or ours -> PUT with the
 *     resourceVersion just read (optimistic concurrency: 409 = another
 *     replica won the race). Taking over sets acquireTime and increments
 *     leaseTransitions; renewing keeps them;
 *   - the leader renews every RetryPeriod; when no renewal has succeeded
 *     for RenewDeadline it stops leading (on_change(0)) before anyone else
 *     can take over (RenewDeadline < LeaseDuration);
 *   - amc_lease_stop() releases a held lease (holderIdentity "",
 *     leaseDurationSeconds 1) so a follower takes over at once.
 * Defaults: LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod 2 s;
 * required: LeaseDuration > RenewDeadline > 1.2 * RetryPeriod.
 * RBAC: leases get, create, update in the lease's namespace. */
#ifndef AMC_KUBE_LEASE_H
#define AMC_KUBE_LEASE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kube/client.h"
#include "util/buf.h"

typedef struct {
  const char *namespace_;     /* required */
  const char *name;           /* required */
  const char *identity;       /* NULL = $POD_NAME, else hostname_pid */
  uint64_t lease_duration_ms; /* 0 = 15000 */
  uint64_t renew_deadline_ms; /* 0 = 10000 */
  uint64_t retry_period_ms;   /* 0 = 2000 */
  void (*on_change)(void *data, int leading);
  void *data;
} amc_lease_opts_t;

typedef struct amc_lease amc_lease_t;

/* NULL with `err` set when the options are invalid. */
amc_lease_t *amc_lease_new(uv_loop_t *loop, amc_kube_client_t *client,
                           const amc_lease_opts_t *opts, char *err,
                           size_t errlen);
int amc_lease_start(amc_lease_t *l);
/* Stops; a leader first releases the Lease (bounded by 5 s) and reports
 * on_change(0). `closed` runs after the lease is freed. */
void amc_lease_stop(amc_lease_t *l, void (*closed)(void *), void *data);
int amc_lease_is_leader(const amc_lease_t *l);
const char *amc_lease_identity(const amc_lease_t *l);

/* --- the decision logic, separate for tests --- */

typedef struct {
  char *holder;         /* "" when released */
  long long duration_s; /* leaseDurationSeconds */
  char *acquire_time;   /* MicroTime strings, as read (may be NULL) */
  char *renew_time;
  long long transitions;
  char *rv; /* metadata.resourceVersion */
} amc_lease_record_t;

/* Parses a Lease object. Returns 0, or -1 (no metadata.resourceVersion). */
int amc_lease_record_parse(const char *json, size_t len,
                           amc_lease_record_t *out);
void amc_lease_record_free(amc_lease_record_t *r);

/* What this process last saw: the record's content and when (monotonic). */
typedef struct {
  char *fingerprint;
  uint64_t observed_ms;
} amc_lease_observed_t;

typedef enum {
  AMC_LEASE_WAIT = 0, /* someone else holds a live lease */
  AMC_LEASE_TAKE,     /* expired or released: try to acquire */
  AMC_LEASE_RENEW     /* ours: renew */
} amc_lease_action_t;

/* Updates `obs` (a changed record restarts the expiry clock) and decides. */
amc_lease_action_t amc_lease_decide(amc_lease_observed_t *obs,
                                    const amc_lease_record_t *rec,
                                    const char *identity, uint64_t now_ms);

/* The Lease JSON for POST (rv NULL) or PUT. */
void amc_lease_body(amc_buf_t *out, const char *ns, const char *name,
                    const char *rv, const char *holder, long long duration_s,
                    const char *acquire_time, const char *renew_time,
                    long long transitions);

/* Now as a MicroTime ("2026-01-02T15:04:05.000000Z"). */
void amc_lease_microtime(char *out, size_t n);

#endif
