/* twig.c - the `twig` launcher: one subcommand table, dispatch on argv[1] */
#include <stdio.h>
#include <string.h>

#include "common/base/err.h"
#include "common/config/cli.h"
#include "deploy/launcher/twig_cmds.h"

typedef struct twig_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} twig_cmd;

static const twig_cmd twig_cmds[] = {
    {"run", twig_cmd_run, "run a whole training on this machine from a config file"},
    {"env", twig_cmd_env, "step one episode of an environment and print it as CSV"},
    {"eval", twig_cmd_eval, "run episodes of a trained policy, print returns, mean and std"},
    {"export", twig_cmd_export, "write a run's trained policy as a policy file (.twigp)"},
    {"monitor", twig_cmd_monitor, "watch a running deployment by address: metrics, events, plot"},
    {"status", twig_cmd_status, "one screen about running twig processes, by address"},
    {"health", twig_cmd_health, "ask a grpc.health.v1 service; the answer is the exit status"},
};
#define TWIG_N_CMDS ((int)(sizeof(twig_cmds) / sizeof(twig_cmds[0])))

static void twig_usage(FILE *f)
{
    fprintf(f, "usage: twig COMMAND [ARGS...]   (twig COMMAND --help for its options)\n\n");
    for (int i = 0; i < TWIG_N_CMDS; i++) {
        fprintf(f, "  %-8s %s\n", twig_cmds[i].name, twig_cmds[i].help);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        twig_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        twig_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("twig %s\n", TWIG_VERSION);   /* project() version, git describe at build */
        return 0;
    }
    for (int i = 0; i < TWIG_N_CMDS; i++) {
        if (strcmp(argv[1], twig_cmds[i].name) == 0) {
            return twig_cmds[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "twig: unknown command '%s'\n", argv[1]);
    twig_usage(stderr);
    return 2;
}

int twig_flag_u64(const char *cmd, uint64_t *out, const char *flag, const char *v, uint64_t lo,
                  uint64_t hi)
{
    int rc = cli_flag_u64(out, flag, v, lo, hi);
    if (rc < 0) {
        fprintf(stderr, "twig %s: %s\n", cmd, err_msg());
    }
    return rc;
}
