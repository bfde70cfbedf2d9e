/* test_loader.c - YAML/JSON files into Kubernetes-shaped Lua tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "loader.h"

static lua_State *L;
static amc_buf_t out;

static int setup(void **state) {
  (void)state;
  L = luaL_newstate();
  luaL_openlibs(L);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  lua_close(L);
  amc_buf_free(&out);
  return 0;
}

/* Appends "source json\n" for every object. */
static int collect(lua_State *S, const char *source, void *data, char *err,
                   size_t errlen) {
  (void)data;
  amc_buf_printf(&out, "%s ", source);
  if (amc_json_encode(S, -1, &out, err, errlen) < 0)
    return -1;
  amc_buf_putc(&out, '\n');
  return 0;
}

static void load_ok(const char *name, const char *text, int json,
                    const char *want) {
  char err[512] = "";
  amc_buf_reset(&out);
  int top = lua_gettop(L);
  int rc = amc_loader_load_buffer(L, name, text, strlen(text), json, NULL,
                                  collect, NULL, err, sizeof err);
  if (rc != 0)
    fail_msg("load %s: %s", name, err);
  assert_int_equal(lua_gettop(L), top);
  assert_string_equal(out.data ? out.data : "", want);
}

static void load_err(const char *name, const char *text, int json,
                     const char *want) {
  char err[512] = "";
  amc_buf_reset(&out);
  int top = lua_gettop(L);
  int rc = amc_loader_load_buffer(L, name, text, strlen(text), json, NULL,
                                  collect, NULL, err, sizeof err);
  assert_int_equal(rc, -1);
  assert_string_equal(err, want);
  assert_int_equal(lua_gettop(L), top);
}

#define OBJ(kind, name)                                                        \
  "apiVersion: v1\nkind: " kind "\nmetadata:\n  name: " name "\n"

static void test_multi_document_and_scalars(void **state) {
  (void)state;
  load_ok("x.yaml",
          "---\n" OBJ(
              "Service",
              "a") "spec:\n"
                   "  n1: ~\n  n2: null\n  n3:\n  n4: NULL\n"
                   "  b1: true\n  b2: False\n  b3: yes\n  b4: 'true'\n"
                   "  i1: 80\n  i2: -7\n  i3: 0x1F\n  i4: 0o17\n  i5: 017\n  "
                   "i6: +3\n"
                   "  f1: 1.5\n  f2: 1e3\n  f3: 80.0\n  f4: .5\n  f5: -2.5E-1\n"
                   "  s1: \"80\"\n  s2: 1.2.3\n  s3: !!str 42\n  s4: 12:30\n"
                   "  s5: |\n    line\n  s6: 0x\n  s7: .inf-ish\n"
                   "  big: 99999999999999999999\n"
                   "  list: []\n  map: {}\n  seq: [1, two, 3.25]\n"
                   "---\n"
                   "# comment-only document in the middle\n"
                   "---\n" OBJ("Pod", "b"),
          0,
          "x.yaml:2 {\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{"
          "\"name\":\"a\"},\"spec\":{\"b1\":true,\"b2\":false,\"b3\":\"yes\","
          "\"b4\":\"true\",\"big\":1e+20,\"f1\":1.5,\"f2\":1000,\"f3\":80,"
          "\"f4\":0.5,\"f5\":-0.25,\"i1\":80,\"i2\":-7,\"i3\":31,\"i4\":15,"
          "\"i5\":17,\"i6\":3,\"list\":[],\"map\":{},\"n1\":null,\"n2\":null,"
          "\"n3\":null,\"n4\":null,\"s1\":\"80\",\"s2\":\"1.2.3\",\"s3\":"
          "\"42\",\"s4\":\"12:30\",\"s5\":\"line\\n\",\"s6\":\"0x\",\"s7\":"
          "\".inf-ish\",\"seq\":[1,\"two\",3.25]}}\n"
          "x.yaml:41 {\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{"
          "\"name\":\"b\"}}\n");
}

