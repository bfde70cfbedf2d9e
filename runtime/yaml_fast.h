/* yaml_fast.h - the YAML that manifests are written in, without libyaml.
 *
 * libyaml turns text into events at ~250 instructions a byte: when a YAML
 * file under the fs:// source is saved, parsing its changed document costs
 * about a third of what translating the change costs. Kubernetes manifests
 * use a small part of YAML: block mappings and sequences, one-line flow
 * collections ({a: b}, [a, b]), one-line plain and quoted scalars and
 * comments. amc_yaml_fast_document parses that subset straight into Lua
 * values and declines everything else, which the loader then gives to
 * libyaml: anchors and aliases, tags, block scalars (| >), scalars or flow
 * collections over several lines, complex keys (?), directives, several
 * documents, tabs, carriage returns and bytes outside printable ASCII, and
 * any text that is not valid YAML (libyaml words the error). A declined
 * text costs a scan up to where the fast path stopped.
 *
 * The parser builds canon.h's value tree (amc_yaml_fast_tree), which
 * canon.h writes out as the store's JSON without Lua (the fs source's
 * direct path) and amc_yaml_fast_document turns into Lua values: what
 * loader.c builds from libyaml's events for the same text (loader.h: the
 * core schema for plain scalars, json.h's array metatable on sequences),
 * down to the tables' sizes and insertion order, so pairs() visits keys
 * alike. tests/unit/test_yaml_fast.c checks that against libyaml on every
 * YAML file of the project and on thousands of mutations of them. */
#ifndef AMC_YAML_FAST_H
#define AMC_YAML_FAST_H

#include <lua.h>
#include <stddef.h>

#include "canon.h"

/* Parses `buf` as one document: blank and comment lines, at most one "---"
 * line, then a block mapping or block sequence. Returns 1 with the value
 * pushed and *line / *col (0-based) set to where the value starts (libyaml's
 * mark of its first event); returns 0 with the stack as it was when the text
 * is outside the subset (or has a duplicate key). `array_mt` is the stack
 * index of json.h's array metatable. Memory errors are raised (call it
 * under lua_pcall). */
int amc_yaml_fast_document(lua_State *L, const char *buf, size_t len,
                           int array_mt, size_t *line, size_t *col);

/* The same parse into canon.h's tree (`c` is started afresh; the root is
 * node 0, strings point into `buf` or the tree's scratch area): 1 with
 * *line / *col set, or 0 when the text is outside the subset. Duplicate
 * keys are left in the tree for its user to find (the subset has none:
 * libyaml refuses them). */
int amc_yaml_fast_tree(amc_canon_t *c, const char *buf, size_t len,
                       size_t *line, size_t *col);

/* The YAML 1.2 core schema value of a plain scalar (loader.h) as a tree
 * node: sets nd's type and value (a STR points at `s`). */
void amc_yaml_plain(const char *s, size_t n, amc_canon_node_t *nd);

/* Pushes the same value. */
void amc_yaml_push_plain(lua_State *L, const char *s, size_t n);

#endif
