/*
 * podnet-bridge / podnet-ipam native shim: the same job as cni/bridge_main.py (read the CNI invocation,
 * hand it to `podnet cni daemon` over its unix socket, relay the answer), without paying
 * ~9 ms of CPU for a Python interpreter start on every call. `podnet cni install` compiles it
 * when a C compiler is present; otherwise the Python shim is installed.
 *
 * Whenever the daemon cannot serve the call (no socket, refused, other netns -> FALLBACK),
 * it runs the Python shim (cni.bridge_main in REPO with PYTHON, set at compile time) with the
 * original stdin replayed from a memfd, so behaviour is identical to the Python shim. Installed
 * under the name podnet-ipam, it adds PODNET_CNI_PLUGIN=podnet-ipam to the request (the daemon
 * then runs the IPAM plugin) and falls back to cni.ipam_main.
 *
 * Wire format (cni/bridge_main.py, cni/daemon.py):
 *   request  "PNCNI1 <len(env)>\n" + "K=V\0K=V..." + stdin        then shutdown(SHUT_WR)
 *   reply    "<exit code> <len(stdout)> <len(stderr)>\n" + stdout + stderr | "FALLBACK ...\n"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#if !defined(PYTHON) || !defined(REPO)
#error "compile with -DPYTHON=\"/path/to/python\" -DREPO=\"/path/to/podnet/checkout\""
#endif

extern char **environ;

typedef struct { char *p; size_t n, cap; } buf_t;

static void put(buf_t *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) { perror("podnet-bridge"); exit(1); }
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void read_all(int fd, buf_t *b) {
    char tmp[65536];
    for (;;) {
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return;
        put(b, tmp, (size_t)r);
    }
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w; n -= (size_t)w;
    }
}

/* a top-level "key": "plain string" of the config, as bridge_main._json_string_field */
static int json_string_field(const buf_t *in, const char *key, char *out, size_t outsz) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *at = in->p ? memmem(in->p, in->n, pat, strlen(pat)) : NULL;
    if (!at) return 0;
    const char *p = at + strlen(pat), *end = in->p + in->n;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p >= end || *p++ != ':') return 0;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p >= end || *p++ != '"') return 0;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q || memchr(p, '\\', (size_t)(q - p)) || (size_t)(q - p) >= outsz) return 0;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = 0;
    return 1;
}

static const char *fallback_module = "cni.bridge_main";

static void fallback(const buf_t *in) {
    /* replay stdin to the Python shim, which does the work in-process */
    int fd = memfd_create("podnet-bridge-stdin", 0);
    if (fd >= 0) {
        write_all(fd, in->p ? in->p : "", in->n);
        lseek(fd, 0, SEEK_SET);
        dup2(fd, 0);
        close(fd);
    }
    char code[1024];
    snprintf(code, sizeof code, "import sys; sys.path.insert(0, '%s'); from %s import main; sys.exit(main())",
             REPO, fallback_module);
    execl(PYTHON, PYTHON, "-IS", "-c", code, (char *)NULL);
    perror("podnet-bridge: exec " PYTHON);
    exit(1);
}

static int daemon_lost(const buf_t *in, const char *detail) {
    char version[32] = "1.1.0";
    json_string_field(in, "cniVersion", version, sizeof version);
    printf("{\"cniVersion\": \"%s\", \"code\": 11, \"msg\": \"podnet cni daemon did not answer\", "
           "\"details\": \"%s\"}\n", version, detail);
    return 1;
}

int main(int argc, char **argv) {
    buf_t in = {0}, req = {0}, env = {0}, rep = {0};
    /* one binary for both plugin types: installed as podnet-ipam it asks the daemon for IPAM */
    const char *self = argc > 0 ? strrchr(argv[0], '/') : NULL;
    self = self ? self + 1 : (argc > 0 ? argv[0] : "");
    int ipam = strcmp(self, "podnet-ipam") == 0;
    if (ipam) fallback_module = "cni.ipam_main";
    read_all(0, &in);

    const char *off = getenv("PODNET_CNI_DAEMON");
    if (off && (!strcasecmp(off, "off") || !strcmp(off, "0") || !strcasecmp(off, "false") || !strcasecmp(off, "no")))
        fallback(&in);
    char path[108] = "/run/podnet/cni.sock";
    const char *envpath = getenv("PODNET_CNI_SOCKET");
    if (envpath && *envpath) {
        if (strlen(envpath) >= sizeof path) fallback(&in);
        strcpy(path, envpath);
    } else {
        json_string_field(&in, "daemonSocket", path, sizeof path);
    }

    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) fallback(&in);

    for (char **e = environ; *e; e++) {
        if (!strncmp(*e, "PODNET_CNI_PLUGIN=", 18)) continue;
        if (env.n) put(&env, "", 1);  /* NUL separator */
        put(&env, *e, strlen(*e));
    }
    if (ipam) {
        if (env.n) put(&env, "", 1);
        put(&env, "PODNET_CNI_PLUGIN=podnet-ipam", 29);
    }
    char head[64];
    int hn = snprintf(head, sizeof head, "PNCNI1 %zu\n", env.n);
    put(&req, head, (size_t)hn);
    put(&req, env.p ? env.p : "", env.n);
    put(&req, in.p ? in.p : "", in.n);
    const char *p = req.p;
    size_t left = req.n;
    while (left > 0) {
        ssize_t w = send(s, p, left, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fallback(&in);  /* nothing was served yet */
        p += w; left -= (size_t)w;
    }
    shutdown(s, SHUT_WR);
    read_all(s, &rep);
    close(s);

    if (rep.n >= 8 && !memcmp(rep.p, "FALLBACK", 8)) fallback(&in);
    char *nl = rep.p ? memchr(rep.p, '\n', rep.n) : NULL;
    int code;
    size_t nout, nerr;
    if (!nl || sscanf(rep.p, "%d %zu %zu", &code, &nout, &nerr) != 3) return daemon_lost(&in, "malformed reply");
    char *body = nl + 1;
    size_t have = rep.n - (size_t)(body - rep.p);
    if (nout + nerr > have) return daemon_lost(&in, "short reply");
    write_all(2, body + nout, nerr);
    write_all(1, body, nout);
    if (nout && body[nout - 1] != '\n') write_all(1, "\n", 1);
    return code;
}
