/* `twig run --resume RUN_DIR` end to end on Pendulum-v1: a run stopped (SIGTERM to the
 * launcher, or SIGKILL of its whole process tree) and resumed ends with the counts of an
 * uninterrupted run, and what metrics.csv held before the stop is still there, byte for byte;
 * a plain re-run into a run directory and a changed config key are refused. */
#include "tests/e2e/e2e_run.h"

#include <dirent.h>
#include <sys/prctl.h>

#include "modelserver/reallog.h"

#define BUDGET 3000
#define INIT_STEPS 300
#define UTD 2
#define EVAL_EVERY 300

/* small: random steps, model fits, rollouts, SAC with checkpoints; a few seconds in all */
static const char resume_run[] =
    "env: Pendulum-v1\nseed: 3\nreal_steps: 3000\ninit_steps: 300\nutd: 2\n"
    "model_train_freq: 300\nrollouts_per_step: 8\nepoch_length: 300\n"
    "hidden: 32\neval_every: 300\neval_episodes: 2\nn_actors: 1\nn_rollout: 1\n"
    "learner:\n  batch_size: 64\n  checkpoint_every: 200\n  policy_publish_every: 50\n"
    "modelserver:\n  model_hidden: 32\n  train_max_epochs: 20\n"
    "actor:\n  push_every: 25\n";

static char *slurp_path(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return strdup("");
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static char *run_file(const e2e_run *r, const char *name)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", r->run_dir, name);
    return slurp_path(path);
}

/* `twig run --resume RUN [--set s ...]`, output appended to dir/twig-resume.out */
static pid_t start_resume(e2e_run *r, const char *const *sets, int n_sets)
{
    char out[320];
    snprintf(out, sizeof out, "%s/twig-resume.out", r->dir);
    const char *argv[16] = {TWIG_BIN_DIR "/deploy/twig", "run", "--resume", r->run_dir};
    int argc = 4;
    for (int i = 0; i < n_sets; i++) {
        argv[argc++] = "--set";
        argv[argc++] = sets[i];
    }
    argv[argc] = NULL;
    r->pid = procfix_spawn(argv, out);
    return r->pid;
}

/* the log holds exactly `want` transitions */
static void expect_log_end(const e2e_run *r, uint64_t want)
{
    char dir[360];
    snprintf(dir, sizeof dir, "%s/modelserver", r->run_dir);
    reallog_t lg;
    reallog_opts o = reallog_opts_default(dir);
    cr_assert_eq(reallog_open(&lg, &o), 0, "%s", err_msg());
    cr_expect_eq(reallog_end(&lg), want, "the log holds %llu transitions, the budget is %llu",
                 (unsigned long long)reallog_end(&lg), (unsigned long long)want);
    reallog_close(&lg);
}

/* the learner's newest checkpoint (named by its update count; its final one at the stop) */
static uint64_t newest_checkpoint(const e2e_run *r)
{
    char dir[360];
    snprintf(dir, sizeof dir, "%s/learner", r->run_dir);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    uint64_t best = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "ckpt-", 5) == 0 && !strchr(e->d_name, '.')) {
            uint64_t id = strtoull(e->d_name + 5, NULL, 10);
            best = id > best ? id : best;
        }
    }
    closedir(d);
    return best;
}

/* metrics.csv: rows' real steps strictly increase (none twice), the last is at `budget`,
 * and it starts with `before` unchanged */
static void expect_metrics(const e2e_run *r, const char *before, uint64_t budget)
{
    char *csv = run_file(r, "metrics.csv");
    cr_expect_eq(strncmp(csv, before, strlen(before)), 0,
                 "rows written before the stop changed:\nbefore:\n%s\nafter:\n%s", before, csv);
    uint64_t prev = 0, last = 0;
    int rows = 0;
    bool increasing = true;
    for (char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        uint64_t step = strtoull(line + 1, NULL, 10);
        increasing = increasing && (rows == 0 || step > prev);
        prev = last = step;
        rows++;
    }
    cr_expect(increasing, "a real step twice or out of order:\n%s", csv);
    cr_expect_eq(last, budget, "the last row is at %llu real steps:\n%s",
                 (unsigned long long)last, csv);
    cr_expect_eq(rows, (int)(budget / EVAL_EVERY), "a row per evaluation:\n%s", csv);
    free(csv);
}

