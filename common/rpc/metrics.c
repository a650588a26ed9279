/* metrics.c - the Prometheus exposition of a process's figures, and its HTTP endpoint
 * (libmicrohttpd, one internal thread). The contract is in metrics.h. */
#include "common/rpc/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"

#define METRICS_RPC_SERVER "twig_rpc_server_errors_total"
#define METRICS_RPC_CLIENT "twig_rpc_client_errors_total"
#define METRICS_LINE_EXTRA 48     /* a sample line beyond its name: labels, value, newline */
#define METRICS_BACKLOG 16
#define METRICS_MAX_CONNS 16      /* scrapers at once */
#define METRICS_CONN_TIMEOUT_S 10 /* an idle scrape connection is closed after this */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct outbuf {
    char *p;
    size_t cap;
    size_t n;
    bool full;
} outbuf;

static void out_printf(outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(outbuf *o, const char *fmt, ...)
{
    if (o->full) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= o->cap - o->n) {
        o->full = true;
        return;
    }
    o->n += (size_t)k;
}

/* help text as # HELP wants it: backslash and newline escaped */
static void out_help(outbuf *o, const char *name, const char *help)
{
    out_printf(o, "# HELP %s ", name);
    for (const char *c = help; *c && !o->full; c++) {
        if (*c == '\\') {
            out_printf(o, "\\\\");
        } else if (*c == '\n') {
            out_printf(o, "\\n");
        } else {
            out_printf(o, "%c", *c);
        }
    }
    out_printf(o, "\n");
}

/* a sample value: integers exactly, NaN and infinities as Prometheus spells them */
static void out_value(outbuf *o, double v)
{
    if (isnan(v)) {
        out_printf(o, "NaN\n");
    } else if (isinf(v)) {
        out_printf(o, "%sInf\n", v > 0 ? "+" : "-");
    } else if (v == trunc(v) && fabs(v) < 9007199254740992.0) {   /* 2^53 */
        out_printf(o, "%.0f\n", v);
    } else {
        out_printf(o, "%.17g\n", v);
    }
}

static void out_rpc_errors(outbuf *o, const char *name, const char *help, const uint64_t *n)
{
    out_help(o, name, help);
    out_printf(o, "# TYPE %s counter\n", name);
    for (int s = 1; s < RPC_N_STATUS; s++) {
        out_printf(o, "%s{code=\"%s\"} %llu\n", name, rpc_status_name(s),
                   (unsigned long long)n[s]);
    }
}

int metrics_format(char *buf, size_t cap, const metrics_series *series, int n_series,
                   const stats_kv *kv, int n_kv, const uint64_t *server_errors,
                   const uint64_t *client_errors)
{
    outbuf o = {.p = buf, .cap = cap};
    if (cap > 0) {
        buf[0] = '\0';
    }
    for (int i = 0; i < n_series; i++) {
        const metrics_series *s = &series[i];
        double v = NAN;
        for (int k = 0; k < n_kv; k++) {
            if (strcmp(kv[k].key, s->stat) == 0) {
                v = kv[k].value;
                break;
            }
        }
        out_help(&o, s->name, s->help);
        out_printf(&o, "# TYPE %s %s\n", s->name,
                   s->type == METRICS_COUNTER ? "counter" : "gauge");
        out_printf(&o, "%s ", s->name);
        out_value(&o, v);
    }
    if (server_errors) {
        out_rpc_errors(&o, METRICS_RPC_SERVER,
                       "RPC calls this process's server ended with an error status, by status",
                       server_errors);
    }
    if (client_errors) {
        out_rpc_errors(&o, METRICS_RPC_CLIENT,
                       "attempts of this process's RPC calls that failed, by status (each retry "
                       "counts)",
                       client_errors);
    }
    if (o.full || cap == 0) {
        return err_set(-ENOSPC, "metrics: the exposition text exceeds %zu bytes", cap);
    }
    return (int)o.n;
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > METRICS_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) {
            return false;
        }
    }
    return true;
}

