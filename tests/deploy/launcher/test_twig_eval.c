/* tests of `twig export`, `twig eval` and `twig env --policy FILE` (deploy/launcher/
 * twig_export.c, twig_eval.c, policy_source.c, common/nn/ckpt_policy.c): checkpoints laid out
 * as the learner writes them (RUN/learner/ckpt-<updates>/sac.bin + state.bin), the built
 * binary run on them, its output read back and checked against the policy acting here */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/env/env.h"
#include "common/nn/policy_file.h"
#include "common/nn/sac.h"

#define TWIG TWIG_BIN_DIR "/deploy/twig"
#define HIDDEN 32

static char tmpdir[64];
static char out_text[1 << 20], err_text[1 << 16];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/twig-test-eval-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(twig_eval, .init = setup, .fini = teardown, .timeout = 120);

static void slurp(char *buf, size_t cap, const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* `twig ARGS` with stdout and stderr into out_text / err_text; returns the exit status */
static int run_twig(const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s > %s/out.txt 2> %s/err.txt", TWIG, args, tmpdir, tmpdir);
    int st = system(cmd);
    cr_assert(WIFEXITED(st), "%s did not exit normally", cmd);
    char p[128];
    snprintf(p, sizeof p, "%s/out.txt", tmpdir);
    slurp(out_text, sizeof out_text, p);
    snprintf(p, sizeof p, "%s/err.txt", tmpdir);
    slurp(err_text, sizeof err_text, p);
    return WEXITSTATUS(st);
}

/* a checkpoint ckpt-<updates> of an env_id policy (n_obs, n_act) under run/learner as the
 * learner lays it out: sac.bin from sac_save, state.bin's header (what twig reads of it) with
 * the crc32c over the file */
static void make_env_ckpt(sac_t *s, const char *run, uint64_t updates, uint64_t policy_version,
                          uint64_t seed, const char *env_id, int n_obs, int n_act)
{
    sac_cfg cfg = sac_default_cfg(n_obs, n_act);
    cfg.hidden = HIDDEN;
    cr_assert_eq(sac_init(s, &cfg, seed), 0, "%s", err_msg());
    s->n_updates = (int64_t)updates;
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/learner", run);
    mkdir(run, 0755);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/learner/ckpt-%020" PRIu64, run, updates);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/sac.bin", dir);
    cr_assert_eq(sac_save(s, p), 0, "%s", err_msg());
    uint8_t st[256];
    byte_writer w = {.buf = st};
    bw_bytes(&w, "TWIGLRN", 8);
    bw_u32(&w, 2);
    bw_str(&w, env_id);
    bw_u32(&w, (uint32_t)n_obs);
    bw_u32(&w, (uint32_t)n_act);
    bw_u32(&w, HIDDEN);
    bw_u64(&w, updates);
    bw_u64(&w, policy_version);
    for (int i = 0; i < 6; i++) {
        bw_u64(&w, 0);   /* the rest of the counters, as far as twig export cares */
    }
    bw_u32(&w, crc32c(st, w.pos));
    snprintf(p, sizeof p, "%s/state.bin", dir);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(st, 1, w.pos, f), w.pos);
    fclose(f);
}

/* a Pendulum-v1 checkpoint */
static void make_ckpt(sac_t *s, const char *run, uint64_t updates, uint64_t policy_version,
                      uint64_t seed)
{
    make_env_ckpt(s, run, updates, policy_version, seed, "Pendulum-v1", 3, 1);
}

/* three checkpoints: pv 3 at 100 updates, pv 7 at 200, and a damaged newest one at 300 */
static void make_run(sac_t s[3], char *run, size_t n)
{
    snprintf(run, n, "%s/run", tmpdir);
    make_ckpt(&s[0], run, 100, 3, 11);
    make_ckpt(&s[1], run, 200, 7, 12);
    make_ckpt(&s[2], run, 300, 9, 13);
    char p[600];
    snprintf(p, sizeof p, "%s/learner/ckpt-%020d/sac.bin", run, 300);
    cr_assert_eq(truncate(p, 100), 0);
}

static void expect_actor_is(const policy_t *p, const sac_t *s)
{
    const mlp_params *a = &s->actor.p;
    for (int l = 0; l < 3; l++) {
        size_t nw = (size_t)a->sizes[l] * a->sizes[l + 1];
        cr_expect_eq(memcmp(p->actor.w[l], a->w[l], nw * 4), 0, "w%d differs", l);
        cr_expect_eq(memcmp(p->actor.b[l], a->b[l], (size_t)a->sizes[l + 1] * 4), 0);
    }
}