/* the end state of an uninterrupted run: exactly the budget in the log, the updates of strict
 * pacing, the final evaluation */
static void expect_finished(e2e_run *r, const char *before, uint64_t budget)
{
    int code = e2e_wait_exit(r, 120000);
    cr_expect_eq(code, 0, "twig run --resume exited %d (see %s)", code, r->dir);
    expect_log_end(r, budget);
    cr_expect_eq(newest_checkpoint(r), (budget - INIT_STEPS) * UTD, "updates %llu",
                 (unsigned long long)newest_checkpoint(r));
    expect_metrics(r, before, budget);
}

Test(resume, sigterm_at_half_then_resume_ends_as_an_uninterrupted_run, .timeout = 120)
{
    e2e_run r;
    e2e_init(&r, resume_run);
    e2e_start(&r);
    e2e_wait_real_steps(&r, BUDGET / 2, 60000);
    cr_assert_eq(kill(r.pid, SIGTERM), 0);
    cr_expect_eq(e2e_wait_exit(&r, 60000), 128 + SIGTERM);
    char out[360];
    snprintf(out, sizeof out, "%s/twig-run.out", r.dir);
    char *msg = slurp_path(out);
    char hint[400];
    snprintf(hint, sizeof hint, "twig run --resume %s", r.run_dir);
    cr_expect(strstr(msg, hint) != NULL, "the stop message says how to resume: %s", msg);
    free(msg);
    char *before = run_file(&r, "metrics.csv");
    cr_assert(strchr(before, '\n') != NULL, "no metrics.csv before the resume");
    start_resume(&r, NULL, 0);
    expect_finished(&r, before, BUDGET);
    /* rates of the resumed launch are over its own intervals: no spike from counting the
     * earlier launches' updates in one tick (a few thousand per second here, not 1e5) */
    snprintf(out, sizeof out, "%s/twig-resume.out", r.dir);
    msg = slurp_path(out);
    int lines = 0;
    for (const char *p = strstr(msg, "upd/s "); p; p = strstr(p + 1, "upd/s ")) {
        double rate = strtod(p + 6, NULL);
        cr_expect_lt(rate, 1e5, "a rate spike after the resume: %s", msg);
        lines++;
    }
    cr_expect_gt(lines, 0, "no progress line: %s", msg);
    free(msg);
    /* wall time continues: the first row after the stop is later than the last before it */
    char *csv = run_file(&r, "metrics.csv");
    const char *last_before = before + strlen(before) - 1;
    while (last_before > before && last_before[-1] != '\n') {
        last_before--;
    }
    const char *first_after = csv + strlen(before);
    double wall_before = strtod(strchr(last_before, ',') + 1, NULL);
    double wall_after = strtod(strchr(first_after, ',') + 1, NULL);
    cr_expect_gt(wall_after, wall_before, "wall_s %g after %g:\n%s", wall_after, wall_before,
                 csv);
    free(csv);
    free(before);
}

