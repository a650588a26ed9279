/* run_report.c - see run_report.h */
#include "deploy/launcher/run_report.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/log.h"
#include "deploy/launcher/child.h"

/* the legend below the plot so it never hides a point. No shell is involved; the paths sit in
 * gnuplot's single-quoted strings, so a name with a single quote is not plotted */
bool report_plot(const char *dir, const char *env)
{
    if (strchr(dir, '\'') || strchr(env, '\'')) {
        log_warn("event=plot_skipped reason=\"a single quote in the run dir or env id\"");
        return false;
    }
    char png[PLAN_PATH_MAX + 32];
    snprintf(png, sizeof png, "%s/learning_curve.png", dir);
    unlink(png);   /* a picture from an earlier run in this dir is not this run's */
    char script[4 * PLAN_PATH_MAX];
    snprintf(script, sizeof script,
             "set terminal pngcairo size 900,540; set output '%s'; "
             "set datafile separator ','; set key autotitle columnhead; "
             "set key outside below center; "
             "set title '%s: evaluation return'; set xlabel 'real steps'; "
             "set ylabel 'return'; set grid; "
             "plot '%s/metrics.csv' using 1:3:4 with yerrorlines "
             "title 'eval return (mean, std)'",
             png, env, dir);
    char *argv[] = {"gnuplot", "-e", script, NULL};
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0) {
        log_warn("event=plot_failed detail=\"/dev/null: %s\"", strerror(errno));
        return false;
    }
    int status = child_run(argv, devnull, devnull, true);
    close(devnull);
    if (status != 0) {
        char how[64] = "fork failed";
        if (status > 0) {
            child_describe_status(how, sizeof how, status);
        }
        log_warn("event=plot_failed detail=\"gnuplot %s\"", how);
        return false;
    }
    struct stat st;
    return stat(png, &st) == 0 && st.st_size > 0;
}

void report_summary(FILE *f, const monitor_snapshot *s, const monitor_run *run, bool finished,
                    const char *dir, bool plotted, const report_restart *restarts, int n)
{
    double upd_rate = s->wall_s > 0 ? (double)s->updates / s->wall_s : 0;
    double syn_rate = s->wall_s > 0 ? (double)s->synthetic_samples / s->wall_s : 0;
    fprintf(f, "\ntwig: run %s in %.1f s\n", finished ? "finished" : "ended", s->wall_s);
    fprintf(f, "  env                 %s\n", run->known ? run->env : "?");
    fprintf(f, "  real steps          %llu / %llu\n", (unsigned long long)s->real_steps,
            (unsigned long long)run->budget);
    if (s->evals > 0) {
        /* "final" only for the evaluation at the budget: a run ended early has a last one */
        fprintf(f, "  %s eval return   %.2f +- %.2f (at %llu real steps, policy v%llu)\n",
                run->known && s->eval_real_steps >= run->budget ? "final" : "last ",
                (double)s->eval_return_mean, (double)s->eval_return_std,
                (unsigned long long)s->eval_real_steps,
                (unsigned long long)s->eval_policy_version);
    }
    fprintf(f, "  SAC updates         %llu (%.1f/s, achieved UTD %.2f)\n",
            (unsigned long long)s->updates, upd_rate, (double)s->achieved_utd);
    fprintf(f, "  synthetic samples   %llu (%.0f/s)\n", (unsigned long long)s->synthetic_samples,
            syn_rate);
    fprintf(f, "  versions            policy v%llu, model v%llu\n",
            (unsigned long long)s->policy_version, (unsigned long long)s->model_version);
    for (int i = 0; i < n; i++) {
        fprintf(f, "  restarts            %s: %d\n", restarts[i].name, restarts[i].restarts);
    }
    /* only what is there: no gnuplot, or a failed one, leaves no picture */
    fprintf(f, "  run directory       %s (metrics.csv, %slogs, events)\n", dir,
            plotted ? "learning_curve.png, " : "");
}
