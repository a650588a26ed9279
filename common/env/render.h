/* render.h - offscreen pictures of a MuJoCo env: MuJoCo's renderer in an OSMesa context.
 *
 *     env_render r = {0};
 *     if (env_render_init(&r, e, 640, 480) < 0) { ... err_msg() says what is missing ... }
 *     env_render_frame(&r, e, rgb);       // rgb: 640 * 480 * 3 bytes, top row first
 *     env_render_free(&r);
 *
 * Software rendering (Mesa's OSMesa, no GPU, no display): EGL finds no device here
 * (docs/eval.md). The camera tracks the model's first body from the side (azimuth 90,
 * elevation -20), as Gymnasium's default MuJoCo cameras do, 4 times as far away as that
 * body's tree reaches at qpos0 (at least 1 m). init computes that reach on a scratch mjData.
 * One OSMesa context per renderer, made current on the calling thread: one renderer per
 * thread, every call from the thread that made it.
 *
 * When twig is built without OSMesa (pkg-config found no `osmesa`), env_render_available()
 * is false and env_render_init fails with TWIG_EUNIMPL. */
#ifndef TWIG_ENV_RENDER_H
#define TWIG_ENV_RENDER_H

#include <mujoco/mujoco.h>
#include <stdbool.h>

#include "common/env/env.h"

typedef struct env_render {
    int width, height;
    void *gl;               /* the OSMesaContext, owned */
    unsigned char *color;   /* (height, width, 4) the context's drawing buffer, owned */
    unsigned char *rows;    /* (height, width, 3) MuJoCo's bottom-up pixels, owned */
    mjModel *m;             /* a copy of the env's model, offscreen buffer resized, owned */
    mjvScene scn;
    mjvCamera cam;
    mjvOption opt;
    mjrContext con;
    bool ready;             /* scn and con were made (and must be freed) */
} env_render;

/* was twig built with OSMesa */
bool env_render_available(void);

/* fill a zeroed r for width x height pictures of e (borrowed: only its model is read, and
 * copied). 0, or a negative code with err_msg: -EINVAL for an env without a MuJoCo model or
 * a size outside [16, 4096], TWIG_EUNIMPL if built without OSMesa, TWIG_EINTERNAL if no
 * context could be made */
int env_render_init(env_render *r, const env_t *e, int width, int height);

/* one picture of e's current state into rgb (width * height * 3 bytes, RGB24, top row
 * first). e must have the model r was made for; allocates nothing */
void env_render_frame(env_render *r, env_t *e, unsigned char *rgb);

/* release what init took; safe on a zeroed r */
void env_render_free(env_render *r);

#endif
