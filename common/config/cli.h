/* cli.h - the command line every twig process shares.
 *
 *     twig-learner [--config FILE] [--set KEY=VALUE ...] [--KEY VALUE ...] [--help]
 *                  [--print-config]
 *
 * Options come from the tables the process passes (the run's top level plus its own section),
 * applied in this order: defaults, the --config file, then --set and --KEY VALUE in the order
 * given. `--KEY VALUE` (or `--KEY=VALUE`) is short for `--set SECTION.KEY=VALUE` when the
 * process's section has KEY, else for the top-level KEY: `twig-modelserver --listen
 * 0.0.0.0:7101 --data-dir d`; `--set KEY=VALUE` without a section resolves KEY the same way.
 * `--set OTHER.KEY=VALUE` for another process's section (one of run_sections) is ignored, so
 * a launcher can hand the same overrides to every process; each checks its own.
 * Once every option is applied, each table's check runs (config_check: elites <= ensemble_size,
 * k_min <= k_max, ...), before --print-config prints: a config that --print-config accepts is
 * one the process accepts.
 *
 * One mistake, one message (err_msg, which the process prints once):
 *     unknown option '--nope' (did you mean '--note'?)     an option no table has
 *     --data-dir needs a value                              the last argument, or one followed
 *                                                           by another --option
 *     --segment-mb '0x': modelserver.segment_mb: ...        a bad value, naming the flag
 *     unexpected argument 'x' (see --help)                  a word that is not an option
 *     FILE:LINE: ... (config_load_file)                     the file's key, line and problem
 *
 * Exit status, the same for every twig program (CLI_EXIT_STATUS_HELP, printed by --help):
 * 0 a clean end (SIGTERM/SIGINT, or --help/--print-config served); 1 a valid configuration
 * that could not start or failed while running (a port in use, a host that does not resolve,
 * a data dir in use, a plugin that does not load, a peer that gave up; the log says why,
 * once); 2 a bad command line or configuration (whatever cli_parse refuses: options, files,
 * the tables' checks, an unknown env id), before anything is started. `twig run` adds 128 + N when ended by signal N.
 */
#ifndef TWIG_CLI_H
#define TWIG_CLI_H

#include <stdint.h>

#include "common/config/config.h"

typedef enum cli_result {
    CLI_RUN = 0,     /* options parsed: run */
    CLI_EXIT = 1,    /* --help or --print-config was served: exit 0 */
} cli_result;

#define CLI_EXIT_STATUS_HELP                                                                   \
    "exit status: 0 clean end (SIGTERM/SIGINT) or --help/--print-config; 1 could not start or " \
    "failed\nwhile running (the log says why); 2 bad command line or config, nothing started"

/* parse argv into the tables (tables[0..n_tables), section = the process's own, may be NULL),
 * then run their checks. usage is the first line of --help. returns CLI_RUN, CLI_EXIT, or a
 * negative code with err_msg() naming the flag, key or file (exit 2) */
int cli_parse(const config_table *tables, int n_tables, const char *section, int argc,
              char **argv, const char *usage);

/* rc with err_msg() prefixed by the --set that caused it: "--set KEY=VALUE: why" */
int cli_err_from_set(int rc, const char *assignment);

/* the value of a subcommand's integer flag (`twig status --timeout-ms 500`): v must be a
 * whole decimal number in [lo, hi]; else -EINVAL with err_msg() naming the flag, the value and
 * the range ("--timeout-ms 'abc' is not an integer in [1, 600000]"; "--timeout-ms needs a
 * value" when v is NULL) */
int cli_flag_u64(uint64_t *out, const char *flag, const char *v, uint64_t lo, uint64_t hi);

#endif
