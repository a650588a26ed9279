/* logtool.h - `twig-modelserver log check|repair`: the real-transition log's offline tool.
 *
 *   twig-modelserver log check DIR [--json]
 *   twig-modelserver log repair DIR --backup BACKUP_DIR [--json]
 *
 * check locks DIR like the model server does (a running server's dir is refused), writes
 * nothing, verifies every segment with the log's own scan (reallog_inspect_*, reallog.h)
 * and reports the first damage and what cutting it would drop. repair copies the whole dir
 * to BACKUP_DIR (which must not exist; every file fsync'ed) and cuts the log at the last
 * good record before the damage. docs/reliability.md, "Checking and repairing a real log".
 *
 * Exit status: 0 clean (or repaired), 1 damaged (or the repair failed), 2 bad usage, not a
 * log dir, or in use.
 */
#ifndef TWIG_MODELSERVER_LOGTOOL_H
#define TWIG_MODELSERVER_LOGTOOL_H

#include <stdio.h>

#define LOGTOOL_EXIT_CLEAN 0
#define LOGTOOL_EXIT_DAMAGED 1
#define LOGTOOL_EXIT_USAGE 2

/* argv[0] is "log"; prints the report on out, refusals on err; returns the exit status */
int logtool_main(int argc, char **argv, FILE *out, FILE *err);

#endif