Test(resume, sigkill_of_the_whole_process_tree_then_resume_reaches_the_budget, .timeout = 120)
{
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);   /* the killed children are ours */
    e2e_run r;
    e2e_init(&r, resume_run);
    e2e_start(&r);
    e2e_wait_real_steps(&r, BUDGET / 2, 60000);
    const char *names[] = {"modelserver", "learner", "rollout-0", "actor-0"};
    enum { N = sizeof names / sizeof *names };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = e2e_proc(&r, names[i], NULL);
        cr_assert_gt(pids[i], 0, "%s is not running", names[i]);
    }
    /* stopped first, so it restarts nothing and its children get no SIGTERM from its death */
    cr_assert_eq(kill(r.pid, SIGSTOP), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(kill(pids[i], SIGKILL), 0);
    }
    cr_assert_eq(kill(r.pid, SIGKILL), 0);
    cr_expect_eq(e2e_wait_exit(&r, 10000), 256 + SIGKILL);
    for (int i = 0; i < N; i++) {
        int st = 0;
        cr_assert(procfix_poll_exit(&st, pids[i], 10000), "%s did not die", names[i]);
        cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s: status %d", names[i], st);
    }
    char *before = run_file(&r, "metrics.csv");
    start_resume(&r, NULL, 0);
    expect_finished(&r, before, BUDGET);
    free(before);
}

Test(resume, a_plain_run_into_a_run_directory_is_refused, .timeout = 60)
{
    e2e_run r;
    e2e_init(&r, resume_run);
    cr_assert_eq(fs_mkdir_p(r.run_dir), 0);
    /* what a run leaves: its config and metrics.csv */
    char path[400];
    snprintf(path, sizeof path, "%s/config.yaml", r.run_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(resume_run, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/metrics.csv", r.run_dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("real_steps,wall_s\n300,1.000\n", f);
    fclose(f);
    e2e_start(&r);
    cr_expect_eq(e2e_wait_exit(&r, 30000), 2);
    char out[360];
    snprintf(out, sizeof out, "%s/twig-run.out", r.dir);
    char *msg = slurp_path(out);
    cr_expect(strstr(msg, "already holds a run") && strstr(msg, "--resume"), "%s", msg);
    free(msg);
    cr_expect_eq(access(strcat(strcpy(path, r.run_dir), "/procs.tsv"), F_OK), -1,
                 "a process was started");
}

Test(resume, a_changed_unsafe_key_is_refused_and_a_larger_budget_is_accepted, .timeout = 120)
{
    e2e_run r;
    e2e_init(&r, resume_run);
    e2e_start(&r);
    e2e_wait_real_steps(&r, BUDGET / 2, 60000);
    cr_assert_eq(kill(r.pid, SIGTERM), 0);
    cr_expect_eq(e2e_wait_exit(&r, 60000), 128 + SIGTERM);
    char *before = run_file(&r, "metrics.csv");
    const char *seed[] = {"seed=4"};
    start_resume(&r, seed, 1);
    cr_expect_eq(e2e_wait_exit(&r, 30000), 2, "a changed seed is refused");
    char out[360];
    snprintf(out, sizeof out, "%s/twig-resume.out", r.dir);
    char *msg = slurp_path(out);
    cr_expect(strstr(msg, "seed was 3 in this run and would be 4") != NULL, "%s", msg);
    free(msg);
    char *now = run_file(&r, "metrics.csv");
    cr_expect_str_eq(now, before, "a refused resume touched metrics.csv");
    free(now);
    const char *batch[] = {"learner.batch_size=32"};
    start_resume(&r, batch, 1);
    cr_expect_eq(e2e_wait_exit(&r, 30000), 2, "a changed learner.batch_size is refused");
    /* the budget grows, never shrinks below what the log holds: the model server refuses
     * (exit 2, not restarted) and nothing is appended or rewritten */
    const char *shorter[] = {"real_steps=1000"};
    start_resume(&r, shorter, 1);
    cr_expect_eq(e2e_wait_exit(&r, 60000), 2, "a budget below the log's steps is refused");
    msg = slurp_path(out);
    cr_expect(strstr(msg, "more than real_steps 1000") && strstr(msg, "can grow, not shrink"),
              "%s", msg);
    free(msg);
    now = run_file(&r, "metrics.csv");
    cr_expect_str_eq(now, before, "a refused resume touched metrics.csv");
    free(now);
    const char *longer[] = {"real_steps=3600"};
    start_resume(&r, longer, 1);
    expect_finished(&r, before, 3600);
    free(before);
}
