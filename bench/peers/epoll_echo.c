/*
 * epoll_echo.c - minimal single-threaded epoll TCP echo server.
 *
 * The reference peer for porta's performance suite: it shows what this
 * machine can do with one thread and no framework. Every byte read is written
 * straight back, so line-framed messages are echoed unchanged.
 *
 *   gcc -Wall -O2 -o epoll_echo epoll_echo.c
 *   ./epoll_echo -addr 127.0.0.1:0
 *
 * Prints "Listening on tcp://HOST:PORT" once listening, runs until SIGINT or
 * SIGTERM and then exits 0.
 *
 * Design: level-triggered epoll; each connection owns a 64 KiB buffer. On
 * EPOLLIN we read once and write the data back. If the write is partial the
 * remainder stays in the buffer, the connection switches to EPOLLOUT only
 * (so we stop reading it) and switches back to EPOLLIN once drained.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t off, len;          /* unwritten bytes are buf[off:len] */
    char buf[BUF_SIZE];
};

static int epfd;
static struct conn **conns;   /* indexed by fd */
static int max_fds;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Split "HOST:PORT" at the last colon and bind+listen on it. */
static int listen_on(const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        fprintf(stderr, "bad -addr %s (want HOST:PORT)\n", addr);
        exit(2);
    }
    memcpy(host, addr, colon - addr);
    host[colon - addr] = '\0';

    struct addrinfo hints = {0}, *ai;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "resolve %s: %s\n", addr, gai_strerror(rc));
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die("bind");
    freeaddrinfo(ai);
    if (listen(fd, SOMAXCONN) < 0)
        die("listen");
    return fd;
}

static void set_events(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = c->fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl mod");
}

static void close_conn(struct conn *c)
{
    conns[c->fd] = NULL;
    close(c->fd);             /* also removes it from the epoll set */
    free(c);
}

/* Write buf[off:len]. Returns -1 if the connection failed (and was closed). */
static int flush_conn(struct conn *c, int was_blocked)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!was_blocked)
                    set_events(c, EPOLLOUT);   /* stop reading until drained */
                return 0;
            }
            close_conn(c);
            return -1;
        }
        c->off += n;
    }
    c->off = c->len = 0;
    if (was_blocked)
        set_events(c, EPOLLIN);
    return 0;
}

static void on_readable(struct conn *c)
{
    ssize_t n = read(c->fd, c->buf, BUF_SIZE);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {             /* EOF or error */
        close_conn(c);
        return;
    }
    c->off = 0;
    c->len = n;
    flush_conn(c, 0);
}

/* Accept everything pending. On fd exhaustion, use the spare fd to accept
 * and drop the connection so level-triggered epoll does not spin. */
static void on_accept(int lfd, int *spare)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && *spare >= 0) {
                close(*spare);
                fd = accept(lfd, NULL, NULL);
                if (fd >= 0)
                    close(fd);
                *spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                    return;   /* EMFILE is reported even with no pending conn */
                continue;
            }
            return;           /* EAGAIN or unexpected: wait for next event */
        }
        if (fd >= max_fds) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = malloc(sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->off = c->len = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        conns[fd] = c;
    }
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-addr") || !strcmp(argv[i], "--addr")) && i + 1 < argc)
            addr = argv[++i];
        else if (!strncmp(argv[i], "-addr=", 6))
            addr = argv[i] + 6;
        else {
            fprintf(stderr, "usage: %s [-addr HOST:PORT]\n", argv[0]);
            return 2;
        }
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    max_fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1 << 20 ? 1 << 20 : (int)rl.rlim_cur;
    conns = calloc(max_fds, sizeof *conns);
    if (!conns)
        die("calloc");

    /* SIGINT/SIGTERM arrive through a signalfd in the same epoll set. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        die("signalfd");

    int lfd = listen_on(addr);
    int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
        die("epoll_ctl listener");
    ev.data.fd = sfd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev) < 0)
        die("epoll_ctl signalfd");

    struct sockaddr_in sa;
    socklen_t salen = sizeof sa;
    if (getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0)
        die("getsockname");
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    printf("Listening on tcp://%s:%d\n", ip, ntohs(sa.sin_port));
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t e = events[i].events;
            if (fd == sfd)
                return 0;
            if (fd == lfd) {
                on_accept(lfd, &spare);
                continue;
            }
            struct conn *c = conns[fd];
            if (!c)
                continue;
            if (c->len > c->off)                  /* blocked on a write */
                flush_conn(c, 1);                 /* EPOLLOUT/ERR/HUP */
            else if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
        }
    }
}