static void test_integer_and_float_types(void **state) {
  (void)state;
  const char *y = "v: [80, 80.5, .inf, -.Inf, .nan, 1e2]\n";
  char err[256];
  assert_int_equal(
      amc_loader_parse_yaml_value(L, "v.yaml", y, strlen(y), err, sizeof err),
      0);
  lua_setglobal(L, "v");
  const char *code = "local t = v.v\n"
                     "assert(math.type(t[1]) == 'integer')\n"
                     "assert(math.type(t[2]) == 'float')\n"
                     "assert(t[3] == math.huge and t[4] == -math.huge)\n"
                     "assert(t[5] ~= t[5])\n"
                     "assert(math.type(t[6]) == 'integer' and t[6] == 100)\n";
  if (luaL_dostring(L, code) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
}

static void test_list_flattening(void **state) {
  (void)state;
  load_ok("l.yaml",
          "apiVersion: v1\nkind: List\nitems:\n"
          "- "
          "apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n"
          "- "
          "apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n"
          "---\napiVersion: v1\nkind: List\nitems: []\n",
          0,
          "l.yaml:1[1] {\"apiVersion\":\"v1\",\"kind\":\"Service\","
          "\"metadata\":{\"name\":\"a\"}}\n"
          "l.yaml:1[2] {\"apiVersion\":\"v1\",\"kind\":\"Service\","
          "\"metadata\":{\"name\":\"b\"}}\n");
  load_err("l.yaml",
           "apiVersion: v1\nkind: List\nitems:\n"
           "- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n"
           "- apiVersion: v1\n  kind: Service\n  metadata: {}\n",
           0, "l.yaml:1:1: document 1: item 2: Service has no metadata.name");
  load_err("l.yaml", "apiVersion: v1\nkind: List\nitems: 3\n", 0,
           "l.yaml:1:1: document 1: List: items must be a sequence");
}

static void test_yaml_syntax_errors(void **state) {
  (void)state;
  load_err("examples/x.yaml", OBJ("Service", "a") "spec:\n  a: b: c\n", 0,
           "examples/x.yaml:6:7: mapping values are not allowed in this "
           "context");
  load_err("x.yaml", "a: [1, 2\n", 0,
           "x.yaml:2:1: did not find expected ',' or ']' (while parsing a "
           "flow sequence at line 1)");
  load_err("x.yaml", "a:\n\tb: 1\n", 0,
           "x.yaml:2:1: found character that cannot start any token (while "
           "scanning for the next token at line 2)");
  load_err("x.yaml", "a: \"unterminated\n", 0,
           "x.yaml:2:1: found unexpected end of stream (while scanning a "
           "quoted scalar at line 1)");
}

static void test_object_checks(void **state) {
  (void)state;
  load_err("x.yaml",
           OBJ("Service", "a") "---\napiVersion: v1\nkind: Service\n"
                               "metadata:\n  namespace: n\n",
           0, "x.yaml:6:1: document 2: Service has no metadata.name");
  load_err("x.yaml", "kind: Service\nmetadata: {name: a}\n", 0,
           "x.yaml:1:1: document 1: object has no apiVersion");
  load_err("x.yaml", "apiVersion: v1\nmetadata: {name: a}\n", 0,
           "x.yaml:1:1: document 1: object has no kind");
  load_err("x.yaml", "apiVersion: v1\nkind: 3\nmetadata: {name: a}\n", 0,
           "x.yaml:1:1: document 1: kind must be a non-empty string");
  load_err("x.yaml", "apiVersion: v1\nkind: Service\n", 0,
           "x.yaml:1:1: document 1: Service has no metadata");
  load_err("x.yaml", "apiVersion: v1\nkind: Service\nmetadata: [a]\n", 0,
           "x.yaml:1:1: document 1: Service: metadata must be a mapping");
  load_err("x.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: 3}\n", 0,
           "x.yaml:1:1: document 1: Service: metadata.name must be a "
           "non-empty string");
  load_err("x.yaml",
           "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: "
           "[x]}\n",
           0,
           "x.yaml:1:1: document 1: Service: metadata.namespace must be a "
           "string");
  load_err("x.yaml", "- a\n- b\n", 0,
           "x.yaml:1:1: document 1: expected a Kubernetes object (a "
           "mapping), found a sequence");
  load_err("x.yaml", "hello\n", 0,
           "x.yaml:1:1: document 1: expected a Kubernetes object (a "
           "mapping), found a string");
  /* Unknown kinds are loaded. */
  load_ok("x.yaml",
          "apiVersion: example.com/v1\nkind: Frobnicator\n"
          "metadata: {name: f}\n",
          0,
          "x.yaml:1 {\"apiVersion\":\"example.com/v1\",\"kind\":"
          "\"Frobnicator\",\"metadata\":{\"name\":\"f\"}}\n");
}

static void test_anchors_aliases_and_limits(void **state) {
  (void)state;
  load_ok("a.yaml",
          OBJ("Service", "a") "spec:\n  ports: &p\n  - port: 80\n"
                              "  copy: *p\n  s: &s str\n  t: *s\n",
          0,
          "a.yaml:1 {\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":"
          "{\"name\":\"a\"},\"spec\":{\"copy\":[{\"port\":80}],\"ports\":[{"
          "\"port\":80}],\"s\":\"str\",\"t\":\"str\"}}\n");
  load_err("a.yaml", OBJ("Service", "a") "spec: *nope\n", 0,
           "a.yaml:5:7: unknown alias *nope");
  /* Anchors do not cross documents. */
  load_err(
      "a.yaml",
      OBJ("Service", "a") "spec: &x {}\n---\n" OBJ("Service", "b") "spec: *x\n",
      0, "a.yaml:11:7: unknown alias *x");
  load_err("a.yaml", OBJ("Service", "a") "spec:\n  <<: {a: 1}\n", 0,
           "a.yaml:6:3: YAML merge keys (<<) are not supported");
  load_err("a.yaml", OBJ("Service", "a") "spec:\n  a: 1\n  a: 2\n", 0,
           "a.yaml:7:3: duplicate key \"a\"");
  load_err("a.yaml", OBJ("Service", "a") "spec:\n  ? [a]\n  : 1\n", 0,
           "a.yaml:6:5: mapping keys must be scalars (strings)");
  /* Billion laughs: each level doubles ten times. */
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_puts(&b, OBJ("Service", "bomb") "spec:\n  l0: &l0 [x, x, x, x, x, "
                                          "x, x, x, x, x]\n");
  for (int i = 1; i < 9; i++) {
    amc_buf_printf(&b, "  l%d: &l%d [", i, i);
    for (int j = 0; j < 10; j++)
      amc_buf_printf(&b, "%s*l%d", j ? ", " : "", i - 1);
    amc_buf_puts(&b, "]\n");
  }
  load_err("bomb.yaml", b.data, 0,
           "bomb.yaml:11:47: document 1 expands to more than 1000000 nodes "
           "(too many aliases?)");
  amc_buf_free(&b);
  /* Depth limit. */
  amc_buf_puts(&b, OBJ("Service", "deep") "spec: ");
  for (int i = 0; i < 200; i++)
    amc_buf_putc(&b, '[');
  load_err("deep.yaml", b.data, 0, "deep.yaml:5:134: nesting deeper than 128");
  amc_buf_free(&b);
}

static void test_json_files(void **state) {
  (void)state;
  load_ok("o.json",
          "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":"
          "\"a\"},\"spec\":{\"ports\":[]}}",
          1,
          "o.json:1 {\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":"
          "{\"name\":\"a\"},\"spec\":{\"ports\":[]}}\n");
  load_ok("arr.json",
          "[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":"
          "\"p\"}}]",
          1,
          "arr.json:1[1] {\"apiVersion\":\"v1\",\"kind\":\"Pod\","
          "\"metadata\":{\"name\":\"p\"}}\n");
  load_ok("list.json",
          "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"apiVersion\":"
          "\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}]}",
          1,
          "list.json:1[1] {\"apiVersion\":\"v1\",\"kind\":\"Pod\","
          "\"metadata\":{\"name\":\"p\"}}\n");
  load_err("bad.json", "{\n  \"apiVersion\": \"v1\",\n  \"kind\" \"x\"\n}", 1,
           "bad.json: line 3, column 10: ':' expected after object key");
  load_err("bad.json", "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}", 1,
           "bad.json: Pod has no metadata");
  load_err("bad.json", "[{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}]", 1,
           "bad.json: item 1: Pod has no metadata");
}

static void test_directory(void **state) {
  (void)state;
  char err[512] = "";
  amc_buf_reset(&out);
  const char *dir = AMC_SOURCE_DIR "/tests/unit/fixtures/loader_dir";
  int rc = amc_loader_load_path(L, dir, NULL, collect, NULL, err, sizeof err);
  if (rc)
    fail_msg("%s", err);
  /* Strip the directory prefix for a readable comparison. */
  amc_buf_t got = AMC_BUF_INIT;
  const char *p = out.data;
  size_t dl = strlen(dir) + 1;
  while (*p) {
    const char *nl = strchr(p, '\n');
    assert_true(strncmp(p, dir, dl - 1) == 0);
    const char *sp = strchr(p, ' ');
    amc_buf_append(&got, p + dl, (size_t)(sp - p - dl));
    amc_buf_putc(&got, '\n');
    p = nl + 1;
  }
  assert_string_equal(got.data, "a.json:1\n"
                                "b.yaml:2\n"
                                "b.yaml:8\n"
                                "sub/c.yml:1[1]\n"
                                "sub/c.yml:1[2]\n");
  amc_buf_free(&got);
}

static void test_missing_path(void **state) {
  (void)state;
  char err[512];
  assert_int_equal(amc_loader_load_path(L, "/nonexistent/amc.yaml", NULL,
                                        collect, NULL, err, sizeof err),
                   -1);
  assert_string_equal(err, "/nonexistent/amc.yaml: No such file or directory");
}

static void test_default_namespace(void **state) {
  (void)state;
  amc_loader_opts_t opts = {.default_namespace = "default"};
  const char *y = OBJ("Gateway", "g") "---\n" OBJ(
      "Namespace", "n") "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, "
                        "namespace: x}\n---\napiVersion: v1\nkind: Pod\n"
                        "metadata: {name: q, namespace: ''}\n";
  char err[512];
  amc_buf_reset(&out);
  assert_int_equal(amc_loader_load_buffer(L, "d.yaml", y, strlen(y), 0, &opts,
                                          collect, NULL, err, sizeof err),
                   0);
  assert_string_equal(out.data,
                      "d.yaml:1 {\"apiVersion\":\"v1\",\"kind\":\"Gateway\","
                      "\"metadata\":{\"name\":\"g\",\"namespace\":"
                      "\"default\"}}\n"
                      "d.yaml:6 {\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
                      "\"metadata\":{\"name\":\"n\"}}\n"
                      "d.yaml:11 {\"apiVersion\":\"v1\",\"kind\":\"Pod\","
                      "\"metadata\":{\"name\":\"p\",\"namespace\":\"x\"}}\n"
                      "d.yaml:15 {\"apiVersion\":\"v1\",\"kind\":\"Pod\","
                      "\"metadata\":{\"name\":\"q\",\"namespace\":"
                      "\"default\"}}\n");
}

static int stop_at_second(lua_State *S, const char *source, void *data,
                          char *err, size_t errlen) {
  (void)S;
  int *n = data;
  if (++*n == 2) {
    snprintf(err, errlen, "%s: duplicate object", source);
    return -1;
  }
  return 0;
}

static void test_callback_stops(void **state) {
  (void)state;
  int n = 0;
  const char *y =
      OBJ("Pod", "a") "---\n" OBJ("Pod", "a") "---\n" OBJ("Pod", "c");
  char err[512];
  assert_int_equal(amc_loader_load_buffer(L, "s.yaml", y, strlen(y), 0, NULL,
                                          stop_at_second, &n, err, sizeof err),
                   -1);
  assert_int_equal(n, 2);
  assert_string_equal(err, "s.yaml:6: duplicate object");
}

static void test_parse_value(void **state) {
  (void)state;
  char err[512];
  const char *y = "cluster: c1\ningress_selector: {istio: gw}\n";
  assert_int_equal(
      amc_loader_parse_yaml_value(L, "s.yaml", y, strlen(y), err, sizeof err),
      0);
  amc_buf_reset(&out);
  assert_int_equal(amc_json_encode(L, -1, &out, err, sizeof err), 0);
  assert_string_equal(out.data,
                      "{\"cluster\":\"c1\",\"ingress_selector\":{\"istio\":"
                      "\"gw\"}}");
  lua_pop(L, 1);
  assert_int_equal(
      amc_loader_parse_yaml_value(L, "s.yaml", "", 0, err, sizeof err), 0);
  assert_true(lua_touserdata(L, -1) == AMC_JSON_NULL);
  lua_pop(L, 1);
  assert_int_equal(amc_loader_parse_yaml_value(L, "s.yaml", "a\n---\nb\n", 8,
                                               err, sizeof err),
                   -1);
  assert_string_equal(err, "s.yaml:3:1: expected a single YAML document");
  assert_int_equal(lua_gettop(L), 0);
}

/* Mutated inputs (seeded, so reproducible) never crash the YAML or JSON
 * paths and always leave the stack balanced; run under ASan by ctest. */
static int count_only(lua_State *S, const char *source, void *data, char *err,
                      size_t errlen) {
  (void)S, (void)source, (void)err, (void)errlen;
  (*(int *)data)++;
  return 0;
}

static void test_mutations(void **state) {
  (void)state;
  static const char yaml[] =
      "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: "
      "Service\n  metadata: {name: a, namespace: n, labels: &l {x: '1'}}\n"
      "  spec:\n    ports: [{port: 80, targetPort: \"8080\"}]\n    x: *l\n"
      "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  "
      "annotations:\n    a: |\n      multi\n      line\n    b: >-\n      "
      "folded\n    c: \"\\u00e9\\t\"\nstatus: {podIP: 10.0.0.1, n: ~, f: "
      "1.5e3, h: 0x1F}\n";
  static const char json[] =
      "[{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{"
      "\"name\":\"a\",\"namespace\":\"n\"},\"spec\":{\"ports\":[{"
      "\"port\":80,\"x\":[1.5,-2e3,true,false,null,\"\\ud83d\\ude00\"]}]}}]";
  static const char alphabet[] = "{}[]:,-?&*!|>'\"\\#\n \t0123456789.eE+"
                                 "abcnul\x80\xc3\xff\x00";
  uint32_t seed = 12345;
  char buf[sizeof yaml + 64];
  for (int round = 0; round < 20000; round++) {
    int is_json = round & 1;
    const char *src = is_json ? json : yaml;
    size_t len = strlen(src);
    memcpy(buf, src, len);
    int edits = 1 + round % 4;
    for (int k = 0; k < edits; k++) {
      seed = seed * 1103515245u + 12345u;
      size_t pos = (seed >> 8) % len;
      seed = seed * 1103515245u + 12345u;
      char c = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
      seed = seed * 1103515245u + 12345u;
      switch ((seed >> 8) % 3) {
      case 0: /* replace */
        buf[pos] = c;
        break;
      case 1: /* delete */
        memmove(buf + pos, buf + pos + 1, len - pos - 1);
        len--;
        break;
      default: /* insert */
        memmove(buf + pos + 1, buf + pos, len - pos);
        buf[pos] = c;
        len++;
      }
    }
    char err[512];
    int n = 0, top = lua_gettop(L);
    int rc = amc_loader_load_buffer(L, "m", buf, len, is_json, NULL, count_only,
                                    &n, err, sizeof err);
    assert_true(rc == 0 || rc == -1);
    if (rc < 0)
      assert_true(strncmp(err, "m", 1) == 0);
    assert_int_equal(lua_gettop(L), top);
  }
}

/* Spans: a file cut into its objects' texts; each loads as that part of
 * the whole file's load would (same sources). */
static void load_all_spans(const char *name, const char *text, int json,
                           long want) {
  amc_loader_span_t *sp = NULL;
  long n = amc_loader_split(text, strlen(text), json, &sp);
  assert_int_equal(n, want);
  amc_loader_opts_t o = {0};
  char err[256];
  for (long i = 0; i < n; i++)
    assert_int_equal(amc_loader_load_span(L, name, &sp[i], json, &o, collect,
                                          NULL, err, sizeof err),
                     0);
  free(sp);
}

static void test_spans(void **state) {
  (void)state;
  const char *list =
      "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n"
      "  {\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":"
      "\"a\",\"labels\":{\"x\":\"[}\\\"\"}}},\n"
      "  {\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":"
      "\"b\"}}\n]}\n";
  amc_loader_span_t *sp = NULL;
  assert_int_equal(amc_loader_split(list, strlen(list), 1, &sp), 2);
  assert_int_equal(sp[0].index, 1);
  assert_int_equal(sp[1].index, 2);
  assert_int_equal(sp[1].line, 2);
  assert_memory_equal(sp[1].text, "{\"apiVersion\"", 13);
  assert_int_equal(sp[1].text[sp[1].len - 1], '}');
  free(sp);
  /* the same objects and sources as the whole file's load */
  amc_buf_reset(&out);
  char err[256];
  amc_loader_opts_t o = {0};
  assert_int_equal(amc_loader_load_buffer(L, "f.json", list, strlen(list), 1,
                                          &o, collect, NULL, err, sizeof err),
                   0);
  char whole[1024];
  snprintf(whole, sizeof whole, "%s", out.data);
  amc_buf_reset(&out);
  load_all_spans("f.json", list, 1, 2);
  assert_string_equal(out.data, whole);
  /* a bare array, one object, an empty List */
  amc_buf_reset(&out);
  load_all_spans("g.json",
                 "[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":"
                 "{\"name\":\"p\"}}]",
                 1, 1);
  assert_string_equal(out.data, "g.json:1[1] {\"apiVersion\":\"v1\",\"kind\":"
                                "\"Pod\",\"metadata\":{\"name\":\"p\"}}\n");
  load_all_spans("h.json",
                 " {\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":"
                 "{\"name\":\"q\"}} ",
                 1, 1);
  load_all_spans("e.json", "{\"kind\":\"List\",\"items\":[]}", 1, 0);
  /* escaped backslashes before closing quotes, brackets in strings */
  sp = NULL;
  const char *esc = "[{\"a\\\\\":\"]\\\\\"} ,{\"b\":\"{\\\"[\"}]";
  assert_int_equal(amc_loader_split(esc, strlen(esc), 1, &sp), 2);
  assert_int_equal(sp[0].len, strlen("{\"a\\\\\":\"]\\\\\"}"));
  assert_memory_equal(sp[1].text, "{\"b\":\"{\\\"[\"}", sp[1].len);
  free(sp);
  /* items before kind (split while scanning); an object with items that
   * is no List is one span, even when its items would not split */
  sp = NULL;
  const char *late = "{\"items\":[{\"a\":1},\n{\"b\":2}],\"kind\":\"List\"}";
  assert_int_equal(amc_loader_split(late, strlen(late), 1, &sp), 2);
  assert_int_equal(sp[1].line, 1);
  assert_memory_equal(sp[1].text, "{\"b\":2}", sp[1].len);
  free(sp);
  const char *notlist[] = {"{\"items\":[{\"a\":1}],\"kind\":\"Foo\"}",
                           "{\"items\":[{} {}],\"kind\":\"Foo\"}"};
  for (size_t i = 0; i < 2; i++) {
    sp = NULL;
    assert_int_equal(amc_loader_split(notlist[i], strlen(notlist[i]), 1, &sp),
                     1);
    assert_int_equal(sp[0].len, strlen(notlist[i]));
    free(sp);
  }
  /* not cut: trailing text, an unterminated string (also one ending in an
   * escape), a List without items, two kinds, a List whose items do not
   * split, two items */
  const char *bad[] = {"[{}] x",
                       "[\"abc",
                       "[\"ab\\",
                       "{\"kind\":\"List\"}",
                       "{\"kind\":\"List\",\"kind\":\"List\",\"items\":[]}",
                       "[{} {}]",
                       "{\"kind\":\"List\",\"items\":[{} {}]}",
                       "{\"items\":[],\"kind\":\"List\",\"items\":[]}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sp = NULL;
    assert_int_equal(amc_loader_split(bad[i], strlen(bad[i]), 1, &sp), -1);
    assert_null(sp);
  }
  /* YAML: documents, with the file's line numbers in sources */
  const char *yaml = "# head\n"
                     "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                     "---\n"
                     "apiVersion: v1\nkind: Service\nmetadata:\n"
                     "  name: b\n  note: |\n    ---not a marker\n"
                     "--- \n"
                     "apiVersion: v1\nkind: Service\nmetadata: {name: c}\n";
  amc_buf_reset(&out);
  assert_int_equal(amc_loader_load_buffer(L, "y.yaml", yaml, strlen(yaml), 0,
                                          &o, collect, NULL, err, sizeof err),
                   0);
  snprintf(whole, sizeof whole, "%s", out.data);
  amc_buf_reset(&out);
  load_all_spans("y.yaml", yaml, 0, 3);
  assert_string_equal(out.data, whole);
  assert_non_null(strstr(out.data, "y.yaml:13 "));
  sp = NULL;
  assert_int_equal(amc_loader_split("%YAML 1.2\n---\na: 1\n", 19, 0, &sp), -1);
}

/* libyaml breaks lines at CR, CRLF, LF, NEL, LS and PS: a YAML file cut
 * into documents gives the sources (and documents) of a whole load,
 * whichever of them it uses (a lone CR moved the next documents' lines:
 * found by fuzz_yaml). */
static void test_split_yaml_line_breaks(void **state) {
  (void)state;
  static const char *const texts[] = {
      "#\re:\napiVersion: v1\nkind: A\nmetadata:\n name: a\n---\n"
      "apiVersion: v1\nkind: A\nmetadata:\n  name: b\n",
      "apiVersion: v1\r\nkind: A\r\nmetadata: {name: a}\r\n---\r\n"
      "apiVersion: v1\r\nkind: A\r\nmetadata: {name: b}\r\n",
      "# x\xc2\x85y\napiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n"
      "apiVersion: v1\nkind: A\nmetadata: {name: b}\n",
      "# x\xe2\x80\xa8y\napiVersion: v1\nkind: A\nmetadata: {name: a}\n"
      "---\napiVersion: v1\nkind: A\nmetadata: {name: b}\n",
      "# x\xe2\x80\xa9y\napiVersion: v1\nkind: A\nmetadata: {name: a}\n"
      "---\napiVersion: v1\nkind: A\nmetadata: {name: b}\n",
      "apiVersion: v1\nkind: A\nmetadata: {name: a}\r---\r"
      "apiVersion: v1\nkind: A\nmetadata: {name: b}\n",
  };
  amc_loader_opts_t o = {0};
  for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
    char err[512], whole[2048];
    amc_buf_reset(&out);
    int rc = amc_loader_load_buffer(L, "b.yaml", texts[t], strlen(texts[t]), 0,
                                    &o, collect, NULL, err, sizeof err);
    snprintf(whole, sizeof whole, "%d %s", rc, rc ? err : out.data);
    amc_loader_span_t *sp = NULL;
    long n = amc_loader_split(texts[t], strlen(texts[t]), 0, &sp);
    if (n < 0)
      continue; /* loaded whole by the fs source */
    amc_buf_reset(&out);
    rc = 0;
    for (long i = 0; i < n && rc == 0; i++)
      rc = amc_loader_load_span(L, "b.yaml", &sp[i], 0, &o, collect, NULL, err,
                                sizeof err);
    free(sp);
    char parts[2048];
    snprintf(parts, sizeof parts, "%d %s", rc, rc ? err : out.data);
    if (strcmp(whole, parts) != 0)
      fail_msg("text %zu: whole\n%s\nspans\n%s", t, whole, parts);
  }
}

