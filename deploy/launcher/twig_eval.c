/* twig_eval.c - `twig eval POLICY [--episodes N] [--seed S] [--version V] [--csv FILE]`:
 * episodes of the deterministic policy (the mean action: tanh(mu), scaled into the env's
 * bounds), each episode's return and their mean and standard deviation (docs/eval.md).
 *
 * Episode i is reset with seed S + i, so the same policy and S give the same returns.
 * --video FILE renders the first episode offscreen (common/env/render.h, OSMesa) and pipes
 * its frames to ffmpeg (video_pipe.h): one frame after the reset and one after each step. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"
#include "common/env/env.h"
#include "common/env/render.h"
#include "common/nn/policy.h"
#include "deploy/launcher/policy_source.h"
#include "deploy/launcher/twig_cmds.h"
#include "deploy/launcher/video_pipe.h"

#define EVAL_EPISODES_DEFAULT 10
#define EVAL_EPISODES_MAX 1000000ULL
#define EVAL_VIDEO_WIDTH 640
#define EVAL_VIDEO_HEIGHT 480
#define EVAL_VIDEO_SIZE_MAX 4096   /* env_render's bound */
#define EVAL_VIDEO_FPS_MAX 1000

typedef struct eval_opts {
    const char *source;
    uint64_t episodes, seed, max_version;
    const char *csv_path;
    const char *video_path;
    uint64_t width, height, fps;   /* fps 0: real time, 1 / dt rounded */
} eval_opts;

/* the first episode's video: renderer, frame buffer, encoder */
typedef struct eval_video {
    env_render r;
    unsigned char *rgb;            /* (height, width, 3) */
    video_pipe pipe;
    int fps;                       /* the video's frames per second */
    double render_s;               /* seconds spent rendering and piping */
} eval_video;

/* what one episode gave */
typedef struct eval_episode {
    uint64_t seed;
    double ret;
    long steps;
    bool terminated;
} eval_episode;

static void eval_usage(FILE *f)
{
    fprintf(f,
            "usage: twig eval RUN_DIR|CHECKPOINT_DIR|POLICY_FILE [--episodes N] [--seed S]\n"
            "                 [--version V] [--csv FILE] [--video FILE [--width W]\n"
            "                 [--height H] [--fps F]]\n"
            "  POLICY          a run directory, a checkpoint directory or a `twig export` file\n"
            "  --episodes N    episodes to run (%d)\n"
            "  --seed S        episode i is reset with seed S + i (0)\n"
            "  --version V     the newest checkpoint whose policy_version is <= V\n"
            "  --csv FILE      also write episode,seed,return,steps,terminated rows to FILE\n"
            "  --video FILE    render the first episode into FILE (mp4 or what its extension\n"
            "                  names) with OSMesa and ffmpeg%s\n"
            "  --width W       video width in pixels, even (%d)\n"
            "  --height H      video height in pixels, even (%d)\n"
            "  --fps F         frames per second (real time: 1 / the env's dt)\n"
            "Actions are deterministic: the policy's mean, tanh(mu) scaled into the bounds.\n",
            EVAL_EPISODES_DEFAULT,
            env_render_available() ? "" : " (unavailable: built without OSMesa)",
            EVAL_VIDEO_WIDTH, EVAL_VIDEO_HEIGHT);
}

