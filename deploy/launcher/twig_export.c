/* twig_export.c - `twig export RUN_DIR|CHECKPOINT_DIR -o FILE`: the trained policy as an
 * exported policy file (docs/policy-format.md), readable without twig (docs/loaders/) */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/nn/policy_file.h"
#include "deploy/launcher/policy_source.h"
#include "deploy/launcher/twig_cmds.h"

static void export_usage(FILE *f)
{
    fprintf(f,
            "usage: twig export RUN_DIR|CHECKPOINT_DIR|POLICY_FILE -o FILE [--version V]\n"
            "  RUN_DIR          a `twig run` directory: its learner/ckpt-<id> checkpoints\n"
            "  CHECKPOINT_DIR   a learner checkpoint_dir, or one ckpt-<id> directory\n"
            "  -o FILE          the policy file to write (docs/policy-format.md)\n"
            "  --version V      the newest checkpoint whose policy_version is <= V\n"
            "                   (default: the newest checkpoint that loads)\n");
}

int twig_cmd_export(int argc, char **argv)
{
    const char *src = NULL, *out = NULL;
    uint64_t max_version = UINT64_MAX;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            export_usage(stdout);
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (v == NULL) {
                fprintf(stderr, "twig export: -o needs a FILE\n");
                return 2;
            }
            out = v;
            i++;
        } else if (strcmp(a, "--version") == 0) {
            if (twig_flag_u64("export", &max_version, a, v, 0, UINT64_MAX) < 0) {
                return 2;
            }
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "twig export: unknown option '%s'\n", a);
            export_usage(stderr);
            return 2;
        } else if (src == NULL) {
            src = a;
        } else {
            fprintf(stderr, "twig export: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (src == NULL || out == NULL) {
        fprintf(stderr, "twig export: %s is missing\n", src == NULL ? "RUN_DIR" : "-o FILE");
        export_usage(stderr);
        return 2;
    }
    policy_t p = {0};
    policy_file_meta meta;
    char used[4096];
    int rc = policy_source_load(&p, &meta, used, sizeof used, src, max_version, 1);
    if (rc < 0) {
        fprintf(stderr, "twig export: %s (%s)\n", err_msg(), err_name(rc));
        return 1;
    }
    rc = policy_file_write(out, &p, &meta);
    if (rc < 0) {
        fprintf(stderr, "twig export: writing %s: %s\n", out, err_msg());
        policy_free(&p);
        return 1;
    }
    printf("wrote %s from %s: env=%s n_obs=%d n_act=%d hidden=%d policy_version=%" PRIu64
           " updates=%" PRIu64 "\n",
           out, used, meta.env_id, p.n_obs, p.n_act, p.hidden, meta.policy_version,
           meta.updates);
    policy_free(&p);
    return 0;
}
