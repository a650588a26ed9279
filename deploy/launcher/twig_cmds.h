/* twig_cmds.h - the subcommands of the `twig` launcher (deploy/launcher/twig.c holds the table) */
#ifndef TWIG_DEPLOY_TWIG_CMDS_H
#define TWIG_DEPLOY_TWIG_CMDS_H

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

#endif
