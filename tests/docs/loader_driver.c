/* loader_driver.c - docs/loaders/twig_policy.h as a user would build it: this target's only
 * include path is docs/loaders (tests/CMakeLists.txt), it links libc and libm only.
 * usage: loader_driver POLICY OBS_F32 N OUT_F32 - acts on N observations, writes N actions;
 * a file the loader refuses: its message on stderr, exit 1 */
#include <stdio.h>
#include <stdlib.h>

#include "twig_policy.h"

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: loader_driver POLICY OBS_F32 N OUT_F32\n");
        return 2;
    }
    twig_policy pol;
    char err[512];
    if (twig_policy_load(&pol, argv[1], err, sizeof err) != 0) {
        fprintf(stderr, "twig_policy_load: %s\n", err);
        return 1;
    }
    long n = atol(argv[3]);
    float *obs = malloc((size_t)n * pol.n_obs * sizeof(float));
    float *act = malloc((size_t)n * pol.n_act * sizeof(float));
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL || fread(obs, sizeof(float), (size_t)n * pol.n_obs, f) != (size_t)n * pol.n_obs) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 2;
    }
    fclose(f);
    for (long i = 0; i < n; i++) {
        twig_policy_act(&pol, act + i * pol.n_act, obs + i * pol.n_obs);
    }
    f = fopen(argv[4], "wb");
    if (f == NULL || fwrite(act, sizeof(float), (size_t)n * pol.n_act, f) != (size_t)n * pol.n_act) {
        fprintf(stderr, "cannot write %s\n", argv[4]);
        return 2;
    }
    fclose(f);
    printf("env_id=%s n_obs=%d n_act=%d n_layers=%d policy_version=%llu\n", pol.env_id,
           pol.n_obs, pol.n_act, pol.n_layers, (unsigned long long)pol.policy_version);
    free(obs);
    free(act);
    twig_policy_free(&pol);
    return 0;
}