int metrics_check_series(const metrics_series *series, int n_series)
{
    if (n_series < 0 || n_series > METRICS_MAX_SERIES) {
        return err_set(-EINVAL, "metrics: %d series, at most %d", n_series, METRICS_MAX_SERIES);
    }
    for (int i = 0; i < n_series; i++) {
        const metrics_series *s = &series[i];
        if (!s->name || !name_ok(s->name)) {
            return err_set(-EINVAL,
                           "metrics: series %d: name '%s' is not [a-zA-Z_:][a-zA-Z0-9_:]* of at "
                           "most %d characters",
                           i, s->name ? s->name : "(null)", METRICS_NAME_MAX);
        }
        if (s->type != METRICS_COUNTER && s->type != METRICS_GAUGE) {
            return err_set(-EINVAL, "metrics: %s: type %d is neither counter nor gauge", s->name,
                           (int)s->type);
        }
        size_t len = strlen(s->name);
        bool total = len > 6 && strcmp(s->name + len - 6, "_total") == 0;
        if (s->type == METRICS_COUNTER && !total) {
            return err_set(-EINVAL, "metrics: %s: a counter's name ends in _total", s->name);
        }
        if (s->type == METRICS_GAUGE && total) {
            return err_set(-EINVAL, "metrics: %s: a gauge's name must not end in _total",
                           s->name);
        }
        if (!s->help || !s->help[0] || strlen(s->help) > METRICS_HELP_MAX) {
            return err_set(-EINVAL, "metrics: %s: help must be 1..%d characters", s->name,
                           METRICS_HELP_MAX);
        }
        if (!s->stat || !s->stat[0]) {
            return err_set(-EINVAL, "metrics: %s: no Stats key", s->name);
        }
        if (strcmp(s->name, METRICS_RPC_SERVER) == 0 || strcmp(s->name, METRICS_RPC_CLIENT) == 0) {
            return err_set(-EINVAL, "metrics: %s: the RPC layer's own series", s->name);
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(series[j].name, s->name) == 0) {
                return err_set(-EINVAL, "metrics: %s: named twice (series %d and %d)", s->name,
                               j, i);
            }
        }
    }
    return 0;
}

int metrics_render(metrics_t *m, const char **text)
{
    stats_kv kv[STATS_MAX];
    int n_kv = m->cfg.collect(kv, STATS_MAX, m->cfg.app);
    uint64_t srv_err[RPC_N_STATUS] = {0};
    uint64_t cl_err[RPC_N_STATUS] = {0};
    if (m->cfg.srv) {
        rpc_server_error_counts(m->cfg.srv, srv_err);
    }
    for (int i = 0; i < METRICS_MAX_CLIENTS; i++) {
        rpc_client_error_counts(m->cfg.clients[i], cl_err);
    }
    int n = metrics_format(m->buf, m->cap, m->cfg.series, m->cfg.n_series, kv, n_kv, srv_err,
                           cl_err);
    *text = m->buf;
    return n;
}

/* ---- HTTP ---- */

