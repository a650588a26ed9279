/* main.c - twig-modelserver: command line, logging, run, exit status.
 *
 *   twig-modelserver --listen HOST:PORT --data-dir DIR [--env-id ID] [--fsync batch|group|none]
 *                    [--segment-mb N] [--port-file FILE] [--grace-ms N] [--log-level L]
 *
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the server could not start
 * or run, 2 on a bad command line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/rpc.h"
#include "modelserver/modelserver.h"

typedef struct ms_args {
    const char *listen;
    const char *data_dir;
    const char *env_id;
    const char *port_file;
    const char *fsync;
    const char *log_level;
    const char *segment_mb;
    const char *grace_ms;
} ms_args;

/* one row per option: drives parsing and --help */
typedef struct ms_opt {
    const char *name;
    size_t field;            /* offset in ms_args */
    const char *def;         /* NULL: none */
    const char *help;
} ms_opt;

static const ms_opt ms_opts[] = {
    {"--listen", offsetof(ms_args, listen), NULL,
     "HOST:PORT to listen on (required); port 0 picks a free one"},
    {"--data-dir", offsetof(ms_args, data_dir), NULL,
     "directory of the real-transition log (required; created if missing)"},
    {"--env-id", offsetof(ms_args, env_id), NULL,
     "the run's env id; default: fixed by the first batch (kept in the data dir)"},
    {"--fsync", offsetof(ms_args, fsync), "batch",
     "batch (fdatasync per batch), group (group commit) or none (page cache only)"},
    {"--segment-mb", offsetof(ms_args, segment_mb), "64", "log segment size in MiB (1..4096)"},
    {"--port-file", offsetof(ms_args, port_file), NULL,
     "write the bound port to this file once serving (atomic rename)"},
    {"--grace-ms", offsetof(ms_args, grace_ms), "2000",
     "on SIGTERM, calls in flight get this long to finish (1..600000)"},
    {"--log-level", offsetof(ms_args, log_level), "info", "debug, info, warn or error"},
};
#define MS_N_OPTS (sizeof ms_opts / sizeof ms_opts[0])

static void ms_usage(FILE *f)
{
    fprintf(f, "usage: twig-modelserver --listen HOST:PORT --data-dir DIR [options]\n\n"
               "Serves the run's durable log of real transitions (twig.v1.ModelServer).\n\n");
    for (size_t i = 0; i < MS_N_OPTS; i++) {
        fprintf(f, "  %-14s %s", ms_opts[i].name, ms_opts[i].help);
        if (ms_opts[i].def) {
            fprintf(f, " [%s]", ms_opts[i].def);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "  %-14s %s\n", "--help", "print this and exit");
}

static int ms_bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "twig-modelserver: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see twig-modelserver --help)\n");
    return -EINVAL;
}

static int parse_argv(ms_args *a, int argc, char **argv)
{
    for (size_t i = 0; i < MS_N_OPTS; i++) {
        *(const char **)((char *)a + ms_opts[i].field) = ms_opts[i].def;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const ms_opt *o = NULL;
        for (size_t k = 0; k < MS_N_OPTS; k++) {
            if (strlen(ms_opts[k].name) == name_len && !strncmp(ms_opts[k].name, arg, name_len)) {
                o = &ms_opts[k];
            }
        }
        if (!o) {
            return ms_bad("unknown option '%s'%s", arg, "");
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return ms_bad("option %s needs a value%s", o->name, "");
        }
        *(const char **)((char *)a + o->field) = val;
    }
    return 0;
}

/* "HOST:PORT" with a non-empty host and a port 0..65535 ("[::1]:80" works too) */
static int check_listen(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) {
        return ms_bad("--listen '%s' is not HOST:PORT%s", s, "");
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || port < 0 || port > 65535) {
        return ms_bad("--listen '%s': port must be a number 0..65535%s", s, "");
    }
    return 0;
}

static int parse_long(const char *name, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno || v < lo || v > hi) {
        fprintf(stderr, "twig-modelserver: %s '%s' must be an integer %ld..%ld\n", name, s, lo,
                hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int check_args(modelserver_cfg *cfg, log_level *level, const ms_args *a)
{
    memset(cfg, 0, sizeof *cfg);
    if (!a->listen) {
        return ms_bad("--listen is required%s%s", "", "");
    }
    if (!a->data_dir || !a->data_dir[0]) {
        return ms_bad("--data-dir is required%s%s", "", "");
    }
    if (check_listen(a->listen) < 0) {
        return -EINVAL;
    }
    if (a->env_id && (!a->env_id[0] || strlen(a->env_id) > MSG_MAX_ID_LEN)) {
        return ms_bad("--env-id '%s' must be 1..255 bytes%s", a->env_id, "");
    }
    if (reallog_sync_parse(a->fsync, &cfg->sync) < 0) {
        return ms_bad("--fsync '%s' is not batch, group or none%s", a->fsync, "");
    }
    if (log_level_parse(a->log_level, level) < 0) {
        return ms_bad("--log-level '%s' is not debug, info, warn or error%s", a->log_level, "");
    }
    long mb, grace;
    if (parse_long("--segment-mb", a->segment_mb, 1, 4096, &mb) < 0 ||
        parse_long("--grace-ms", a->grace_ms, 1, 600000, &grace) < 0) {
        return -EINVAL;
    }
    if (a->port_file && !a->port_file[0]) {
        return ms_bad("--port-file is empty%s%s", "", "");
    }
    cfg->listen = a->listen;
    cfg->data_dir = a->data_dir;
    cfg->env_id = a->env_id;
    cfg->port_file = a->port_file;
    cfg->segment_bytes = (uint64_t)mb << 20;
    cfg->grace_ms = (int)grace;
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ms_usage(stdout);
            return 0;
        }
    }
    ms_args a;
    modelserver_cfg cfg;
    log_level level = LOG_LEVEL_INFO;
    if (parse_argv(&a, argc, argv) < 0 || check_args(&cfg, &level, &a) < 0) {
        return 2;
    }
    log_init("modelserver", level);
    rpc_lib_init();
    modelserver_t ms;
    int rc = modelserver_init(&ms, &cfg);
    if (rc < 0) {
        log_error("event=start_failed err=%s detail=\"%s\"", err_name(rc), err_msg());
        modelserver_free(&ms);
        rpc_lib_shutdown(2000);
        return 1;
    }
    rc = modelserver_run(&ms);
    modelserver_free(&ms);
    rpc_lib_shutdown(2000);
    log_info("event=exit status=%d", rc < 0 ? 1 : 0);
    return rc < 0 ? 1 : 0;
}