Test(twig_eval, export_takes_the_newest_valid_checkpoint_or_the_one_at_or_below_version)
{
    sac_t s[3] = {0};
    char run[256], file[300];
    make_run(s, run, sizeof run);
    snprintf(file, sizeof file, "%s/p.twigp", tmpdir);

    cr_assert_eq(run_twig("export %s -o %s", run, file), 0, "%s", err_text);
    cr_expect_not_null(strstr(err_text, "skipping damaged checkpoint"), "%s", err_text);
    policy_t p = {0};
    policy_file_meta m;
    cr_assert_eq(policy_file_read(&p, &m, file, 1), 0, "%s", err_msg());
    cr_expect_str_eq(m.env_id, "Pendulum-v1");
    cr_expect_eq(m.updates, 200);
    cr_expect_eq(m.policy_version, 7);
    cr_expect_eq(p.hidden, HIDDEN);
    cr_expect_eq(p.act_low[0], -2.0f);
    cr_expect_eq(p.act_high[0], 2.0f);
    expect_actor_is(&p, &s[1]);
    policy_free(&p);

    /* --version: policy_version 7 and 3 exist; 6 selects 3, 7 selects 7 */
    cr_assert_eq(run_twig("export %s --version 6 -o %s", run, file), 0, "%s", err_text);
    cr_assert_eq(policy_file_read(&p, &m, file, 1), 0, "%s", err_msg());
    cr_expect_eq(m.policy_version, 3);
    cr_expect_eq(m.updates, 100);
    expect_actor_is(&p, &s[0]);
    policy_free(&p);
    cr_assert_eq(run_twig("export %s/learner --version 7 -o %s", run, file), 0, "%s", err_text);
    cr_assert_eq(policy_file_read(&p, &m, file, 1), 0, "%s", err_msg());
    cr_expect_eq(m.policy_version, 7);
    policy_free(&p);
    /* one checkpoint directory itself */
    cr_assert_eq(run_twig("export %s/learner/ckpt-%020d -o %s", run, 100, file), 0, "%s",
                 err_text);
    cr_assert_eq(policy_file_read(&p, &m, file, 1), 0, "%s", err_msg());
    cr_expect_eq(m.updates, 100);
    policy_free(&p);

    cr_expect_eq(run_twig("export %s --version 2 -o %s", run, file), 1);
    cr_expect_not_null(strstr(err_text, "no usable checkpoint"), "%s", err_text);
    cr_expect_eq(run_twig("export %s/nothing-here -o %s", tmpdir, file), 1);
    cr_expect_eq(run_twig("export %s", run), 2);
    for (int i = 0; i < 3; i++) {
        sac_free(&s[i]);
    }
}

/* the returns of episodes seed0.. with p acting deterministically, computed here */
static double episode_return(policy_t *p, uint64_t seed, long *steps)
{
    env_t *e = NULL;
    cr_assert_eq(env_make(&e, "Pendulum-v1"), 0);
    float obs[3], act[1];
    env_reset(e, seed, obs);
    env_step_result r = {.next_obs = obs};
    double ret = 0.0;
    *steps = 0;
    for (long t = 1; t <= e->spec.max_episode_steps; t++) {
        policy_act(p, NULL, act, obs, 1, true);
        cr_assert_eq(env_step(e, act, &r), 0);
        ret += r.reward;
        *steps = t;
        if (r.terminated || r.truncated) {
            break;
        }
    }
    env_free(e);
    return ret;
}

