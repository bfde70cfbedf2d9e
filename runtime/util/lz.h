/* lz.h - small LZ77 compression against a preset dictionary.
 *
 * For many short, similar texts (the rules engine's memo entries): each is
 * compressed on its own, with a dictionary that is a typical text of the
 * same family, so that what it shares with the dictionary costs a few
 * bytes. No entropy coding: decompression is a byte copy loop.
 *
 * Format: a sequence of tokens. A byte t < 0x80 is a run of t + 1 literal
 * bytes that follow; t >= 0x80 is a match of (t & 0x7f) + 4 bytes copied
 * from `distance` bytes back (a LEB128 varint after t) in the virtual text
 * dictionary || output, so a match may reach into the dictionary. The
 * dictionary must be byte-identical at both ends. */
#ifndef AMC_UTIL_LZ_H
#define AMC_UTIL_LZ_H

#include <stddef.h>

#include "util/buf.h"

/* Appends the compressed form of in[0..n) to `out`. `dict` may be NULL
 * (dlen 0). Never fails (aborts when out of memory, like amc_buf). */
void amc_lz_compress(const void *dict, size_t dlen, const void *in, size_t n,
                     amc_buf_t *out);

/* Appends the text that in[0..n) (amc_lz_compress output with the same
 * dictionary) stands for to `out`. Returns 0, or -1 when the input is
 * malformed (a distance before the dictionary's start, a cut token); `out`
 * then holds garbage. */
int amc_lz_decompress(const void *dict, size_t dlen, const void *in, size_t n,
                      amc_buf_t *out);

/* Like amc_lz_decompress, into out[0..out_len) when the text's length is
 * known (no dictionary copy, no buffer growth: for hot reads). Returns 0,
 * or -1 when the input is malformed or stands for a text of another
 * length; out[0..out_len) then holds garbage. Writes no terminator. */
int amc_lz_decompress_to(const void *dict, size_t dlen, const void *in,
                         size_t n, void *out, size_t out_len);

/* A dictionary prepared for compressing many texts: amc_lz_compress_dict
 * gives the same bytes as amc_lz_compress with the same dictionary, without
 * indexing the dictionary on every call. The object owns a copy of the
 * dictionary (amc_lz_dict_bytes: what to decompress with). Aborts when out
 * of memory. */
typedef struct amc_lz_dict amc_lz_dict_t;
amc_lz_dict_t *amc_lz_dict_new(const void *dict, size_t dlen);
void amc_lz_dict_free(amc_lz_dict_t *d);
const void *amc_lz_dict_bytes(const amc_lz_dict_t *d, size_t *len);
void amc_lz_compress_dict(const amc_lz_dict_t *d, const void *in, size_t n,
                          amc_buf_t *out);

#endif
