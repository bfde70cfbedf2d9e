/* report.h - turns gateways' sync outcomes into status write-back.
 *
 * After a key (Gateway/<ns>/<name>) is synced, or its translation failed,
 * amc_kube_report() computes the status of the Gateway and of every
 * VirtualService bound to it (spec.gateways names "<ns>/<name>", or
 * "<name>" from the VirtualService's namespace) and hands them to the
 * status writer (status.h: merge patch only on change, only while enabled,
 * Events for errors when on):
 *
 *   translation failed      Gateway: Accepted=False (the rule error),
 *                           Programmed=False (Pending)
 *   diagnostic of severity  that object: Accepted=False (the first error),
 *   error on an object      with every diagnostic in validationMessages;
 *                           the rest of the tree is still programmed
 *   warnings only           Accepted=True, the warnings in validationMessages
 *   AVI sync                Programmed=True, or False (ProgrammingFailed +
 *                           the AVI error)
 *
 * A VirtualService reflects every Gateway it is bound to, by the last
 * outcome remembered for each: Accepted=False when one of them failed to
 * translate ("Gateway <ns>/<name>: <error>") or when the current
 * translation reports an error on it; Programmed=False when AVI failed for
 * one of them. Gateways not synced yet do not count.
 *
 * A missing destination Service is an error diagnostic of the
 * VirtualService (its route is left out of AVI): Accepted=False and, with
 * Events on, a Warning Event. A deleted Gateway's status and outcome are
 * forgotten. The reporter borrows the store and the writer. */
#ifndef AMC_KUBE_REPORT_H
#define AMC_KUBE_REPORT_H

#include "kube/status.h"
#include "store.h"
#include "translation.h"

typedef struct amc_kube_report amc_kube_report_t;

amc_kube_report_t *amc_kube_report_new(amc_kube_status_writer_t *w,
                                       amc_store_t *store);
void amc_kube_report_free(amc_kube_report_t *r);

/* `key` is "Gateway/<ns>/<name>". `t` is the translation (NULL: the gateway
 * was deleted); when t->error is set the translation failed and `avi_ok` /
 * `avi_error` are ignored. Returns the number of objects reported. */
int amc_kube_report(amc_kube_report_t *r, const char *key,
                    const amc_translation_t *t, int avi_ok,
                    const char *avi_error);

#endif
