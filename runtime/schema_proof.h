/* schema_proof.h - a fast check that an emitted AVI object is valid,
 * on its canonical JSON bytes.
 *
 * runtime/lua/validate.lua is the authority on what the rules may emit
 * and the source of every error message, but walking its schema
 * (runtime/lua/avi_schema.lua) table by table costs more than encoding the
 * object. This module compiles that same schema once per rules generation
 * into C arrays (types and fields sorted bytewise, fields also hashed by
 * name for lookup) and checks the bytes amc_json_encode produced in one
 * forward pass.
 *
 * The check only ever answers "certainly valid" (1) or "not proven" (0):
 * for anything it does not prove (an invalid object, a float where an
 * integer is expected, a schema entry it does not understand), the engine
 * runs validate.object as before, which accepts or rejects and says why.
 * So it must never prove what validate.lua would reject; it may decline
 * what validate.lua accepts. It checks what validate.lua checks: the REST
 * type is one amc emits; no unknown or read-only fields; value types
 * (string, integer, number, boolean, object, array of objects or
 * scalars); enums; ranges and their special values; max_items; required
 * fields. `null` is never valid. An empty object and an empty array are
 * interchangeable (validate.lua sees both as an empty table).
 *
 * It relies on canonical text (json.h): object keys sorted bytewise, no
 * whitespace, strings escaped minimally (so enum values, which need no
 * escaping, compare as raw bytes) and integral numbers written as integers.
 * Other JSON may be declined, never wrongly proven.
 *
 * Memory: the compiled schema owns copies of every name; free it with
 * amc_schema_proof_free. Pure C, no Lua state needed after compiling. */
#ifndef AMC_SCHEMA_PROOF_H
#define AMC_SCHEMA_PROOF_H

#include <lua.h>
#include <stddef.h>

#include "json.h"

typedef struct amc_schema_proof amc_schema_proof_t;

/* Compiles the schema table at `idx` (avi_schema.lua's value: `objects`
 * and `types`). Entries it cannot represent are compiled as "never
 * proven". Returns NULL when the table lacks `objects` or `types` (or on
 * out of memory). Does not raise Lua errors; uses only raw access. */
amc_schema_proof_t *amc_schema_proof_compile(lua_State *L, int idx);

void amc_schema_proof_free(amc_schema_proof_t *s);

/* 1 when the canonical JSON `json` of REST type `type` (e.g. "pool")
 * certainly passes validate.object(type, ...), else 0. */
int amc_schema_proof_check(const amc_schema_proof_t *s, const char *type,
                           const char *json, size_t len);

/* The same check on the tokens amc_json_encode_tape recorded while it
 * wrote `json` (RAW tokens are checked on those bytes): the same answers
 * without parsing the text. 0 when the tape is incomplete (failed). Not
 * const: `s` remembers, per field, the last RAW bytes it proved (memo
 * copies repeat in every object), so one `s` must not be used by two
 * threads at once. */
int amc_schema_proof_check_tape(amc_schema_proof_t *s, const char *type,
                                const amc_json_tape_t *tape, const char *json,
                                size_t len);

#endif