static enum MHD_Result metrics_answer(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_size,
                                      void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_size;
    (void)req_cls;
    metrics_t *m = cls;
    const char *body = "only GET " METRICS_PATH " is served here\n";
    unsigned code = MHD_HTTP_NOT_FOUND;
    int n = (int)strlen(body);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (strcmp(url, METRICS_PATH) == 0) {
        int k = metrics_render(m, &body);
        if (k >= 0) {
            code = MHD_HTTP_OK;
            n = k;
        } else {
            body = "metrics: the exposition text outgrew its buffer\n";
            n = (int)strlen(body);
            code = MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    /* the buffer is rendered again by the next scrape: the response takes a copy */
    struct MHD_Response *r =
        MHD_create_response_from_buffer((size_t)n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) {
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* libmicrohttpd's own complaints, as one twig log line each */
static void metrics_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char text[256];
    vsnprintf(text, sizeof text, fmt, ap);
    text[strcspn(text, "\n")] = '\0';
    log_warn("event=metrics_http_error detail=\"%s\"", text);
}

/* listen as one IPv4 or IPv6 socket address (numeric or resolved host) */
static int metrics_resolve(struct sockaddr_storage *sa, const char *listen)
{
    char host[NETADDR_MAX + 1];
    int port;
    if (netaddr_split(host, sizeof host, &port, listen) < 0) {
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, NULL, &hints, &res);
    if (g != 0 || !res) {
        return err_set(-EINVAL, "metrics_listen '%s': host '%s' does not resolve: %s", listen,
                       host, gai_strerror(g));
    }
    memset(sa, 0, sizeof *sa);
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (sa->ss_family == AF_INET) {
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    } else if (sa->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    } else {
        return err_set(-EINVAL, "metrics_listen '%s': not an IPv4 or IPv6 address", listen);
    }
    return 0;
}

/* the render buffer: every line's fixed part plus room for its value, twice over */
static size_t metrics_capacity(const metrics_cfg *cfg)
{
    size_t cap = 4096;   /* the two RPC families: 2 x 16 lines, far below */
    for (int i = 0; i < cfg->n_series; i++) {
        const metrics_series *s = &cfg->series[i];
        cap += 3 * strlen(s->name) + 2 * strlen(s->help) + 3 * METRICS_LINE_EXTRA;
    }
    return 2 * cap;
}

int metrics_init(metrics_t *m, const metrics_cfg *cfg)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (!cfg->collect) {
        return err_set(-EINVAL, "metrics: no collect function");
    }
    int rc = metrics_check_series(cfg->series, cfg->n_series);
    if (rc < 0) {
        return rc;
    }
    /* every series shows a key the process really reports */
    stats_kv kv[STATS_MAX];
    int n_kv = cfg->collect(kv, STATS_MAX, cfg->app);
    for (int i = 0; i < cfg->n_series; i++) {
        bool found = false;
        for (int k = 0; k < n_kv && !found; k++) {
            found = strcmp(kv[k].key, cfg->series[i].stat) == 0;
        }
        if (!found) {
            return err_set(-EINVAL, "metrics: %s: Stats has no key '%s'", cfg->series[i].name,
                           cfg->series[i].stat);
        }
    }
    m->cap = metrics_capacity(cfg);
    m->buf = xmalloc(m->cap);
    const char *addr = cfg->listen ? cfg->listen : "";
    m->cfg.listen = m->listen;
    if (strlen(addr) > NETADDR_MAX) {
        return err_set(-EINVAL, "metrics_listen: '%.32s...' is longer than %d", addr,
                       NETADDR_MAX);
    }
    snprintf(m->listen, sizeof m->listen, "%s", addr);
    if (!addr[0]) {
        return 0;   /* off */
    }
    struct sockaddr_storage sa;
    rc = metrics_resolve(&sa, addr);
    if (rc < 0) {
        return rc;
    }
    /* bind here, so that a taken port is named as such (MHD would only say it failed) */
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return err_set(-errno, "metrics_listen '%s': socket: %s", addr, strerror(errno));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len = sa.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                            : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, METRICS_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "metrics_listen '%s': %s", addr, strerror(e));
    }
    /* one thread for every connection (scrapes are serialised: one render buffer), with
     * poll/epoll rather than select (no FD_SETSIZE limit on the socket's number) */
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (sa.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, metrics_answer, m, MHD_OPTION_LISTEN_SOCKET,
                              fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNS,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_CONN_TIMEOUT_S,
                              MHD_OPTION_EXTERNAL_LOGGER, metrics_mhd_log, NULL, MHD_OPTION_END);
    if (!m->mhd) {
        close(fd);
        return err_set(-EIO, "metrics_listen '%s': libmicrohttpd did not start", addr);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? (int)info->port : 0;
    log_info("event=metrics_serving listen=%s port=%d path=%s series=%d", addr, m->port,
             METRICS_PATH, cfg->n_series);
    return 0;
}

int metrics_port(const metrics_t *m)
{
    return m->port;
}

void metrics_free(metrics_t *m)
{
    if (m->mhd) {
        MHD_stop_daemon(m->mhd);   /* closes the listen socket it was given */
        m->mhd = NULL;
    }
    free(m->buf);
    m->buf = NULL;
    m->port = 0;
}
