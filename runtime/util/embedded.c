/* embedded.c - lookup in the table of embedded runtime Lua files. */
#include "util/embedded.h"

#include <string.h>

const amc_embedded_file_t *amc_embedded_find(const char *name) {
  for (const amc_embedded_file_t *f = amc_embedded_lua; f->name; f++) {
    if (strcmp(f->name, name) == 0)
      return f;
  }
  return NULL;
}
