/* test_http.c - runtime/http against a tiny Python HTTP server started here.
 *
 * The server (Debian python3, $AMC_PYTHON) binds 127.0.0.1:0 and prints its
 * port; it is killed at the end of every test group, also on failure
 * (cmocka's group teardown). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http.h"
#include "util/buf.h"

static const char *server_py =
    "import sys, time, json\n"
    "from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler\n"
    "class H(BaseHTTPRequestHandler):\n"
    "  protocol_version = 'HTTP/1.1'\n"
    "  def log_message(self, *a): pass\n"
    "  def reply(self, code, body, ctype='application/json', extra=()):\n"
    "    b = body.encode()\n"
    "    self.send_response(code)\n"
    "    self.send_header('Content-Type', ctype)\n"
    "    self.send_header('Content-Length', str(len(b)))\n"
    "    for k, v in extra: self.send_header(k, v)\n"
    "    self.end_headers(); self.wfile.write(b)\n"
    "  def handle_any(self):\n"
    "    n = int(self.headers.get('Content-Length') or 0)\n"
    "    body = self.rfile.read(n).decode() if n else ''\n"
    "    p = self.path\n"
    "    if p.startswith('/slow'):\n"
    "      time.sleep(2); return self.reply(200, 'late')\n"
    "    if p.startswith('/host'):\n"
    "      return self.reply(200, self.headers.get('Host') or '', "
    "'text/plain')\n"
    "    if p.startswith('/status/'):\n"
    "      return self.reply(int(p[8:]), '{\"error\":\"nope\"}')\n"
    "    if p.startswith('/stream'):\n"
    "      self.send_response(200)\n"
    "      self.send_header('Transfer-Encoding', 'chunked')\n"
    "      self.end_headers()\n"
    "      for i in range(3):\n"
    "        c = ('chunk%d\\n' % i).encode()\n"
    "        self.wfile.write(b'%x\\r\\n%s\\r\\n' % (len(c), c))\n"
    "        self.wfile.flush(); time.sleep(0.1)\n"
    "      if 'forever' in p: time.sleep(30)\n"
    "      self.wfile.write(b'0\\r\\n\\r\\n'); return\n"
    "    out = {'method': self.command, 'path': p, 'body': body,\n"
    "           'x_test': self.headers.get('X-Test')}\n"
    "    self.reply(200, json.dumps(out, sort_keys=True),\n"
    "               extra=[('Set-Cookie', 'a=1; Path=/'),\n"
    "                      ('Set-Cookie', 'b=2; Path=/')])\n"
    "  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any\n"
    "import ssl, threading\n"
    "ThreadingHTTPServer.handle_error = lambda *a: None  # client hang-ups\n"
    "s = ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
    "s.daemon_threads = True\n"
    "t = ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
    "t.daemon_threads = True\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "t.socket = ctx.wrap_socket(t.socket, server_side=True)\n"
    "threading.Thread(target=t.serve_forever, daemon=True).start()\n"
    "print(s.server_address[1], t.server_address[1], flush=True)\n"
    "s.serve_forever()\n";

static pid_t server_pid;
static int server_port, tls_port;
static char base[64], tls_base[64];
static char tmpdir[] = "/tmp/amc-test-http-XXXXXX";
static char cert_path[128], key_path[128];

static int start_server(void **state) {
  (void)state;
  const char *py = getenv("AMC_PYTHON");
  if (!py)
    py = "/usr/bin/python3";
  /* A self-signed certificate for 127.0.0.1 (openssl CLI). */
  if (!mkdtemp(tmpdir))
    return -1;
  snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tmpdir);
  snprintf(key_path, sizeof key_path, "%s/key.pem", tmpdir);
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
           "-nodes -days 1 -subj /CN=127.0.0.1 -addext "
           "subjectAltName=IP:127.0.0.1 -keyout %s -out %s 2>/dev/null",
           key_path, cert_path);
  if (system(cmd) != 0)
    return -1;
  int fds[2];
  if (pipe(fds) != 0)
    return -1;
  server_pid = fork();
  if (server_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl(py, py, "-c", server_py, cert_path, key_path, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  if (!f || fscanf(f, "%d %d", &server_port, &tls_port) != 2)
    return -1;
  fclose(f);
  snprintf(base, sizeof base, "http://127.0.0.1:%d", server_port);
  snprintf(tls_base, sizeof tls_base, "https://127.0.0.1:%d", tls_port);
  return 0;
}

static int stop_server(void **state) {
  (void)state;
  if (server_pid > 0) {
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
  }
  unlink(cert_path);
  unlink(key_path);
  rmdir(tmpdir);
  return 0;
}

typedef struct {
  int calls;
  long status;
  int timed_out;
  int had_error;
  amc_buf_t body;
  amc_buf_t cookies;
  amc_buf_t chunks;
  int n_chunks;
  int cancel_after; /* on_chunk cancels after this many chunks */
  amc_http_req_t *req;
} result_t;

static void on_done(amc_http_req_t *req, const amc_http_response_t *r,
                    void *data) {
  (void)req;
  result_t *res = data;
  res->calls++;
  res->status = r->status;
  res->timed_out = r->timed_out;
  res->had_error = r->error != NULL;
  amc_buf_append(&res->body, r->body, r->body_len);
  size_t vlen;
  const char *v = NULL;
  while ((v = amc_http_header_find(r->headers, r->headers_len, "set-cookie", v,
                                   &vlen))) {
    amc_buf_append(&res->cookies, v, vlen);
    amc_buf_putc(&res->cookies, '|');
  }
}

static int on_chunk(amc_http_req_t *req, const char *p, size_t n, void *data) {
  result_t *res = data;
  assert_int_equal(amc_http_req_status(req), 200);
  amc_buf_append(&res->chunks, p, n);
  res->n_chunks++;
  if (res->cancel_after && res->n_chunks >= res->cancel_after)
    amc_http_cancel(req);
  return 0;
}

static void result_free(result_t *r) {
  amc_buf_free(&r->body);
  amc_buf_free(&r->cookies);
  amc_buf_free(&r->chunks);
}

static void run_and_close(uv_loop_t *loop, amc_http_t *h) {
  uv_run(loop, UV_RUN_DEFAULT);
  amc_http_close(h, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

static void test_get_post_headers(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  assert_non_null(h);
  char url[128];
  snprintf(url, sizeof url, "%s/api/pool?name=x", base);
  result_t get = {0}, post = {0};
  amc_http_opts_t o = {.url = url, .timeout_ms = 5000};
  assert_non_null(amc_http_start(h, &o, on_done, &get));
  const char *hdrs[] = {"X-Test: yes", "Content-Type: application/json", NULL};
  amc_http_opts_t p = {.method = "PUT",
                       .url = url,
                       .headers = hdrs,
                       .body = "{\"a\":1}",
                       .body_len = 7,
                       .timeout_ms = 5000};
  assert_non_null(amc_http_start(h, &p, on_done, &post));
  assert_int_equal(amc_http_active(h), 2);
  run_and_close(&loop, h);
  assert_int_equal(get.calls, 1);
  assert_int_equal(get.status, 200);
  assert_false(get.had_error);
  assert_string_equal(get.body.data, "{\"body\": \"\", \"method\": \"GET\", "
                                     "\"path\": \"/api/pool?name=x\", "
                                     "\"x_test\": null}");
  assert_string_equal(get.cookies.data, "a=1; Path=/|b=2; Path=/|");
  assert_int_equal(post.calls, 1);
  assert_string_equal(post.body.data,
                      "{\"body\": \"{\\\"a\\\":1}\", \"method\": \"PUT\", "
                      "\"path\": \"/api/pool?name=x\", \"x_test\": \"yes\"}");
  result_free(&get);
  result_free(&post);
}

static void test_delete_and_error_status(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[128];
  snprintf(url, sizeof url, "%s/status/409", base);
  result_t r = {0}, d = {0};
  amc_http_opts_t o = {.method = "POST", .url = url, .timeout_ms = 5000};
  assert_non_null(amc_http_start(h, &o, on_done, &r));
  snprintf(url, sizeof url, "%s/x", base);
  amc_http_opts_t del = {.method = "DELETE", .url = url, .timeout_ms = 5000};
  assert_non_null(amc_http_start(h, &del, on_done, &d));
  run_and_close(&loop, h);
  assert_int_equal(r.status, 409);
  assert_false(r.had_error);
  assert_string_equal(r.body.data, "{\"error\":\"nope\"}");
  assert_non_null(strstr(d.body.data, "\"method\": \"DELETE\""));
  result_free(&r);
  result_free(&d);
}

static void test_timeout_and_refused(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[128];
  snprintf(url, sizeof url, "%s/slow", base);
  result_t t = {0}, c = {0};
  amc_http_opts_t o = {.url = url, .timeout_ms = 200};
  assert_non_null(amc_http_start(h, &o, on_done, &t));
  /* A port nobody listens on: bind one, note it, close it. */
  amc_http_opts_t r = {.url = "http://127.0.0.1:1/", .timeout_ms = 2000};
  assert_non_null(amc_http_start(h, &r, on_done, &c));
  run_and_close(&loop, h);
  assert_int_equal(t.calls, 1);
  assert_true(t.timed_out);
  assert_true(t.had_error);
  assert_int_equal(c.calls, 1);
  assert_true(c.had_error);
  assert_int_equal(c.status, 0);
  result_free(&t);
  result_free(&c);
}

static void test_streaming(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[128];
  snprintf(url, sizeof url, "%s/stream", base);
  result_t s = {0};
  amc_http_opts_t o = {.url = url, .on_chunk = on_chunk};
  assert_non_null(amc_http_start(h, &o, on_done, &s));
  run_and_close(&loop, h);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.status, 200);
  assert_string_equal(s.chunks.data, "chunk0\nchunk1\nchunk2\n");
  assert_true(s.n_chunks >= 3); /* delivered as they came, not at the end */
  assert_int_equal(s.body.len, 0);
  result_free(&s);
}

static void test_cancel_inside_chunk(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[128];
  snprintf(url, sizeof url, "%s/stream/forever", base);
  result_t s = {.cancel_after = 2};
  amc_http_opts_t o = {.url = url, .on_chunk = on_chunk};
  assert_non_null(amc_http_start(h, &o, on_done, &s));
  run_and_close(&loop, h);
  assert_int_equal(s.calls, 0); /* cancelled: no done callback */
  assert_int_equal(s.n_chunks, 2);
  result_free(&s);
}

static void cancel_timer_cb(uv_timer_t *t) {
  amc_http_cancel(t->data);
  uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel_idle_stream(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[128];
  snprintf(url, sizeof url, "%s/slow", base);
  result_t s = {0};
  amc_http_opts_t o = {.url = url, .on_chunk = on_chunk};
  amc_http_req_t *req = amc_http_start(h, &o, on_done, &s);
  assert_non_null(req);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = req;
  uv_timer_start(&t, cancel_timer_cb, 100, 0);
  uint64_t t0 = uv_hrtime();
  run_and_close(&loop, h);
  /* The loop ended long before the 2 s reply: the cancel took effect. */
  assert_true(uv_hrtime() - t0 < 1500000000ull);
  assert_int_equal(s.calls, 0);
  result_free(&s);
}

static int closed_calls;
static void on_closed(void *d) {
  (void)d;
  closed_calls++;
}

static void close_timer_cb(uv_timer_t *t) {
  amc_http_close(t->data, on_closed, NULL);
  uv_close((uv_handle_t *)t, NULL);
}

static void test_close_with_requests_in_flight(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[128];
  snprintf(url, sizeof url, "%s/slow", base);
  result_t s[5] = {0};
  for (int i = 0; i < 5; i++) {
    amc_http_opts_t o = {.url = url, .timeout_ms = 10000};
    assert_non_null(amc_http_start(h, &o, on_done, &s[i]));
  }
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = h;
  uv_timer_start(&t, close_timer_cb, 100, 0);
  closed_calls = 0;
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(s[i].calls, 0);
    result_free(&s[i]);
  }
}

/* A done callback that starts the next request: chains without recursion. */
typedef struct {
  amc_http_t *h;
  char url[128];
  int left;
  int done;
} chain_t;

static void chain_done(amc_http_req_t *req, const amc_http_response_t *r,
                       void *data) {
  (void)req;
  chain_t *c = data;
  assert_int_equal(r->status, 200);
  c->done++;
  if (--c->left > 0) {
    amc_http_opts_t o = {.url = c->url, .timeout_ms = 5000};
    assert_non_null(amc_http_start(c->h, &o, chain_done, c));
  }
}

static void test_many_and_chained(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  chain_t c = {.h = h, .left = 10};
  snprintf(c.url, sizeof c.url, "%s/chain", base);
  amc_http_opts_t o = {.url = c.url, .timeout_ms = 5000};
  assert_non_null(amc_http_start(h, &o, chain_done, &c));
  result_t par[20] = {0};
  for (int i = 0; i < 20; i++)
    assert_non_null(amc_http_start(h, &o, on_done, &par[i]));
  run_and_close(&loop, h);
  assert_int_equal(c.done, 10);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(par[i].calls, 1);
    assert_int_equal(par[i].status, 200);
    result_free(&par[i]);
  }
}

/* A server socket of the test's own, answered by hand between loop runs:
 * shows when the client has written a request. */
static int own_listen(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 4), 0);
  socklen_t n = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

