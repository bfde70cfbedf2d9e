/* report.h - turns one gateway's sync outcome into status write-back.
 *
 * After a key (Gateway/<ns>/<name>) is synced, or its translation failed,
 * amc_kube_report() computes the status of the Gateway and of every
 * VirtualService bound to it (spec.gateways names "<ns>/<name>", or
 * "<name>" from the gateway's namespace) and hands them to the status
 * writer (status.h: merge patch only on change, only while enabled, Events
 * for errors when on):
 *
 *   translation failed      Gateway and its VirtualServices:
 *                           Accepted=False (the rule error), Programmed=False
 *   diagnostic of severity  that object: Accepted=False (the first error),
 *   error on an object      with every diagnostic in validationMessages;
 *                           the rest of the tree is still programmed
 *   warnings only           Accepted=True, the warnings in validationMessages
 *   AVI sync                Programmed=True, or False (ProgrammingFailed +
 *                           the AVI error)
 *
 * A missing destination Service is an error diagnostic of the
 * VirtualService (its route is left out of AVI): Accepted=False and, with
 * Events on, a Warning Event. A VirtualService bound to several gateways
 * shows the outcome of the one synced last. A deleted Gateway's status is
 * forgotten. Nothing here owns the store or the writer. */
#ifndef AMC_KUBE_REPORT_H
#define AMC_KUBE_REPORT_H

#include "kube/status.h"
#include "store.h"
#include "translation.h"

/* `key` is "Gateway/<ns>/<name>". `t` is the translation (NULL: the gateway
 * was deleted); when t->error is set the translation failed and `avi_ok` /
 * `avi_error` are ignored. Returns the number of objects reported. */
int amc_kube_report(amc_kube_status_writer_t *w, amc_store_t *store,
                    const char *key, const amc_translation_t *t, int avi_ok,
                    const char *avi_error);

#endif
