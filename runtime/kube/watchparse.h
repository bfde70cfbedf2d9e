/* watchparse.h - splitting a watch response into events and decoding them.
 *
 * A watch body is a stream of JSON objects, one per line from kube-apiserver,
 * delivered in arbitrary chunks: an event may span many chunks and a chunk
 * may hold many events. amc_watch_lines_feed() buffers the bytes and calls
 * `on_line` for each complete, non-blank line. A stream that puts several
 * objects on one line without newlines is not supported (the API server
 * always writes one per line).
 *
 * amc_watch_event_parse() reads one line: {"type": T, "object": {...}}. */
#ifndef AMC_KUBE_WATCHPARSE_H
#define AMC_KUBE_WATCHPARSE_H

#include <stddef.h>

#include "kube/kjson.h"
#include "util/buf.h"

typedef struct {
  amc_buf_t pending; /* bytes of an incomplete line */
  size_t max_line;   /* lines longer than this are an error (default 64 MB) */
} amc_watch_lines_t;

/* Returns 0 to continue, non-zero to stop feeding (returned by feed). */
typedef int (*amc_watch_line_fn)(const char *line, size_t n, void *data);

void amc_watch_lines_init(amc_watch_lines_t *w);
/* Feeds a chunk. Returns 0, the non-zero value of on_line that stopped it, or
 * -1 when a line exceeds max_line. */
int amc_watch_lines_feed(amc_watch_lines_t *w, const char *p, size_t n,
                         amc_watch_line_fn on_line, void *data);
/* Bytes held for an incomplete line (non-zero at EOF = truncated event). */
size_t amc_watch_lines_pending(const amc_watch_lines_t *w);
void amc_watch_lines_reset(amc_watch_lines_t *w);
void amc_watch_lines_free(amc_watch_lines_t *w);

typedef enum {
  AMC_WATCH_ADDED = 1,
  AMC_WATCH_MODIFIED,
  AMC_WATCH_DELETED,
  AMC_WATCH_BOOKMARK,
  AMC_WATCH_ERROR
} amc_watch_type_t;

typedef struct {
  amc_watch_type_t type;
  amc_kjson_t object; /* the object (or the Status for ERROR) */
  long long code;     /* ERROR: Status.code (410 = expired), else 0 */
} amc_watch_event_t;

/* Returns 0, or -1 with `err` set (not JSON, unknown type, no object). */
int amc_watch_event_parse(const char *line, size_t n, amc_watch_event_t *ev,
                          char *err, size_t errlen);

/* Reads metadata.{namespace,name,resourceVersion} of an object (malloc'd,
 * caller frees; namespace is NULL for cluster-scoped objects). Returns 0, or
 * -1 when name or resourceVersion is missing (a BOOKMARK needs only the
 * resourceVersion: pass name = NULL). */
int amc_kube_object_meta(amc_kjson_t obj, char **ns, char **name, char **rv);

#endif