/* A JSON file the whole load refuses is refused when loaded as spans too:
 * the text around a List's items (only scanned when cutting) is checked
 * with amc_loader_check_split, and an item nested too deep to decode inside
 * the file is not cut out of it. */
static void test_split_json_refuses_what_the_whole_load_refuses(void **state) {
  (void)state;
  static const char *const item =
      "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{"
      "\"name\":\"a\"}}";
  /* an item as deep as the decoder allows, in an array: one level more */
  char deep[1200];
  int d = snprintf(deep, sizeof deep,
                   "[{\"apiVersion\":\"v1\",\"kind\":\"S\",\"metadata\":"
                   "{\"name\":\"a\"},\"x\":");
  for (int i = 0; i < AMC_JSON_MAX_DEPTH - 1; i++)
    deep[d++] = '[';
  for (int i = 0; i < AMC_JSON_MAX_DEPTH - 1; i++)
    deep[d++] = ']';
  snprintf(deep + d, sizeof deep - (size_t)d, "}]");
  char files[6][1400];
  snprintf(files[0], sizeof files[0],
           "{\"apiVersion\":(v1,\"kind\":\"List\",\"items\":[%s]}", item);
  snprintf(files[1], sizeof files[1],
           "{\"a\":1,\"a\":2,\"kind\":\"List\",\"items\":[%s]}", item);
  snprintf(files[2], sizeof files[2],
           "{\"apiVersion\":\"v\\q\",\"kind\":\"List\",\"items\":[%s]}", item);
  snprintf(files[3], sizeof files[3], "%s", deep); /* an array of one item */
  /* no items at all: the envelope is all there is to check */
  snprintf(files[4], sizeof files[4],
           "{\"apiVersion\":\"v\x01\",\"kind\":\"List\",\"items\":[]}");
  snprintf(files[5], sizeof files[5], "[ ]x");
  amc_loader_opts_t o = {0};
  for (int f = 0; f < 6; f++) {
    char err[512];
    amc_buf_reset(&out);
    assert_int_equal(amc_loader_load_buffer(L, "l.json", files[f],
                                            strlen(files[f]), 1, &o, collect,
                                            NULL, err, sizeof err),
                     -1);
    amc_loader_span_t *sp = NULL;
    long n = amc_loader_split(files[f], strlen(files[f]), 1, &sp);
    int top = lua_gettop(L);
    int refused =
        n < 0 || amc_loader_check_split(L, files[f], strlen(files[f]), 1, sp, n,
                                        err, sizeof err) != 0;
    assert_int_equal(lua_gettop(L), top);
    for (long i = 0; !refused && i < n; i++)
      refused = amc_loader_load_span(L, "l.json", &sp[i], 1, &o, collect, NULL,
                                     err, sizeof err) != 0;
    free(sp);
    if (!refused)
      fail_msg("file %d: loads as spans, refused whole", f);
  }
  /* and a good List passes the check */
  char good[600];
  snprintf(good, sizeof good,
           "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[%s,%s]}", item,
           item);
  amc_loader_span_t *sp = NULL;
  char err[256];
  assert_int_equal(amc_loader_split(good, strlen(good), 1, &sp), 2);
  assert_int_equal(
      amc_loader_check_split(L, good, strlen(good), 1, sp, 2, err, sizeof err),
      0);
  free(sp);
}