Test(twig_eval, eval_prints_each_episode_return_and_the_mean_and_std)
{
    sac_t s[3] = {0};
    char run[256], csv[300], file[300];
    make_run(s, run, sizeof run);
    snprintf(csv, sizeof csv, "%s/ep.csv", tmpdir);
    snprintf(file, sizeof file, "%s/p.twigp", tmpdir);
    cr_assert_eq(run_twig("export %s -o %s", run, file), 0, "%s", err_text);
    policy_t p = {0};
    policy_file_meta m;
    cr_assert_eq(policy_file_read(&p, &m, file, 1), 0, "%s", err_msg());

    cr_assert_eq(run_twig("eval %s --episodes 3 --seed 4 --csv %s", run, csv), 0, "%s",
                 err_text);
    static char run_out[sizeof out_text];
    memcpy(run_out, out_text, sizeof out_text);
    double ret[3], sum = 0.0, sq = 0.0;
    char *line = strstr(run_out, "episode 0 ");
    cr_assert_not_null(line, "%s", run_out);
    for (int i = 0; i < 3; i++) {
        unsigned ep, seed;
        long steps, want_steps;
        cr_assert_eq(sscanf(line, "episode %u seed %u return %lf steps %ld", &ep, &seed, &ret[i],
                            &steps),
                     4, "%s", line);
        cr_expect_eq(ep, (unsigned)i);
        cr_expect_eq(seed, 4u + (unsigned)i);
        double want = episode_return(&p, 4 + (uint64_t)i, &want_steps);
        cr_expect(fabs(ret[i] - want) <= 1e-5 * fabs(want) + 1e-3, "episode %d: %g, want %g", i,
                  ret[i], want);
        cr_expect_eq(steps, want_steps);
        sum += ret[i];
        sq += ret[i] * ret[i];
        line = strchr(line, '\n') + 1;
    }
    double mean, std;
    unsigned n;
    cr_assert_eq(sscanf(line, "return mean %lf std %lf over %u episodes", &mean, &std, &n), 3,
                 "%s", line);
    cr_expect_eq(n, 3u);
    double want_mean = sum / 3, want_std = sqrt(fmax(sq / 3 - want_mean * want_mean, 0.0));
    cr_expect(fabs(mean - want_mean) <= 1e-4 * fabs(want_mean) + 1e-3, "%g vs %g", mean,
              want_mean);
    cr_expect(fabs(std - want_std) <= 1e-3 * want_std + 1e-2, "%g vs %g", std, want_std);
    cr_expect_gt(std, 0.0);

    char text[4096];
    slurp(text, sizeof text, csv);
    cr_expect_eq(strncmp(text, "episode,seed,return,steps,terminated\n0,4,", 41), 0, "%s", text);
    int lines = 0;
    for (const char *c = text; *c; c++) {
        lines += *c == '\n';
    }
    cr_expect_eq(lines, 4);

    /* the exported file gives the same episodes */
    cr_assert_eq(run_twig("eval %s --episodes 3 --seed 4", file), 0, "%s", err_text);
    cr_expect_str_eq(strstr(out_text, "episode 0 "), strstr(run_out, "episode 0 "));
    /* --version picks the older checkpoint */
    cr_assert_eq(run_twig("eval %s --episodes 1 --version 3", run), 0, "%s", err_text);
    cr_expect_not_null(strstr(out_text, "policy_version=3 updates=100"), "%s", out_text);
    cr_expect_eq(run_twig("eval %s --episodes 0", run), 2);
    policy_free(&p);
    for (int i = 0; i < 3; i++) {
        sac_free(&s[i]);
    }
}

Test(twig_eval, env_policy_file_acts_with_the_mean_action)
{
    sac_t s = {0};
    char run[256], file[300];
    snprintf(run, sizeof run, "%s/run", tmpdir);
    make_ckpt(&s, run, 50, 2, 21);
    snprintf(file, sizeof file, "%s/p.twigp", tmpdir);
    cr_assert_eq(run_twig("export %s -o %s", run, file), 0, "%s", err_text);
    policy_t p = {0};
    policy_file_meta m;
    cr_assert_eq(policy_file_read(&p, &m, file, 1), 0, "%s", err_msg());

    cr_assert_eq(run_twig("env Pendulum-v1 --seed 3 --steps 5 --policy %s", file), 0, "%s",
                 err_text);
    /* step,obs_0,obs_1,obs_2,act_0,reward,... : act_0 of row t is the policy at row t-1 */
    char *line = strchr(out_text, '\n') + 1;
    float obs[3], act;
    int rows = 0;
    for (int t = 0; t <= 5; t++) {
        int step;
        float o[3], a = 0.0f;
        int got = sscanf(line, "%d,%f,%f,%f,%f", &step, &o[0], &o[1], &o[2], &a);
        cr_assert_geq(got, 4, "%s", line);
        cr_expect_eq(step, t);
        if (t > 0) {
            policy_act(&p, NULL, &act, obs, 1, true);
            cr_expect_eq(a, act, "step %d: act %.9g, policy %.9g", t, a, act);
        }
        memcpy(obs, o, sizeof obs);
        rows++;
        line = strchr(line, '\n') + 1;
    }
    cr_expect_eq(rows, 6);
    policy_free(&p);
    sac_free(&s);
}

