#!/bin/sh
# Long MuJoCo learning run of issue 6 (section 3): one `twig run` of a task config in strict
# pacing, evaluated every EVAL_EVERY real steps, printing one JSON line per evaluation (real
# steps, wall seconds, eval return, updates, synthetic samples, rates since the previous
# line) for comparison with MBPO's published curve (docs/results.md).
#
# OpenBLAS runs on its own core detection after a check against a plain GEMM (run-env.sh).
#
# usage: bench/learning-mujoco.sh [BUILD_DIR] [CONFIG] [REAL_STEPS] [SEED] [EVAL_EVERY]
#        (defaults: build, configs/halfcheetah.yaml, 30000, 1, 1000)
#        BLAS_ENV=keep keeps the machine's OpenBLAS settings; PORT_BASE as in the other scripts
set -eu
build=${1:-build}
config=${2:-configs/halfcheetah.yaml}
steps=${3:-30000}
seed=${4:-1}
every=${5:-1000}
name=$(basename "$config" .yaml)
out=runs/bench-$name-s$seed-$(date +%Y%m%d-%H%M%S)
mkdir -p "$(dirname "$out")"
. "$(dirname "$0")/run-env.sh"   # $ports, $run_env (PORT_BASE, BLAS_ENV)
# shellcheck disable=SC2086
env $run_env "$build/deploy/twig" run "$config" --run-dir "$out" --set seed="$seed" \
    --set real_steps="$steps" --set eval_every="$every" --set eval_episodes=5 \
    $ports \
    > "$out.out" 2>&1 || echo "run $out failed, see $out.out" >&2
awk -F, -v env="$name" -v seed="$seed" 'NR > 1 {
    dt = $2 - w; dsteps = $1 - s
    printf "{\"bench\":\"mujoco_learning\",\"config\":\"%s\",\"seed\":%d,\"real_steps\":%d,", env, seed, $1
    printf "\"wall_s\":%.1f,\"eval_return\":%.1f,\"eval_std\":%.1f,\"updates\":%d,", $2, $3, $4, $5
    printf "\"synthetic\":%d,\"s_per_1000_steps\":%.1f,\"updates_per_s\":%.1f,", $6, (dsteps > 0 ? 1000 * dt / dsteps : 0), (dt > 0 ? ($5 - u) / dt : 0)
    printf "\"synthetic_per_s\":%.0f}\n", (dt > 0 ? ($6 - y) / dt : 0)
    w = $2; s = $1; u = $5; y = $6 }' "$out/metrics.csv" | tee "$out.jsonl"
echo "results in $out.jsonl, run directory $out"
