/* floor_probe - the machine's floor for "file saved -> first AVI call".
 *
 * usage: floor_probe DIR FILE PORT
 *
 * The least a controller can do between a saved file and its AVI call:
 * wait on inotify for FILE in DIR to be renamed into place or closed after
 * writing, then write one HTTP/1.1 PUT on a loopback connection to PORT
 * that is already open, and read the answer. No parsing, no translation,
 * no libuv, no libcurl. bench/run_bench.py drives it with the same route
 * changes and the same clock (the simulator's arrival time of the request)
 * as `amc run`, so the difference between the two is amc's own cost, and
 * what both share (waking a sleeping process on a virtual CPU, the
 * hypervisor taking the CPU away) is the platform's.
 *
 * Prints "ready" on stdout once the watch and the connection are set up.
 * Runs until killed; exits 1 (with a message on stderr) if the watch or
 * the connection fails, 2 on a usage error. The simulator answers the
 * unauthenticated PUT with 401 and keeps the connection open.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

static const char REQUEST[] = "PUT /api/floor-probe HTTP/1.1\r\n"
                              "Host: 127.0.0.1\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: 2\r\n"
                              "\r\n"
                              "{}";

static int fail(const char *what) {
  fprintf(stderr, "floor_probe: %s: %s\n", what, strerror(errno));
  return 1;
}

/* Does the batch of inotify events name `file`? */
static int names_file(const char *events, ssize_t n, const char *file) {
  const char *p = events;
  while (p < events + n) {
    const struct inotify_event *e = (const struct inotify_event *)p;
    if (e->len && strcmp(e->name, file) == 0)
      return 1;
    p += sizeof *e + e->len;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: floor_probe DIR FILE PORT\n");
    return 2;
  }
  int port = atoi(argv[3]);
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "floor_probe: bad port %s\n", argv[3]);
    return 2;
  }
  int watch = inotify_init1(IN_CLOEXEC);
  if (watch < 0 ||
      inotify_add_watch(watch, argv[1], IN_MOVED_TO | IN_CLOSE_WRITE) < 0)
    return fail(argv[1]);
  int conn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((unsigned short)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (conn < 0 || connect(conn, (struct sockaddr *)&addr, sizeof addr) != 0)
    return fail("connect");
  int one = 1; /* as libcurl does: the request goes out at once */
  setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  printf("ready\n");
  fflush(stdout);

  char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  char answer[65536];
  for (;;) {
    ssize_t n = read(watch, events, sizeof events);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return fail("inotify read");
    if (!names_file(events, n, argv[2]))
      continue;
    if (write(conn, REQUEST, sizeof REQUEST - 1) != (ssize_t)sizeof REQUEST - 1)
      return fail("write");
    /* The simulator sends its headers and body in one write: one read
     * takes the answer (a probe does not need to parse it). */
    if (read(conn, answer, sizeof answer) <= 0)
      return fail("read");
  }
}