Test(twig_eval, a_bad_policy_file_is_refused_naming_the_problem)
{
    sac_t s = {0};
    char run[256], file[300], bad[300], cut[300];
    snprintf(run, sizeof run, "%s/run", tmpdir);
    make_ckpt(&s, run, 50, 2, 21);
    snprintf(file, sizeof file, "%s/p.twigp", tmpdir);
    cr_assert_eq(run_twig("export %s -o %s", run, file), 0, "%s", err_text);
    snprintf(bad, sizeof bad, "%s/garbage.twigp", tmpdir);
    FILE *f = fopen(bad, "wb");
    fputs("this is not a policy file at all", f);
    fclose(f);
    cr_expect_eq(run_twig("env Pendulum-v1 --policy %s", bad), 2);
    cr_expect_not_null(strstr(err_text, "magic"), "%s", err_text);
    cr_expect_eq(run_twig("eval %s", bad), 1);
    cr_expect_not_null(strstr(err_text, "magic"), "%s", err_text);

    snprintf(cut, sizeof cut, "%s/cut.twigp", tmpdir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "head -c 200 %s > %s", file, cut);
    cr_assert_eq(system(cmd), 0);
    cr_expect_eq(run_twig("env Pendulum-v1 --policy %s", cut), 2);
    cr_expect_not_null(strstr(err_text, "truncated"), "%s", err_text);

    cr_expect_eq(run_twig("env InvertedPendulum-v4 --policy %s", file), 2);
    cr_expect_not_null(strstr(err_text, "env_id Pendulum-v1"), "%s", err_text);
    cr_expect_eq(run_twig("env Pendulum-v1 --policy %s/missing.twigp", tmpdir), 2);
    sac_free(&s);
}

/* `ffprobe` of a video's first stream: frames counted by decoding, size and frame rate */
static void probe_video(const char *path, long *frames, int *w, int *h, int *fps)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
             "stream=nb_read_frames,width,height,r_frame_rate -of default=nw=1 '%s' > %s/probe.txt",
             path, tmpdir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    char p[128], text[1024];
    snprintf(p, sizeof p, "%s/probe.txt", tmpdir);
    slurp(text, sizeof text, p);
    char *f;
    cr_assert_not_null(f = strstr(text, "width="), "%s", text);
    *w = atoi(f + 6);
    cr_assert_not_null(f = strstr(text, "height="), "%s", text);
    *h = atoi(f + 7);
    cr_assert_not_null(f = strstr(text, "r_frame_rate="), "%s", text);
    *fps = atoi(f + 13);
    cr_assert_not_null(f = strstr(text, "nb_read_frames="), "%s", text);
    *frames = atol(f + 15);
}

