/* grow.h - room for one more element at the end of a growable array.
 *
 * AMC_GROW(v, n, cap, first): when the array `v` (n elements used, cap
 * allocated) is full, reallocates it to twice its capacity (`first`
 * elements the first time). `v`, `n` and `cap` are lvalues, evaluated
 * more than once. Out of memory aborts: the callers (the rules engine's
 * bookkeeping) have no useful way to go on without the element. */
#ifndef AMC_UTIL_GROW_H
#define AMC_UTIL_GROW_H

#include <stdlib.h>

#define AMC_GROW(v, n, cap, first)                                             \
  do {                                                                         \
    if ((n) == (cap)) {                                                        \
      size_t amc_grow_nc_ = (cap) ? (cap)*2 : (first);                         \
      void *amc_grow_p_ = realloc((v), amc_grow_nc_ * sizeof *(v));            \
      if (!amc_grow_p_)                                                        \
        abort();                                                               \
      (v) = amc_grow_p_;                                                       \
      (cap) = amc_grow_nc_;                                                    \
    }                                                                          \
  } while (0)

#endif