/* 0, 1 for --help, < 0 for bad usage (reported) */
static int eval_parse(eval_opts *o, int argc, char **argv)
{
    *o = (eval_opts){.episodes = EVAL_EPISODES_DEFAULT, .max_version = UINT64_MAX,
                     .width = EVAL_VIDEO_WIDTH, .height = EVAL_VIDEO_HEIGHT};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            eval_usage(stdout);
            return 1;
        } else if (strcmp(a, "--episodes") == 0) {
            if (twig_flag_u64("eval", &o->episodes, a, v, 1, EVAL_EPISODES_MAX) < 0) {
                return -EINVAL;
            }
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            if (twig_flag_u64("eval", &o->seed, a, v, 0, UINT64_MAX) < 0) {
                return -EINVAL;
            }
            i++;
        } else if (strcmp(a, "--version") == 0) {
            if (twig_flag_u64("eval", &o->max_version, a, v, 0, UINT64_MAX) < 0) {
                return -EINVAL;
            }
            i++;
        } else if (strcmp(a, "--csv") == 0) {
            if (v == NULL) {
                fprintf(stderr, "twig eval: --csv needs a FILE\n");
                return -EINVAL;
            }
            o->csv_path = v;
            i++;
        } else if (strcmp(a, "--video") == 0) {
            if (v == NULL) {
                fprintf(stderr, "twig eval: --video needs a FILE\n");
                return -EINVAL;
            }
            o->video_path = v;
            i++;
        } else if (strcmp(a, "--width") == 0 || strcmp(a, "--height") == 0 ||
                   strcmp(a, "--fps") == 0) {
            uint64_t *x = a[2] == 'w' ? &o->width : a[2] == 'h' ? &o->height : &o->fps;
            uint64_t hi = a[2] == 'f' ? EVAL_VIDEO_FPS_MAX : EVAL_VIDEO_SIZE_MAX;
            if (twig_flag_u64("eval", x, a, v, 1, hi) < 0) {
                return -EINVAL;
            }
            if (a[2] != 'f' && *x % 2 != 0) {
                fprintf(stderr, "twig eval: %s %s is not an even integer\n", a, v);
                return -EINVAL;
            }
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "twig eval: unknown option '%s'\n", a);
            return -EINVAL;
        } else if (o->source == NULL) {
            o->source = a;
        } else {
            fprintf(stderr, "twig eval: unexpected argument '%s'\n", a);
            return -EINVAL;
        }
    }
    if (o->source == NULL) {
        fprintf(stderr, "twig eval: RUN_DIR or POLICY_FILE is missing\n");
        return -EINVAL;
    }
    if (o->video_path == NULL && (o->fps != 0 || o->width != EVAL_VIDEO_WIDTH ||
                                  o->height != EVAL_VIDEO_HEIGHT)) {
        fprintf(stderr, "twig eval: --width, --height and --fps go with --video\n");
        return -EINVAL;
    }
    return 0;
}

/* one picture of e's state piped to the video; 0 or a negative code (err_msg) */
static int eval_video_frame(eval_video *v, env_t *e)
{
    double t0 = clock_now_s();
    env_render_frame(&v->r, e, v->rgb);
    int rc = video_pipe_write(&v->pipe, v->rgb);
    v->render_s += clock_now_s() - t0;
    return rc;
}

/* one deterministic episode from reset seed, filmed if video is not NULL; 0 or a negative
 * code (err_msg) */
static int eval_episode_run(eval_episode *ep, env_t *e, policy_t *p, float *obs, float *act,
                            uint64_t seed, eval_video *video)
{
    *ep = (eval_episode){.seed = seed};
    env_reset(e, seed, obs);
    int rc;
    if (video != NULL && (rc = eval_video_frame(video, e)) < 0) {
        return rc;
    }
    env_step_result r = {.next_obs = obs};
    for (long t = 1; t <= e->spec.max_episode_steps; t++) {
        policy_act(p, NULL, act, obs, 1, true);
        rc = env_step(e, act, &r);
        if (rc < 0) {
            return rc;
        }
        ep->ret += r.reward;
        ep->steps = t;
        if (video != NULL && (rc = eval_video_frame(video, e)) < 0) {
            return rc;
        }
        if (r.terminated || r.truncated) {
            ep->terminated = r.terminated;
            break;
        }
    }
    return 0;
}

/* renderer and ffmpeg for --video; 0, or < 0 with the reason printed and nothing left */
static int eval_video_open(eval_video *v, const eval_opts *o, const env_t *e)
{
    int w = (int)o->width, h = (int)o->height;
    int rc = env_render_init(&v->r, e, w, h);
    if (rc < 0) {
        fprintf(stderr, "twig eval: --video: %s\n", err_msg());
        return rc;
    }
    int fps = (int)o->fps;
    if (fps == 0) {
        fps = (int)lround(1.0 / e->spec.dt);   /* real time */
        fps = fps < 1 ? 1 : fps > EVAL_VIDEO_FPS_MAX ? EVAL_VIDEO_FPS_MAX : fps;
    }
    rc = video_pipe_open(&v->pipe, o->video_path, w, h, fps);
    if (rc < 0) {
        fprintf(stderr, "twig eval: --video: %s\n", err_msg());
        env_render_free(&v->r);
        return rc;
    }
    v->rgb = xmalloc((size_t)w * h * 3);
    v->fps = fps;
    return 0;
}

/* end the video after the first episode: ffmpeg done, the file in place, one line printed */
static int eval_video_close(eval_video *v, const eval_opts *o)
{
    long frames = v->pipe.frames;
    int rc = video_pipe_close(&v->pipe);
    if (rc < 0) {
        fprintf(stderr, "twig eval: --video: %s\n", err_msg());
        return rc;
    }
    double per_s = v->render_s > 0.0 ? (double)frames / v->render_s : 0.0;
    printf("video %s frames %ld size %dx%d fps %d render %.1f frames/s\n", o->video_path,
           frames, v->r.width, v->r.height, v->fps, per_s);
    return 0;
}