/* An error in a later document names the file's line and the document's
 * number, loaded whole or as its span (the fs source loads spans). */
static void test_span_errors_name_file_positions(void **state) {
  (void)state;
  static const char *const files[] = {
      /* a syntax error (libyaml's message) in document 3 */
      "# head\n---\napiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n"
      "apiVersion: v1\nkind: A\nmetadata: {name: b}\n---\n"
      "apiVersion: v1\nkind: A\nmetadata: {name: c}\n  bad: [\n",
      /* an object error in document 2 (the fast path's document) */
      "apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n\n"
      "apiVersion: v1\nkind: A\nmetadata: {namespace: x}\n",
      /* an empty document counts */
      "apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n---\n"
      "apiVersion: v1\nkind: A\nmetadata: {}\n",
      /* a duplicate key in document 2 */
      "apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n"
      "apiVersion: v1\nkind: A\nkind: B\nmetadata: {name: b}\n",
  };
  amc_loader_opts_t o = {0};
  for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
    char whole[512] = "", err[512] = "";
    amc_buf_reset(&out);
    assert_int_equal(amc_loader_load_buffer(L, "e.yaml", files[f],
                                            strlen(files[f]), 0, &o, collect,
                                            NULL, whole, sizeof whole),
                     -1);
    amc_loader_span_t *sp = NULL;
    long n = amc_loader_split(files[f], strlen(files[f]), 0, &sp);
    assert_true(n >= 2);
    int rc = 0;
    for (long i = 0; i < n && rc == 0; i++)
      rc = amc_loader_load_span(L, "e.yaml", &sp[i], 0, &o, collect, NULL, err,
                                sizeof err);
    free(sp);
    assert_int_equal(rc, -1);
    assert_string_equal(err, whole);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_multi_document_and_scalars),
      cmocka_unit_test(test_integer_and_float_types),
      cmocka_unit_test(test_list_flattening),
      cmocka_unit_test(test_yaml_syntax_errors),
      cmocka_unit_test(test_object_checks),
      cmocka_unit_test(test_anchors_aliases_and_limits),
      cmocka_unit_test(test_json_files),
      cmocka_unit_test(test_directory),
      cmocka_unit_test(test_missing_path),
      cmocka_unit_test(test_default_namespace),
      cmocka_unit_test(test_callback_stops),
      cmocka_unit_test(test_parse_value),
      cmocka_unit_test(test_mutations),
      cmocka_unit_test(test_spans),
      cmocka_unit_test(test_span_errors_name_file_positions),
      cmocka_unit_test(test_split_json_refuses_what_the_whole_load_refuses),
      cmocka_unit_test(test_split_yaml_line_breaks),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
