/* render.c - MuJoCo's renderer in an OSMesa context (render.h) */
#include "common/env/render.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/env/env_mujoco.h"

#ifdef TWIG_HAVE_OSMESA
#include <GL/osmesa.h>
#endif

#define RENDER_SIZE_MIN 16
#define RENDER_SIZE_MAX 4096
#define RENDER_MAXGEOM 2000        /* scene capacity: the humanoid has ~30 geoms */
#define RENDER_DISTANCE 4.0        /* camera distance, in radii of the tracked body tree */
#define RENDER_DISTANCE_MIN 1.0    /* metres */
#define RENDER_ELEVATION -20.0     /* degrees: a little above the floor */
#define RENDER_AZIMUTH 90.0        /* degrees: from the side, looking along +y */

#ifdef TWIG_HAVE_OSMESA

bool env_render_available(void)
{
    return true;
}

/* how far the bodies of track's tree reach from its centre of mass at qpos0 (the model's
 * extent would count the floor plane, forty metres wide) */
static double render_tree_radius(const mjModel *m, int track)
{
    mjData *d = mj_makeData(m);
    mj_forward(m, d);
    double radius = 0.0;
    for (int b = 1; b < m->nbody; b++) {
        int up = b;
        while (up > track) {
            up = m->body_parentid[up];
        }
        if (up != track) {
            continue;   /* not in the tree */
        }
        double dist = mju_dist3(d->xpos + 3 * b, d->subtree_com + 3 * track);
        radius = dist > radius ? dist : radius;
    }
    mj_deleteData(d);
    return radius;
}

int env_render_init(env_render *r, const env_t *e, int width, int height)
{
    const mjModel *m = mjenv_model_of(e);
    if (m == NULL) {
        return err_set(-EINVAL, "env %s has no MuJoCo model to render", e->spec.name);
    }
    if (width < RENDER_SIZE_MIN || width > RENDER_SIZE_MAX || height < RENDER_SIZE_MIN ||
        height > RENDER_SIZE_MAX) {
        return err_set(-EINVAL, "picture size %dx%d is outside [%d, %d]", width, height,
                       RENDER_SIZE_MIN, RENDER_SIZE_MAX);
    }
    *r = (env_render){.width = width, .height = height};

    /* a software GL context drawing into our buffer (RGBA, 24-bit depth, 8-bit stencil) */
    OSMesaContext gl = OSMesaCreateContextExt(OSMESA_RGBA, 24, 8, 0, NULL);
    if (gl == NULL) {
        return err_set(TWIG_EINTERNAL, "OSMesaCreateContextExt failed (Mesa's OSMesa)");
    }
    r->gl = gl;
    r->color = xmalloc((size_t)width * height * 4);
    r->rows = xmalloc((size_t)width * height * 3);
    if (!OSMesaMakeCurrent(gl, r->color, GL_UNSIGNED_BYTE, width, height)) {
        env_render_free(r);
        return err_set(TWIG_EINTERNAL, "OSMesaMakeCurrent %dx%d failed", width, height);
    }

    /* our own model copy: MuJoCo sizes its offscreen buffer from vis.global.off* */
    r->m = mj_copyModel(NULL, m);
    r->m->vis.global.offwidth = width;
    r->m->vis.global.offheight = height;
    mjv_defaultOption(&r->opt);
    mjv_defaultScene(&r->scn);
    mjr_defaultContext(&r->con);
    mjv_makeScene(r->m, &r->scn, RENDER_MAXGEOM);
    mjr_makeContext(r->m, &r->con, mjFONTSCALE_100);
    r->ready = true;
    mjr_setBuffer(mjFB_OFFSCREEN, &r->con);
    if (r->con.currentBuffer != mjFB_OFFSCREEN || r->con.offWidth < width ||
        r->con.offHeight < height) {
        env_render_free(r);
        return err_set(TWIG_EINTERNAL, "MuJoCo made no %dx%d offscreen buffer", width, height);
    }

    /* the side camera tracking the first body */
    mjv_defaultCamera(&r->cam);
    r->cam.type = mjCAMERA_TRACKING;
    r->cam.trackbodyid = r->m->nbody > 1 ? 1 : 0;
    double distance = RENDER_DISTANCE * render_tree_radius(r->m, r->cam.trackbodyid);
    r->cam.distance = distance > RENDER_DISTANCE_MIN ? distance : RENDER_DISTANCE_MIN;
    r->cam.elevation = RENDER_ELEVATION;
    r->cam.azimuth = RENDER_AZIMUTH;
    return 0;
}

void env_render_frame(env_render *r, env_t *e, unsigned char *rgb)
{
    mjData *d = mjenv_data_of(e);
    TWIG_ASSERT(r->ready && d != NULL);
    TWIG_ASSERT(OSMesaMakeCurrent(r->gl, r->color, GL_UNSIGNED_BYTE, r->width, r->height));
    /* look at the tracked body exactly (MuJoCo would filter the move across frames) */
    memcpy(r->cam.lookat, d->subtree_com + 3 * r->cam.trackbodyid, sizeof r->cam.lookat);
    mjv_updateScene(r->m, d, &r->opt, NULL, &r->cam, mjCAT_ALL, &r->scn);
    mjrRect view = {0, 0, r->width, r->height};
    mjr_render(view, &r->scn, &r->con);
    mjr_readPixels(r->rows, NULL, view, &r->con);

    /* GL's rows are bottom-up: flip them */
    size_t stride = (size_t)r->width * 3;
    for (int y = 0; y < r->height; y++) {
        memcpy(rgb + (size_t)y * stride, r->rows + (size_t)(r->height - 1 - y) * stride, stride);
    }
}

void env_render_free(env_render *r)
{
    if (r->ready) {
        OSMesaMakeCurrent(r->gl, r->color, GL_UNSIGNED_BYTE, r->width, r->height);
        mjr_freeContext(&r->con);
        mjv_freeScene(&r->scn);
    }
    if (r->gl != NULL) {
        OSMesaMakeCurrent(NULL, NULL, 0, 0, 0);   /* release it before destroying it */
        OSMesaDestroyContext(r->gl);
    }
    if (r->m != NULL) {
        mj_deleteModel(r->m);
    }
    free(r->color);
    free(r->rows);
    *r = (env_render){0};
}

#else /* built without OSMesa */

bool env_render_available(void)
{
    return false;
}

int env_render_init(env_render *r, const env_t *e, int width, int height)
{
    (void)e;
    (void)width;
    (void)height;
    *r = (env_render){0};
    return err_set(TWIG_EUNIMPL, "twig was built without OSMesa (install libosmesa6-dev and "
                                 "reconfigure): no offscreen rendering");
}

void env_render_frame(env_render *r, env_t *e, unsigned char *rgb)
{
    (void)r;
    (void)e;
    (void)rgb;
    TWIG_PANIC("env_render_frame without OSMesa");
}

void env_render_free(env_render *r)
{
    *r = (env_render){0};
}

#endif
