/* twig_cmds.h - the subcommands of the `twig` launcher (deploy/launcher/twig.c holds the table) */
#ifndef TWIG_DEPLOY_TWIG_CMDS_H
#define TWIG_DEPLOY_TWIG_CMDS_H

#include <stdint.h>

/* each takes the arguments after its name (argv[0] is the subcommand) and returns the exit
 * status: 0 ok, 1 runtime failure, 2 bad usage */
int twig_cmd_env(int argc, char **argv);
int twig_cmd_run(int argc, char **argv);
int twig_cmd_eval(int argc, char **argv);
int twig_cmd_export(int argc, char **argv);
int twig_cmd_monitor(int argc, char **argv);
int twig_cmd_status(int argc, char **argv);
/* twig health: its own statuses (0 SERVING, 1 NOT_SERVING, 2 bad usage, 3 unreachable,
 * 4 unknown service; twig_health.c) */
int twig_cmd_health(int argc, char **argv);

/* an integer flag of subcommand cmd in [lo, hi] (cli_flag_u64); a bad one is reported on
 * stderr as "twig CMD: why" and returns -EINVAL */
int twig_flag_u64(const char *cmd, uint64_t *out, const char *flag, const char *v, uint64_t lo,
                  uint64_t hi);

#endif
