/* obj_json.h - for unit tests: a stored object's JSON as a C string.
 *
 * amc_store_json may decompress into a caller's buffer; tests compare
 * texts, so obj_json copies the JSON into one of four rotating buffers:
 * a result stays valid for the next three calls. The buffers live until
 * the test process exits. */
#ifndef AMC_TEST_OBJ_JSON_H
#define AMC_TEST_OBJ_JSON_H

#include "store.h"
#include "util/buf.h"

static inline const char *obj_json(const amc_store_obj_t *o) {
  static amc_buf_t bufs[4];
  static unsigned next;
  amc_buf_t *b = &bufs[next++ % 4];
  size_t n;
  const char *j = amc_store_json(o, b, &n);
  if (j != b->data) {
    amc_buf_reset(b);
    amc_buf_append(b, j, n);
  }
  return b->data;
}

#endif
