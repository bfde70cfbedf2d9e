/* translation.h - what one translation produces, handed from the rules
 * engine to sync (AVI) and to the dependency tracker.
 *
 * A translation is the result of running the entry rule for one key (today:
 * one Istio Gateway, key "Gateway/<ns>/<name>"). Everything here is plain C
 * data, owned by the amc_translation_t and released with
 * amc_translation_free(). */
#ifndef AMC_TRANSLATION_H
#define AMC_TRANSLATION_H

#include <stddef.h>
#include <stdint.h>

/* One desired AVI object.
 *
 * Unchanged objects (json NULL): with the rules engine's memo
 * (rules_engine.h, amc_rules_engine_set_memo), an object a replayed memo
 * entry emits is handed over without its body: it is byte-identical to the
 * one an earlier translation of the same key produced, whose checksum was
 * `cksum`. Only a sink that still holds that object with that checksum can
 * take such a translation; otherwise the caller translates again with
 * amc_rules_engine_translate_full(). Translations without the memo never
 * have unchanged objects. */
typedef struct {
  char *type; /* AVI REST type: "pool", "virtualservice", ... */
  char *name; /* the object's `name` */
  char *json; /* canonical JSON (json.h) of the object as emitted;
                 NULL for an unchanged object */
  size_t json_len;
  char cksum[17];   /* amc_object_cksum of json (below), 16 hex
                       digits; set by the rules engine for every object ("" in
                       hand-built translations) */
  char *tenant_ref; /* the object's tenant_ref string (NULL when it has
                       none); set by the rules engine with cksum (NULL in
                       hand-built translations) */
} amc_avi_object_t;

/* The checksum of an object's canonical JSON that sinks compare and AVI
 * stores as amc's marker: FNV-1a 64 as 16 lowercase hex digits. Its values
 * are persisted on AVI objects: changing the function rewrites every
 * object once. */
void amc_object_cksum(const char *json, size_t len, char out[17]);

/* The same checksum as a number (amc_object_cksum prints it in hex). */
uint64_t amc_object_cksum64(const char *json, size_t len);

/* Prints a checksum as amc_object_cksum does. */
void amc_object_cksum_hex(uint64_t h, char out[17]);

typedef enum { AMC_DIAG_WARNING = 0, AMC_DIAG_ERROR = 1 } amc_diag_severity_t;

/* A problem with an input object: what Istio expresses and AVI cannot, or a
 * reference that does not resolve. */
typedef struct {
  amc_diag_severity_t severity;
  char *kind;       /* of the Istio/Kubernetes object concerned */
  char *namespace_; /* may be NULL for cluster-scoped objects */
  char *name;
  char *field; /* path in the object, e.g. "spec.http[0].fault" */
  char *message;
} amc_diag_t;

/* One recorded read: rt.get (name != NULL) or rt.list (name == NULL,
 * namespace_ NULL for all namespaces). A filtered list has `value` set and
 * either `field` (dot path, "spec.gateways": the objects whose string at
 * that path, or an element of the array there, equals value) or `label` (a
 * label key: the objects with metadata.labels[label] == value). A list with
 * several labels records one of them: its result is a subset of that one
 * label's objects, so changes outside it cannot affect it. */
typedef struct {
  char *kind;
  char *namespace_;
  char *name;
  char *field; /* NULL unless a field-filtered list */
  char *label; /* NULL unless a label-filtered list */
  char *value; /* NULL for unfiltered reads */
} amc_read_t;

typedef struct {
  char *key;                 /* "Gateway/<ns>/<name>" */
  amc_avi_object_t *objects; /* sorted by type, then name */
  size_t n_objects;
  size_t n_unchanged; /* objects with json NULL (see above) */
  amc_diag_t *diags;  /* in the order the rules reported them */
  size_t n_diags;
  amc_read_t *reads; /* deduplicated, sorted */
  size_t n_reads;
  char *error; /* non-NULL: the translation failed (rule
                  error, limit, invalid output); objects is
                  then empty and must not be synced */
  /* A patch (rules_engine.h "Patches"): `objects` holds only what the
   * calls run again produced; every other object of the key, the
   * diagnostics and the reads are exactly those of the key's last
   * translation (diags and reads are empty here). A sink must keep the
   * key's other objects (delete nothing) and the dependency tracker the
   * key's reads. Only a key whose last translation reached the sink in
   * full and synced without error may take one (the controller checks;
   * otherwise it asks for amc_rules_engine_translate_full). */
  int partial;
} amc_translation_t;

/* Releases every string and array of `t` and `t` itself (translations are
 * heap-allocated by the rules engine). NULL is a no-op. */
void amc_translation_free(amc_translation_t *t);
/* Releases `n` diagnostics' strings and the array. */
void amc_diags_free(amc_diag_t *diags, size_t n);
/* Releases `n` reads' strings and the array (reads taken out of a
 * translation, e.g. to record them after its sync has started). */
void amc_reads_free(amc_read_t *reads, size_t n);

#endif
