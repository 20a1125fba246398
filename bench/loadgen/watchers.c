/*
 * watchers: many long-poll / streaming HTTP watchers in one epoll loop.
 *
 * Compiled at run time by bench/loadgen/watchers.py (never committed as a
 * binary). One process holds thousands of connections at a cost of a few
 * microseconds per response, so the watch benchmark measures the server,
 * not its client (a Python client added 25-45 ms at 1,000 watchers).
 *
 *   watchers client http|etcd N HOST:PORT[,HOST:PORT...]
 *       Opens N keep-alive connections, round-robin over the targets, then
 *       obeys commands on stdin (one per line) and answers on stdout:
 *         ARM LEN\n<LEN bytes>  http: send the request on every connection;
 *                               etcd: send it once (a POST /v3/watch), later
 *                               ARMs only re-arm the open streams.
 *                               -> "ARMED <waiting> <errors>" once every request
 *                                  is written (http) or every watch is
 *                                  created (etcd).
 *         WAIT MS               -> "RESULT <done> <pending> <errors>" and
 *                                  "TIMES t1 t2 ..." (CLOCK_MONOTONIC ns of
 *                                  each completed answer) once every armed
 *                                  connection answered or MS passed.
 *         QUIT
 *       http: an answer is complete when Content-Length bytes of body have
 *       arrived (status != 200 counts as an error); etcd: when a chunk with
 *       "events" arrives on the watch stream.
 *
 *   watchers serve HOST:PORT N
 *       A trivial target: holds every request it receives; prints
 *       "HELD <n>" when N are held; "FIRE" on stdin answers all of them
 *       with a small 200 at once. Pointing the client at it measures the
 *       generator's own cost.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 1024
#define MAX_CONNECTING 256
#define INBUF 65536

enum state { S_NEW, S_CONNECTING, S_IDLE, S_SENDING, S_CREATING, S_WAITING, S_DONE, S_ERROR };

enum why { W_NONE, W_CONNECT, W_EOF, W_IO, W_STATUS, W_OVERFLOW, W_UNASKED, W_NWHY };
static const char *why_names[W_NWHY] = {"none", "connect", "eof", "io", "status", "overflow",
                                        "unasked"};

struct conn {
    int fd;
    enum why why;
    int target;
    enum state state;
    size_t sent;
    char *in;
    size_t in_len;
    int64_t done_ns;
};

static struct conn *conns;
static int nconns;
static int epfd;
static int etcd_mode;
static struct sockaddr_in *targets;
static int ntargets;
static char *request;
static size_t request_len;
static int etcd_stream_open;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int parse_addr(const char *text, struct sockaddr_in *out) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) return -1;
    memcpy(host, text, colon - text);
    host[colon - text] = 0;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static void set_events(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

static void fail(struct conn *c, enum why why) {
    c->why = why;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = S_ERROR;
}

/* The first unexpected answer, kept for the report (newlines made visible). */
static char first_bad[161];

static void keep_first_bad(const struct conn *c) {
    if (first_bad[0]) return;
    size_t n = c->in_len < sizeof first_bad - 1 ? c->in_len : sizeof first_bad - 1;
    for (size_t i = 0; i < n; i++) {
        char ch = c->in[i];
        first_bad[i] = (ch == '\r' || ch == '\n' || ch == ' ') ? '|' : ch;
    }
    first_bad[n] = 0;
}

static int count(enum state s) {
    int n = 0;
    for (int i = 0; i < nconns; i++) n += conns[i].state == s;
    return n;
}

/* ---------------------------------------------------------------- connect */

static int connecting;

static void start_connects(void) {
    for (int i = 0; i < nconns && connecting < MAX_CONNECTING; i++) {
        struct conn *c = &conns[i];
        if (c->state != S_NEW) continue;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            c->state = S_ERROR;
            c->why = W_CONNECT;
            continue;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add");
        int rc = connect(c->fd, (struct sockaddr *)&targets[c->target], sizeof targets[0]);
        if (rc == 0) {
            c->state = S_IDLE;
            set_events(c, EPOLLIN);
        } else if (errno == EINPROGRESS) {
            c->state = S_CONNECTING;
            connecting++;
        } else {
            fail(c, W_CONNECT);
        }
    }
}

static void on_connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    connecting--;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        fail(c, W_CONNECT);
    } else {
        c->state = S_IDLE;
        set_events(c, EPOLLIN);
    }
    start_connects();
}