/* what --video took; removes an unfinished file; safe on a zeroed v */
static void eval_video_free(eval_video *v)
{
    video_pipe_abort(&v->pipe);
    env_render_free(&v->r);
    free(v->rgb);
    *v = (eval_video){0};
}

int twig_cmd_eval(int argc, char **argv)
{
    eval_opts o;
    int rc = eval_parse(&o, argc, argv);
    if (rc != 0) {
        if (rc < 0) {
            eval_usage(stderr);
            return 2;
        }
        return 0;
    }
    if (o.video_path != NULL && !env_render_available()) {
        fprintf(stderr, "twig eval: --video is unavailable: this twig was built without "
                        "OSMesa (install libosmesa6-dev and rebuild; docs/eval.md)\n");
        return 1;
    }
    policy_t p = {0};
    policy_file_meta meta;
    char used[4096];
    rc = policy_source_load(&p, &meta, used, sizeof used, o.source, o.max_version, 1);
    if (rc < 0) {
        fprintf(stderr, "twig eval: %s (%s)\n", err_msg(), err_name(rc));
        return 1;
    }
    env_t *e = NULL;
    rc = env_make(&e, meta.env_id);
    if (rc < 0) {
        fprintf(stderr, "twig eval: env %s: %s\n", meta.env_id, err_msg());
        policy_free(&p);
        return 1;
    }
    if (e->spec.n_obs != p.n_obs || e->spec.n_act != p.n_act) {
        fprintf(stderr, "twig eval: the policy has %d obs / %d act, env %s has %d / %d\n",
                p.n_obs, p.n_act, meta.env_id, e->spec.n_obs, e->spec.n_act);
        env_free(e);
        policy_free(&p);
        return 1;
    }
    eval_video video = {0};
    if (o.video_path != NULL && eval_video_open(&video, &o, e) < 0) {
        env_free(e);
        policy_free(&p);
        return 1;
    }
    FILE *csv = NULL;
    if (o.csv_path != NULL) {
        csv = fopen(o.csv_path, "w");
        if (csv == NULL) {
            fprintf(stderr, "twig eval: cannot write %s: %s\n", o.csv_path, strerror(errno));
            eval_video_free(&video);
            env_free(e);
            policy_free(&p);
            return 1;
        }
        fprintf(csv, "episode,seed,return,steps,terminated\n");
    }
    printf("policy %s env=%s policy_version=%" PRIu64 " updates=%" PRIu64 " episodes=%" PRIu64
           " seed=%" PRIu64 "\n",
           used, meta.env_id, meta.policy_version, meta.updates, o.episodes, o.seed);
    float *obs = xcalloc((size_t)p.n_obs, sizeof(float));
    float *act = xcalloc((size_t)p.n_act, sizeof(float));
    double sum = 0.0, sum_sq = 0.0;
    int status = 0;
    for (uint64_t i = 0; i < o.episodes; i++) {
        eval_episode ep;
        bool film = i == 0 && o.video_path != NULL;
        rc = eval_episode_run(&ep, e, &p, obs, act, o.seed + i, film ? &video : NULL);
        if (rc < 0) {
            fprintf(stderr, "twig eval: episode %" PRIu64 ": %s\n", i, err_msg());
            status = 1;
            break;
        }
        if (film && eval_video_close(&video, &o) < 0) {
            status = 1;
            break;
        }
        sum += ep.ret;
        sum_sq += ep.ret * ep.ret;
        printf("episode %" PRIu64 " seed %" PRIu64 " return %.6g steps %ld%s\n", i, ep.seed,
               ep.ret, ep.steps, ep.terminated ? " terminated" : "");
        if (csv != NULL) {
            fprintf(csv, "%" PRIu64 ",%" PRIu64 ",%.9g,%ld,%d\n", i, ep.seed, ep.ret, ep.steps,
                    ep.terminated ? 1 : 0);
        }
    }
    if (status == 0) {
        /* the population standard deviation (divide by N), as numpy.std */
        double n = (double)o.episodes, mean = sum / n;
        double var = sum_sq / n - mean * mean;
        printf("return mean %.6g std %.6g over %" PRIu64 " episodes\n", mean,
               var > 0.0 ? sqrt(var) : 0.0, o.episodes);
    }
    if (csv != NULL && fclose(csv) != 0) {
        fprintf(stderr, "twig eval: writing %s: %s\n", o.csv_path, strerror(errno));
        status = 1;
    }
    if (fflush(stdout) != 0) {
        status = 1;
    }
    free(obs);
    free(act);
    eval_video_free(&video);
    env_free(e);
    policy_free(&p);
    return status;
}
