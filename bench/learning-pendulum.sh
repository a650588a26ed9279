#!/bin/sh
# Learning bar of issue 6 on Pendulum-v1: MBPO (configs/pendulum.yaml, strict pacing) and SAC
# alone (UTD 1, no model, real data only) on the same seeds. Prints one JSON line per run and
# a table of the real steps each needed to reach a mean evaluation return >= -250.
#
# usage: bench/learning-pendulum.sh [BUILD_DIR] [SEEDS] [SAC_STEPS]
#        (defaults: build, "1 2 3 4 5", 20000)
set -eu
build=${1:-build}
seeds=${2:-"1 2 3 4 5"}
sac_steps=${3:-20000}
out=runs/bench-pendulum-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
bar=-250
BLAS_ENV=keep   # the published Pendulum figures ran with the machine's OpenBLAS settings
. "$(dirname "$0")/run-env.sh"   # $ports (PORT_BASE)

# first real step count whose eval mean reaches the bar, or "-"; final return; wall seconds
summarise() {
    awk -F, -v bar=$bar 'NR > 1 { if (first == "" && $3 >= bar) first = $1; last = $3; wall = $2 }
        END { printf "%s %s %s\n", (first == "" ? "-" : first), last, wall }' "$1/metrics.csv"
}

run() {   # name seed extra-args...
    name=$1
    seed=$2
    shift 2
    dir="$out/$name-s$seed"
    "$build/deploy/twig" run configs/pendulum.yaml --run-dir "$dir" --set seed="$seed" $ports \
        --set eval_every=500 "$@" > "$dir.out" 2>&1 || echo "run $dir failed" >&2
    set -- $(summarise "$dir")
    updates=$(grep -o 'SAC updates *[0-9]*' "$dir.out" | grep -o '[0-9]*$' || echo 0)
    synth=$(grep -o 'synthetic samples *[0-9]*' "$dir.out" | grep -o '[0-9]*$' || echo 0)
    echo "{\"bench\":\"pendulum_learning\",\"algo\":\"$name\",\"seed\":$seed,\"steps_to_bar\":\"$1\",\"final_return\":$2,\"wall_s\":$3,\"updates\":$updates,\"synthetic\":$synth}"
}

for s in $seeds; do
    run mbpo "$s"
    run sac "$s" --set utd=1 --set n_rollout=0 --set rollouts_per_step=0 --set real_ratio=1 \
        --set real_steps="$sac_steps"
done | tee "$out/results.jsonl"
echo "results in $out/results.jsonl"
