/* main.c - twig-modelserver: command line, logging, run, exit status.
 *
 *   twig-modelserver --listen HOST:PORT --data-dir DIR [--env-id ID] [--fsync batch|group|none]
 *                    [--segment-mb N] [--port-file FILE] [--grace-ms N] [--log-level L]
 *                    [--config RUN.yaml] [--set KEY=VALUE ...]
 *
 * --config and --set go through common/cli: the run's top-level options (run_config.h) and the
 * model options of the `modelserver` section (modelserver/trainer.h); the section may also
 * hold the flags above by their names (data_dir: ...), and flags given on the command line
 * win over the file.
 *
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the server could not start
 * or run, 2 on a bad command line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
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

/* the flags above as keys of the run file's modelserver section */
typedef struct ms_file {
    char listen[RUN_ADDR_MAX + 1];
    char data_dir[1024];
    char env_id[MSG_MAX_ID_LEN + 1];
    char fsync[16];
    char segment_mb[16];
    char port_file[1024];
    char grace_ms[16];
    char log_level[16];
} ms_file;

#define F(field, n, help) \
    {#field, CFG_STRING, offsetof(ms_file, field), "", 0, n, help " (--" #field " flag)", NULL}
static const config_opt ms_file_opts[] = {
    F(listen, RUN_ADDR_MAX, "HOST:PORT"),      F(data_dir, 1023, "log directory"),
    F(env_id, MSG_MAX_ID_LEN, "env id"),       F(fsync, 15, "batch, group or none"),
    F(segment_mb, 15, "segment MiB"),          F(port_file, 1023, "port file"),
    F(grace_ms, 15, "shutdown grace"),         F(log_level, 15, "log level"),
};
#undef F

#define MS_PRINTED (-1000)   /* ms_parse_config served --print-config */

/* take --config/--set out of argv into the run, model and file tables (common/cli), then put
 * the file's server flags in front of the remaining flags, which thus override them.
 * *out (owned) is the argv for parse_argv; returns its count, or -EINVAL */
static int ms_parse_config(run_cfg *run, trainer_cfg *tc, ms_file *file, char ***out, int argc,
                           char **argv)
{
    _Static_assert(sizeof ms_file_opts / sizeof *ms_file_opts == MS_N_OPTS, "one key a flag");
    char **cli = xcalloc((size_t)argc + 1, sizeof *cli);
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_cli = 0, n_rest = 0;
    cli[n_cli++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "--set")) && i + 1 < argc) {
            cli[n_cli++] = argv[i];
            cli[n_cli++] = argv[++i];
        } else if (!strcmp(argv[i], "--print-config")) {
            cli[n_cli++] = argv[i];
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    config_table t[3] = {{NULL, run_opts, run_n_opts, run},
                         {TRAINER_SECTION, trainer_opts, trainer_n_opts, tc},
                         {TRAINER_SECTION, ms_file_opts, sizeof ms_file_opts / sizeof *ms_file_opts,
                          file}};
    int rc = cli_parse(t, 3, TRAINER_SECTION, n_cli, cli, "twig-modelserver");
    free(cli);
    if (rc == CLI_EXIT) {   /* --print-config: the effective config went to stdout */
        free(rest);
        return MS_PRINTED;
    }
    if (rc == 0) {
        rc = run_cfg_check(run);
    }
    if (rc < 0) {
        free(rest);
        fprintf(stderr, "twig-modelserver: %s\n(see twig-modelserver --help)\n", err_msg());
        return -EINVAL;
    }
    char **args = xcalloc(2 * MS_N_OPTS + (size_t)n_rest + 2, sizeof *args);
    int n = 0;
    args[n++] = argv[0];
    for (size_t k = 0; k < sizeof ms_file_opts / sizeof *ms_file_opts; k++) {
        char *v = (char *)file + ms_file_opts[k].offset;   /* borrowed by *out */
        if (v[0]) {
            args[n++] = (char *)ms_opts[k].name;
            args[n++] = v;
        }
    }
    for (int i = 0; i < n_rest; i++) {
        args[n++] = rest[i];
    }
    free(rest);
    *out = args;
    return n;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ms_usage(stdout);
            printf("\nrun and model options (--config RUN.yaml, --set [modelserver.]KEY=VALUE):\n");
            config_table t[2] = {{NULL, run_opts, run_n_opts, NULL},
                                 {TRAINER_SECTION, trainer_opts, trainer_n_opts, NULL}};
            config_write_help(stdout, t, 2);
            return 0;
        }
    }
    run_cfg run;
    trainer_cfg tc;
    ms_file file;
    char **args = NULL;
    int n_args = ms_parse_config(&run, &tc, &file, &args, argc, argv);
    if (n_args == MS_PRINTED) {
        return 0;
    }
    if (n_args < 0) {
        return 2;
    }
    ms_args a;
    modelserver_cfg cfg;
    log_level level = LOG_LEVEL_INFO;
    int bad = parse_argv(&a, n_args, args) < 0 || check_args(&cfg, &level, &a) < 0;
    free(args);
    if (bad) {
        return 2;
    }
    cfg.run = &run;
    cfg.train = &tc;
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