/* no file of the tmpdir has ".tmp-" in its name: ffmpeg's unfinished output is gone */
static void expect_no_temporary_video(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -q '\\.tmp-'", tmpdir);
    cr_expect_neq(system(cmd), 0, "a temporary video file is left in %s", tmpdir);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

Test(twig_eval, video_has_the_first_episode_one_frame_after_reset_and_each_step)
{
    if (system("ffprobe -version > /dev/null 2>&1") != 0) {
        cr_skip_test("no ffmpeg/ffprobe installed (deploy/install-deps.sh test)");
    }
    sac_t s = {0};
    char run[256], video[300];
    snprintf(run, sizeof run, "%s/run", tmpdir);
    make_env_ckpt(&s, run, 50, 2, 31, "InvertedPendulum-v4", 4, 1);
    snprintf(video, sizeof video, "%s/ip.mp4", tmpdir);
    int rc = run_twig("eval %s --episodes 2 --video %s --width 320 --height 240", run, video);
    if (rc == 1 && strstr(err_text, "without OSMesa") != NULL) {
        cr_skip_test("twig built without OSMesa");
    }
    cr_assert_eq(rc, 0, "%s", err_text);
    long steps = 0;
    char *ep0 = strstr(out_text, "episode 0 seed 0 return ");
    cr_assert_not_null(ep0, "%s", out_text);
    cr_assert_not_null(strstr(ep0, " steps "));
    steps = atol(strstr(ep0, " steps ") + 7);
    cr_assert_gt(steps, 0);
    cr_expect_not_null(strstr(out_text, "episode 1 seed 1"), "%s", out_text);

    struct stat st;
    cr_assert_eq(stat(video, &st), 0, "no %s", video);
    cr_expect_gt(st.st_size, 0);
    long frames;
    int w, h, fps;
    probe_video(video, &frames, &w, &h, &fps);
    cr_expect_eq(frames, steps + 1, "%ld frames for %ld steps", frames, steps);
    cr_expect_eq(w, 320);
    cr_expect_eq(h, 240);
    cr_expect_eq(fps, 25, "real time: 1 / dt, dt 0.04");   /* InvertedPendulum-v4 */
    char line[512];
    snprintf(line, sizeof line, "video %s frames %ld size 320x240 fps 25 render ", video,
             steps + 1);
    cr_expect_not_null(strstr(out_text, line), "%s", out_text);
    expect_no_temporary_video();

    /* --fps, and the same video again over the first */
    cr_assert_eq(run_twig("eval %s --episodes 1 --video %s --width 64 --height 48 --fps 10", run,
                          video), 0, "%s", err_text);
    probe_video(video, &frames, &w, &h, &fps);
    cr_expect_eq(frames, steps + 1);
    cr_expect_eq(w, 64);
    cr_expect_eq(h, 48);
    cr_expect_eq(fps, 10);
    expect_no_temporary_video();
    sac_free(&s);
}

Test(twig_eval, video_refusals_name_the_problem_and_leave_no_file)
{
    sac_t s = {0}, ip = {0};
    char run[256], iprun[256], video[300];
    snprintf(run, sizeof run, "%s/run", tmpdir);
    make_ckpt(&s, run, 50, 2, 21);   /* Pendulum-v1: no MuJoCo model */
    snprintf(iprun, sizeof iprun, "%s/iprun", tmpdir);
    make_env_ckpt(&ip, iprun, 50, 2, 31, "InvertedPendulum-v4", 4, 1);
    snprintf(video, sizeof video, "%s/v.mp4", tmpdir);

    cr_expect_eq(run_twig("eval %s --video %s", run, video), 1);
    if (strstr(err_text, "without OSMesa") != NULL) {
        cr_skip_test("twig built without OSMesa");
    }
    cr_expect_not_null(strstr(err_text, "Pendulum-v1 has no MuJoCo model"), "%s", err_text);
    cr_expect_not(exists(video));

    /* a directory that is not there */
    cr_expect_eq(run_twig("eval %s --video %s/no/such/dir/v.mp4", iprun, tmpdir), 1);
    cr_expect_not_null(strstr(err_text, "cannot write"), "%s", err_text);
    cr_expect_not_null(strstr(err_text, "No such file"), "%s", err_text);

    /* no ffmpeg on PATH */
    const char *path = getenv("PATH");
    char saved[4096];
    snprintf(saved, sizeof saved, "%s", path != NULL ? path : "/usr/bin:/bin");
    setenv("PATH", "/nonexistent", 1);
    int rc = run_twig("eval %s --video %s", iprun, video);
    setenv("PATH", saved, 1);
    cr_expect_eq(rc, 1);
    cr_expect_not_null(strstr(err_text, "ffmpeg is not on PATH"), "%s", err_text);
    cr_expect_not(exists(video));

    /* ffmpeg fails (no container for the extension): its exit status is checked */
    char odd[300];
    snprintf(odd, sizeof odd, "%s/v.notavideoformat", tmpdir);
    cr_expect_eq(run_twig("eval %s --video %s --width 64 --height 48", iprun, odd), 1);
    cr_expect_not_null(strstr(err_text, "ffmpeg exited with status"), "%s", err_text);
    cr_expect_not(exists(odd));
    /* the same with frames larger than the pipe: ffmpeg is gone while twig still writes */
    cr_expect_eq(run_twig("eval %s --video %s --width 1280 --height 720", iprun, odd), 1);
    cr_expect_not_null(strstr(err_text, "ffmpeg exited with status"), "%s", err_text);
    cr_expect_not(exists(odd));

    /* yuv420p wants even sizes; the size options go with --video */
    cr_expect_eq(run_twig("eval %s --video %s --width 321", iprun, video), 2);
    cr_expect_not_null(strstr(err_text, "--width 321 is not an even integer"), "%s", err_text);
    cr_expect_eq(run_twig("eval %s --fps 10", iprun), 2);
    cr_expect_not_null(strstr(err_text, "go with --video"), "%s", err_text);
    cr_expect_not(exists(video));
    expect_no_temporary_video();
    sac_free(&s);
    sac_free(&ip);
}