/* ------------------------------------------------------------------ client */

static void try_send(struct conn *c) {
    while (c->sent < request_len) {
        ssize_t n = write(c->fd, request + c->sent, request_len - c->sent);
        if (n < 0) {
            if (errno == EAGAIN) {
                set_events(c, EPOLLIN | EPOLLOUT);
                return;
            }
            fail(c, W_IO);
            return;
        }
        c->sent += (size_t)n;
    }
    set_events(c, EPOLLIN);
    c->state = etcd_mode ? S_CREATING : S_WAITING;
}

/* An http answer is complete once its head and Content-Length bytes are in. */
static int http_complete(struct conn *c, int *ok) {
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->in) + 4;
    long length = 0;
    for (char *p = c->in; p < end; p++) {
        if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            length = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (c->in_len < head + (size_t)length) return 0;
    *ok = c->in_len > 12 && memcmp(c->in + 9, "200", 3) == 0;
    return 1;
}

static void on_readable(struct conn *c) {
    for (;;) {
        if (c->in_len == INBUF) {
            fail(c, W_OVERFLOW);  /* an answer larger than the benchmark expects */
            return;
        }
        ssize_t n = read(c->fd, c->in + c->in_len, INBUF - c->in_len);
        if (n < 0) {
            if (errno == EAGAIN) return;
            fail(c, W_IO);
            return;
        }
        if (n == 0) {
            fail(c, W_EOF);
            return;
        }
        c->in_len += (size_t)n;
        int64_t t = now_ns();
        if (etcd_mode) {
            if (c->state == S_CREATING && memmem(c->in, c->in_len, "\"created\":true", 14)) {
                c->state = S_WAITING;
                c->in_len = 0;
            } else if (c->state == S_WAITING && memmem(c->in, c->in_len, "\"events\"", 8)) {
                c->state = S_DONE;
                c->done_ns = t;
                c->in_len = 0;
            } else if (c->state == S_DONE || c->state == S_IDLE) {
                c->in_len = 0;  /* more events of an answered round: ignore */
            }
        } else if (c->state == S_WAITING || c->state == S_SENDING) {
            int ok = 0;
            if (http_complete(c, &ok)) {
                if (!ok) {
                    keep_first_bad(c);
                    fail(c, W_STATUS);
                    return;
                }
                c->state = S_DONE;
                c->done_ns = t;
                c->in_len = 0;
            }
        } else {
            fail(c, W_UNASKED);  /* bytes nobody asked for */
            return;
        }
    }
}

static void arm(void) {
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state == S_ERROR) continue;
        c->done_ns = 0;
        c->in_len = 0;
        if (etcd_mode && etcd_stream_open) {
            if (c->state == S_DONE) c->state = S_WAITING;
            continue;
        }
        c->sent = 0;
        c->state = S_SENDING;
        try_send(c);
    }
    etcd_stream_open = etcd_mode;
}

/* ------------------------------------------------------------------- loop */

static char cmdbuf[1 << 20];
static size_t cmd_len;
static int want_armed, want_wait, want_connected = 1;
static int64_t wait_deadline;

static void handle_commands(void) {
    for (;;) {
        char *nl = memchr(cmdbuf, '\n', cmd_len);
        if (!nl) return;
        size_t line = (size_t)(nl - cmdbuf) + 1;
        if (strncmp(cmdbuf, "ARM ", 4) == 0) {
            size_t len = strtoul(cmdbuf + 4, NULL, 10);
            if (cmd_len < line + len) return;  /* payload not complete yet */
            free(request);
            request = malloc(len + 1);
            memcpy(request, cmdbuf + line, len);
            request_len = len;
            line += len;
            arm();
            want_armed = 1;
        } else if (strncmp(cmdbuf, "WAIT ", 5) == 0) {
            wait_deadline = now_ns() + (int64_t)strtol(cmdbuf + 5, NULL, 10) * 1000000LL;
            want_wait = 1;
        } else if (strncmp(cmdbuf, "QUIT", 4) == 0) {
            exit(0);
        }
        memmove(cmdbuf, cmdbuf + line, cmd_len - line);
        cmd_len -= line;
    }
}