/* Reads one request's head (no body expected) from a non-blocking socket,
 * running the loop until it is there; returns its length. */
static size_t read_request(uv_loop_t *loop, int fd, char *buf, size_t cap) {
  size_t len = 0;
  for (int i = 0; i < 2000; i++) {
    ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
    if (n > 0) {
      len += (size_t)n;
      buf[len] = '\0';
      if (strstr(buf, "\r\n\r\n"))
        return len;
    } else {
      assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
      uv_run(loop, UV_RUN_NOWAIT);
      usleep(1000);
    }
  }
  fail_msg("no request within 2 s");
  return 0;
}

static void answer(int fd) {
  const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  assert_int_equal(send(fd, r, strlen(r), 0), (ssize_t)strlen(r));
}

/* On a kept-alive connection a request is written before amc_http_start()
 * returns (not on the next loop iteration), and its answer is delivered
 * from the loop, never inside start. */
static void test_written_before_start_returns(void **state) {
  (void)state;
  int port = 0;
  int lfd = own_listen(&port);
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[128], buf[4096];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/first", port);
  result_t first = {0}, second = {0};
  amc_http_opts_t o = {.url = url, .timeout_ms = 5000};
  assert_non_null(amc_http_start(h, &o, on_done, &first));
  int cfd = -1;
  for (int i = 0; i < 2000 && cfd < 0; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    cfd = accept(lfd, NULL, NULL);
    if (cfd < 0)
      usleep(1000);
  }
  assert_true(cfd >= 0);
  read_request(&loop, cfd, buf, sizeof buf);
  assert_non_null(strstr(buf, "GET /first HTTP/1.1"));
  answer(cfd);
  for (int i = 0; i < 2000 && first.calls == 0; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_int_equal(first.calls, 1);
  assert_int_equal(first.status, 200);
  /* the second request: on the socket as soon as start returns */
  snprintf(url, sizeof url, "http://127.0.0.1:%d/second", port);
  assert_non_null(amc_http_start(h, &o, on_done, &second));
  ssize_t n = recv(cfd, buf, sizeof buf - 1, MSG_DONTWAIT);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_non_null(strstr(buf, "GET /second HTTP/1.1"));
  answer(cfd);
  usleep(20000); /* the answer is there; only the loop delivers it */
  assert_int_equal(second.calls, 0);
  for (int i = 0; i < 2000 && second.calls == 0; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_int_equal(second.calls, 1);
  assert_string_equal(second.body.data, "ok");
  amc_http_close(h, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  close(cfd);
  close(lfd);
  result_free(&first);
  result_free(&second);
}

static void test_header_find(void **state) {
  (void)state;
  const char *h = "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n"
                  "X-Avi:  v1 \r\nx-avi: v2\r\n\r\n";
  size_t n;
  const char *v = amc_http_header_find(h, strlen(h), "X-AVI", NULL, &n);
  assert_non_null(v);
  assert_int_equal(n, 2);
  assert_memory_equal(v, "v1", 2);
  v = amc_http_header_find(h, strlen(h), "X-AVI", v, &n);
  assert_non_null(v);
  assert_memory_equal(v, "v2", 2);
  assert_null(amc_http_header_find(h, strlen(h), "X-AVI", v, &n));
  assert_null(amc_http_header_find(h, strlen(h), "Content", NULL, &n));
}

/* TLS: verification on by default (a self-signed server fails), a CA file
 * or an in-memory CA makes it pass, `insecure` skips it explicitly. */
static void test_tls_verification(void **state) {
  (void)state;
  amc_buf_t pem = AMC_BUF_INIT;
  assert_int_equal(amc_buf_read_file(&pem, cert_path), 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[128];
  snprintf(url, sizeof url, "%s/tls", tls_base);
  result_t dflt = {0}, file = {0}, mem = {0}, insec = {0}, wrong = {0};
  amc_http_opts_t o1 = {.url = url, .timeout_ms = 5000};
  assert_non_null(amc_http_start(h, &o1, on_done, &dflt));
  amc_http_opts_t o2 = {.url = url, .timeout_ms = 5000, .ca_file = cert_path};
  assert_non_null(amc_http_start(h, &o2, on_done, &file));
  amc_http_opts_t o3 = {.url = url, .timeout_ms = 5000, .ca_pem = pem.data};
  assert_non_null(amc_http_start(h, &o3, on_done, &mem));
  amc_http_opts_t o4 = {.url = url, .timeout_ms = 5000, .insecure = 1};
  assert_non_null(amc_http_start(h, &o4, on_done, &insec));
  /* The right CA but the wrong name ("localhost" is not in the SAN). */
  char url2[128];
  snprintf(url2, sizeof url2, "https://localhost:%d/tls", tls_port);
  amc_http_opts_t o5 = {.url = url2, .timeout_ms = 5000, .ca_file = cert_path};
  assert_non_null(amc_http_start(h, &o5, on_done, &wrong));
  run_and_close(&loop, h);
  assert_true(dflt.had_error);
  assert_int_equal(dflt.status, 0);
  assert_false(file.had_error);
  assert_int_equal(file.status, 200);
  assert_false(mem.had_error);
  assert_int_equal(mem.status, 200);
  assert_false(insec.had_error);
  assert_int_equal(insec.status, 200);
  assert_true(wrong.had_error);
  result_t *all[] = {&dflt, &file, &mem, &insec, &wrong};
  for (int i = 0; i < 5; i++)
    result_free(all[i]);
  amc_buf_free(&pem);
}

/* tls_server_name: the certificate (SAN IP:127.0.0.1) is verified against
 * the given name instead of the URL's host, the connection still goes to the
 * URL's host and port, and the Host header stays the URL's authority. */
static void test_tls_server_name(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char by_name[128], by_ip[128], plain[128];
  snprintf(by_name, sizeof by_name, "https://localhost:%d/host", tls_port);
  snprintf(by_ip, sizeof by_ip, "%s/host", tls_base);
  snprintf(plain, sizeof plain, "%s/host", base);
  result_t named = {0}, other = {0}, http = {0}, own = {0};
  /* "localhost" is not in the SAN, but the name checked is 127.0.0.1. */
  amc_http_opts_t o1 = {.url = by_name,
                        .timeout_ms = 5000,
                        .ca_file = cert_path,
                        .tls_server_name = "127.0.0.1"};
  assert_non_null(amc_http_start(h, &o1, on_done, &named));
  /* The URL's host is in the SAN, but the name checked is not. */
  amc_http_opts_t o2 = {.url = by_ip,
                        .timeout_ms = 5000,
                        .ca_file = cert_path,
                        .tls_server_name = "kubernetes.example"};
  assert_non_null(amc_http_start(h, &o2, on_done, &other));
  /* Plain http: no TLS, the option is ignored. */
  amc_http_opts_t o3 = {
      .url = plain, .timeout_ms = 5000, .tls_server_name = "x.example"};
  assert_non_null(amc_http_start(h, &o3, on_done, &http));
  /* A Host header given by the caller is kept. */
  const char *hdrs[] = {"host: given.example", NULL};
  amc_http_opts_t o4 = {.url = by_name,
                        .headers = hdrs,
                        .timeout_ms = 5000,
                        .ca_file = cert_path,
                        .tls_server_name = "127.0.0.1"};
  assert_non_null(amc_http_start(h, &o4, on_done, &own));
  /* Malformed names are refused up front. */
  static const char *bad[] = {"", "a b", "x:1", "x/y", "a@b", "[::1]"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    amc_http_opts_t ob = {.url = by_ip, .tls_server_name = bad[i]};
    assert_null(amc_http_start(h, &ob, on_done, NULL));
  }
  run_and_close(&loop, h);
  assert_false(named.had_error);
  assert_int_equal(named.status, 200);
  char want[64];
  snprintf(want, sizeof want, "localhost:%d", tls_port);
  assert_string_equal(named.body.data, want);
  assert_true(other.had_error);
  assert_int_equal(other.status, 0);
  assert_false(http.had_error);
  assert_int_equal(http.status, 200);
  assert_false(own.had_error);
  assert_string_equal(own.body.data, "given.example");
  result_t *all[] = {&named, &other, &http, &own};
  for (int i = 0; i < 4; i++)
    result_free(all[i]);
}

static void test_bad_options(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  amc_http_opts_t o = {0};
  assert_null(amc_http_start(h, &o, on_done, NULL));
  run_and_close(&loop, h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_find),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_get_post_headers),
      cmocka_unit_test(test_delete_and_error_status),
      cmocka_unit_test(test_timeout_and_refused),
      cmocka_unit_test(test_streaming),
      cmocka_unit_test(test_cancel_inside_chunk),
      cmocka_unit_test(test_cancel_idle_stream),
      cmocka_unit_test(test_close_with_requests_in_flight),
      cmocka_unit_test(test_many_and_chained),
      cmocka_unit_test(test_written_before_start_returns),
      cmocka_unit_test(test_tls_verification),
      cmocka_unit_test(test_tls_server_name),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}
