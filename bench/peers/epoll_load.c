/*
 * epoll_load.c - minimal single-threaded epoll load client for echo servers.
 *
 * The reference load generator for porta's performance suite.
 *
 *   gcc -Wall -O2 -o epoll_load epoll_load.c
 *   ./epoll_load -addr 127.0.0.1:PORT -c 100 -P 16 -s 64 -d 10
 *
 *   -addr HOST:PORT  server to load (default 127.0.0.1:9000)
 *   -c CONNS         connections (default 1)
 *   -P PIPELINE      messages kept outstanding per connection (default 1)
 *   -s SIZE          message size in bytes: SIZE-1 'x' then '\n' (default 64)
 *   -d SECONDS       measured duration (default 10)
 *
 * Connections are opened first, at most 1000 per second so the server's
 * listen backlog is not overrun. Then every connection sends PIPELINE
 * messages and sends one more for every complete reply (a reply is counted
 * per SIZE bytes received on that connection). Only replies received during
 * the measured window are counted. Prints one line of JSON:
 *
 *   {"msgs":N,"seconds":S,"msgs_per_sec":R,"errors":E}
 *
 * errors counts connections that failed to connect or broke during the run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define READ_SIZE (64 * 1024)
#define CONNECT_RATE 1000          /* connects per second */
#define CONNECT_GRACE 10.0         /* extra seconds allowed for the ramp */

enum { CONNECTING, IDLE, RUNNING, DEAD };

struct conn {
    int fd;
    int state;
    uint64_t owed;                 /* bytes still to send */
    uint64_t sent;                 /* bytes sent so far (position in stream) */
    uint64_t received;             /* bytes received so far */
    int want_out;                  /* EPOLLOUT currently registered */
};

static int epfd;
static size_t size;                /* message size */
static char *out;                  /* whole messages back to back */
static size_t out_len;
static char inbuf[READ_SIZE];
static uint64_t msgs, errors;
static int counting;               /* inside the measured window */
static int connected_count;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_events(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void fail(struct conn *c)
{
    if (c->state == DEAD)
        return;
    close(c->fd);
    c->state = DEAD;
    errors++;
}

/* Send as much of the owed bytes as the socket takes. The stream is
 * periodic with period SIZE, so we send from out[sent % size]. */
static void pump(struct conn *c)
{
    while (c->owed > 0) {
        size_t pos = c->sent % size;
        size_t n = out_len - pos;
        if (n > c->owed)
            n = c->owed;
        ssize_t w = send(c->fd, out + pos, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            fail(c);
            return;
        }
        c->sent += w;
        c->owed -= w;
    }
    int want = c->owed > 0;
    if (want != c->want_out) {
        c->want_out = want;
        set_events(c, want ? EPOLLIN | EPOLLOUT : EPOLLIN);
    }
}

static void on_readable(struct conn *c)
{
    ssize_t n = read(c->fd, inbuf, sizeof inbuf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {                  /* the server closed or reset */
        fail(c);
        return;
    }
    uint64_t before = c->received / size;
    c->received += n;
    uint64_t replies = c->received / size - before;
    if (replies == 0)
        return;
    if (counting)
        msgs += replies;
    c->owed += replies * size;
    pump(c);
}

static void on_event(struct conn *c, uint32_t e)
{
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(c);
            return;
        }
        c->state = IDLE;
        connected_count++;
        set_events(c, EPOLLIN);
        return;
    }
    if (c->state == DEAD)
        return;
    if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
    if (c->state != DEAD && (e & EPOLLOUT))
        pump(c);
}

static void start_connect(struct conn *c, struct sockaddr *sa, socklen_t salen)
{
    c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = DEAD;
        errors++;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = CONNECTING;
    if (connect(c->fd, sa, salen) < 0 && errno != EINPROGRESS) {
        fail(c);
        return;
    }
    /* Writable means the connect finished (or failed: see SO_ERROR). */
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        fail(c);
}

static void poll_once(int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++)
        on_event(events[i].data.ptr, events[i].events);
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s -addr HOST:PORT -c CONNS -P PIPELINE -s SIZE -d SECONDS\n", prog);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:9000";
    int nconns = 1, pipeline = 1;
    long msg_size = 64;
    double duration = 10;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (i + 1 >= argc)
            usage(argv[0]);
        const char *v = argv[++i];
        if (!strcmp(f, "-addr"))
            addr = v;
        else if (!strcmp(f, "-c"))
            nconns = atoi(v);
        else if (!strcmp(f, "-P"))
            pipeline = atoi(v);
        else if (!strcmp(f, "-s"))
            msg_size = atol(v);
        else if (!strcmp(f, "-d"))
            duration = atof(v);
        else
            usage(argv[0]);
    }
    if (nconns < 1 || pipeline < 1 || msg_size < 1 || duration <= 0)
        usage(argv[0]);
    size = msg_size;
    signal(SIGPIPE, SIG_IGN);

    /* At least 64 KiB of whole messages, so one send can move a lot. */
    size_t count = (READ_SIZE + size - 1) / size;
    out_len = count * size;
    out = malloc(out_len);
    if (!out) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < out_len; i++)
        out[i] = (i % size == size - 1) ? '\n' : 'x';

    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        usage(argv[0]);
    memcpy(host, addr, colon - addr);
    host[colon - addr] = '\0';
    struct addrinfo hints = {0}, *ai;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "resolve %s: %s\n", addr, gai_strerror(rc));
        return 2;
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc(nconns, sizeof *conns);
    if (epfd < 0 || !conns) {
        perror("setup");
        return 1;
    }

    /* Ramp: open connections at CONNECT_RATE per second, wait for them. */
    double t0 = now(), deadline = t0 + (double)nconns / CONNECT_RATE + CONNECT_GRACE;
    int opened = 0;
    while (connected_count + (int)errors < nconns && now() < deadline) {
        int allowed = 1 + (int)((now() - t0) * CONNECT_RATE);
        while (opened < nconns && opened < allowed)
            start_connect(&conns[opened++], ai->ai_addr, ai->ai_addrlen);
        poll_once(opened < nconns ? 1 : 100);
    }
    freeaddrinfo(ai);
    for (int i = 0; i < nconns; i++)       /* give up on stragglers */
        if (conns[i].state == CONNECTING)
            fail(&conns[i]);

    /* Run: fill every pipeline, then count replies for the duration. */
    counting = 1;
    double start = now(), end = start + duration;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state != IDLE)
            continue;
        c->state = RUNNING;
        c->owed = (uint64_t)pipeline * size;
        pump(c);
    }
    for (double t = start; t < end; t = now()) {
        int ms = (int)((end - t) * 1000) + 1;
        poll_once(ms);
    }
    double seconds = now() - start;

    printf("{\"msgs\":%llu,\"seconds\":%.3f,\"msgs_per_sec\":%.0f,\"errors\":%llu}\n",
           (unsigned long long)msgs, seconds, msgs / seconds, (unsigned long long)errors);
    fflush(stdout);
    return 0;
}
