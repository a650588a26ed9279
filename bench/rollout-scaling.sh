#!/bin/sh
# Rollout-worker scaling (issue 6, section 4): HalfCheetah-v4 with MBPO's model and policy
# sizes, async pacing, M = 1, 2, 4, ... rollout workers. The actor is capped at RATE real steps
# per second (actor.steps_per_s, standing for a robot's control rate) so every run has the
# same timeline: 5000 random steps, one model fit at 5000, the end at 9999 (before a second
# fit). From the first evaluation that sees the model to the one at 9500 real steps only
# rollout workers and the learner compute (besides the actor's light stepping); from
# metrics.csv over that window the script prints one JSON line per M: synthetic transitions/s
# arriving at the learner, SAC updates/s, and their ratios to the first M.
#
# usage: bench/rollout-scaling.sh [BUILD_DIR] [WORKER_COUNTS] [RATE]
#        (defaults: build, "1 2 4", 50); PORT_BASE and BLAS_ENV as in run-env.sh
set -eu
build=${1:-build}
counts=${2:-"1 2 4"}
rate=${3:-50}
out=runs/bench-rollout-scaling-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
init=5000
steps=9999
. "$(dirname "$0")/run-env.sh"   # $ports, $run_env (PORT_BASE, BLAS_ENV)
base_synth=""
base_upd=""
for m in $counts; do
    dir="$out/m$m"
    # shellcheck disable=SC2086
    env $run_env "$build/deploy/twig" run configs/halfcheetah.yaml --run-dir "$dir" \
        --set pacing=async $ports \
        --set n_rollout="$m" --set actor.steps_per_s="$rate" --set real_steps="$steps" \
        --set init_steps=$init --set model_train_freq=$init \
        --set learner.synthetic_capacity=400000 --set eval_every=500 --set eval_episodes=1 \
        > "$dir.out" 2>&1 || { echo "run $dir failed, see $dir.out" >&2; exit 1; }
    # columns: real_steps, wall_s, ..., updates (5), synthetic_samples (6), model_version (8)
    set -- $(awk -F, 'NR > 1 && $8 >= 1 && $1 <= 9500 { if (w0 == "") { w0 = $2; u0 = $5; s0 = $6 }
                 w1 = $2; u1 = $5; s1 = $6 }
             END { dt = w1 - w0; if (dt <= 0) { print "0 0 0"; exit }
                   printf "%.1f %.0f %.1f\n", dt, (s1 - s0) / dt, (u1 - u0) / dt }' \
             "$dir/metrics.csv")
    [ "${base_synth:-}" = "" ] && base_synth=$2 && base_upd=$3
    awk -v m="$m" -v dt="$1" -v s="$2" -v u="$3" -v bs="$base_synth" -v bu="$base_upd" \
        -v rate="$rate" 'BEGIN {
        printf "{\"bench\":\"rollout_scaling\",\"env\":\"HalfCheetah-v4\",\"workers\":%d,", m
        printf "\"actor_steps_per_s\":%d,\"window_s\":%s,\"synthetic_per_s\":%s,", rate, dt, s
        printf "\"updates_per_s\":%s,\"synthetic_ratio\":%.2f,\"updates_ratio\":%.2f}\n",
            u, (bs > 0 ? s / bs : 0), (bu > 0 ? u / bu : 0) }'
done | tee "$out/results.jsonl"
echo "results in $out/results.jsonl"