static void report(void) {
    if (want_connected && count(S_NEW) == 0 && connecting == 0) {
        printf("CONNECTED %d %d\n", count(S_IDLE), count(S_ERROR));
        fflush(stdout);
        want_connected = 0;
    }
    if (want_armed && count(S_SENDING) == 0 && count(S_CREATING) == 0) {
        printf("ARMED %d %d\n", count(S_WAITING) + count(S_DONE), count(S_ERROR));
        fflush(stdout);
        want_armed = 0;
    }
    if (want_wait && (count(S_WAITING) == 0 || now_ns() >= wait_deadline)) {
        printf("RESULT %d %d %d\nTIMES", count(S_DONE), count(S_WAITING), count(S_ERROR));
        for (int i = 0; i < nconns; i++)
            if (conns[i].state == S_DONE) printf(" %lld", (long long)conns[i].done_ns);
        printf("\nERRORS");
        for (int w = 1; w < W_NWHY; w++) {
            int k = 0;
            for (int i = 0; i < nconns; i++) k += conns[i].state == S_ERROR && (int)conns[i].why == w;
            if (k) printf(" %s=%d", why_names[w], k);
        }
        if (first_bad[0]) printf(" first=%s", first_bad);
        printf("\n");
        fflush(stdout);
        want_wait = 0;
    }
}

static int client_main(int argc, char **argv) {
    if (argc != 5) return 1;
    etcd_mode = strcmp(argv[2], "etcd") == 0;
    nconns = atoi(argv[3]);
    char *list = strdup(argv[4]);
    for (char *p = list; *p; p++) ntargets += *p == ',';
    ntargets++;
    targets = calloc((size_t)ntargets, sizeof *targets);
    int t = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (parse_addr(tok, &targets[t++]) < 0) {
            fprintf(stderr, "bad address %s\n", tok);
            return 1;
        }
    }
    conns = calloc((size_t)nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].target = i % ntargets;
        conns[i].in = malloc(INBUF);
    }
    epfd = epoll_create1(0);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    fcntl(0, F_SETFL, O_NONBLOCK);
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    start_connects();
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        report();
        int timeout = want_wait ? 5 : 100;
        int n = epoll_wait(epfd, events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                ssize_t r = read(0, cmdbuf + cmd_len, sizeof cmdbuf - cmd_len);
                if (r == 0) return 0;  /* the driver went away */
                if (r > 0) cmd_len += (size_t)r;
                handle_commands();
                continue;
            }
            if (c->state == S_CONNECTING) {
                on_connected(c);
            } else if (c->state != S_ERROR) {
                if ((events[i].events & EPOLLOUT) && c->state == S_SENDING) try_send(c);
                if (c->state != S_ERROR && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    on_readable(c);
            }
        }
    }
}

/* ------------------------------------------------------------------ serve */

static const char canned[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 2\r\n"
    "Content-Length: 2\r\n\r\n[]";

static int serve_main(int argc, char **argv) {
    if (argc != 4) return 1;
    struct sockaddr_in addr;
    if (parse_addr(argv[2], &addr) < 0) return 1;
    int want = atoi(argv[3]);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    epfd = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event sev = {.events = EPOLLIN, .data.fd = 0};
    fcntl(0, F_SETFL, O_NONBLOCK);
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    int cap = want + 16, *held = calloc((size_t)cap, sizeof(int)), nheld = 0, reported = 0;
    char buf[INBUF];
    printf("LISTENING\n");
    fflush(stdout);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, 100);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, c, &ev);
                }
            } else if (fd == 0) {
                ssize_t r = read(0, buf, sizeof buf);
                if (r == 0) return 0;
                if (r > 0 && memmem(buf, (size_t)r, "FIRE", 4)) {
                    for (int k = 0; k < nheld; k++)
                        if (write(held[k], canned, sizeof canned - 1) < 0) close(held[k]);
                    printf("FIRED %d\n", nheld);
                    fflush(stdout);
                    nheld = reported = 0;
                }
            } else {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r <= 0) {
                    if (r == 0 || errno != EAGAIN) close(fd);
                    continue;
                }
                /* One request per read is all this client ever sends. */
                if (nheld < cap) held[nheld++] = fd;
            }
        }
        if (!reported && nheld >= want) {
            printf("HELD %d\n", nheld);
            fflush(stdout);
            reported = 1;
        }
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOFBF, 1 << 20);
    if (argc >= 2 && strcmp(argv[1], "client") == 0) return client_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) return serve_main(argc, argv);
    fprintf(stderr, "usage: watchers client http|etcd N HOST:PORT[,...] | serve HOST:PORT N\n");
    return 1;
}
