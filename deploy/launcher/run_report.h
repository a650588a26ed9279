/* run_report.h - what a watched run leaves at its end: learning_curve.png drawn from
 * metrics.csv, and the summary printed on the terminal (twig run, twig monitor) */
#ifndef TWIG_DEPLOY_RUN_REPORT_H
#define TWIG_DEPLOY_RUN_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "deploy/launcher/monitor.h"

/* gnuplot draws DIR/metrics.csv into DIR/learning_curve.png (an older picture is removed
 * first); true when the picture was written */
bool report_plot(const char *dir, const char *env);

typedef struct report_restart {
    const char *name;
    int restarts;
} report_restart;

/* the summary of the run: counts, rates over the run's wall time, the last evaluation,
 * restarts[0..n) (processes restarted, twig run only), where the outputs are */
void report_summary(FILE *f, const monitor_snapshot *s, const monitor_run *run, bool finished,
                    const char *dir, bool plotted, const report_restart *restarts, int n);

#endif
