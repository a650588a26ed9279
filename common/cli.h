/* cli.h - the command line every twig process shares.
 *
 *     twig-learner [--config FILE] [--set KEY=VALUE ...] [--KEY VALUE ...] [--help]
 *                  [--print-config]
 *
 * Options come from the tables the process passes (the run's top level plus its own section),
 * applied in this order: defaults, the --config file, then --set and --KEY VALUE in the order
 * given. `--KEY VALUE` is short for `--set SECTION.KEY=VALUE` when the process's section has
 * KEY, else for the top-level KEY: `twig-modelserver --listen 0.0.0.0:7101 --data-dir d`.
 * `--set OTHER.KEY=VALUE` for another process's section (one of run_sections) is ignored, so
 * a launcher can hand the same overrides to every process; each checks its own.
 * An unknown option or a bad value is an error naming it.
 */
#ifndef TWIG_CLI_H
#define TWIG_CLI_H

#include "common/config.h"

typedef enum cli_result {
    CLI_RUN = 0,     /* options parsed: run */
    CLI_EXIT = 1,    /* --help or --print-config was served: exit 0 */
} cli_result;

/* parse argv into the tables (tables[0..n_tables), section = the process's own, may be NULL).
 * usage is the first line of --help. returns CLI_RUN, CLI_EXIT, or a negative code with
 * err_msg() naming the flag, key or file */
int cli_parse(const config_table *tables, int n_tables, const char *section, int argc,
              char **argv, const char *usage);

#endif
