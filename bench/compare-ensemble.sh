#!/bin/sh
# compare-ensemble.sh - twig's dynamics ensemble against the PyTorch reference, side by side on
# one core: training step, all-member rollouts, one-member rollouts.
#
# usage: bench/compare-ensemble.sh [BUILD_DIR] [ROUNDS]     (defaults: build 1)
# env:   TWIG_REFERENCE  the reference kit (default: ../shared/reference from the repo root,
#                        else /work/shared/reference)
#        BENCH_CPU       the core to pin to (default 0)
#        TORCH_REPS      repetitions per PyTorch figure (default 5)
#
# Per round and figure, interleaved: twig with the image's OpenBLAS kernels
# (OPENBLAS_CORETYPE=Haswell), twig with OpenBLAS's own choice (AVX-512), PyTorch as installed,
# PyTorch tuned (AVX-512 + a malloc that keeps freed memory), as the reference README
# prescribes. twig-bench checks its BLAS results against a naive GEMM before it times and fails
# on a mismatch. The sgemm peak of the same core (1024^3, AVX-512 kernels) and the load average
# are recorded in the same run. Prints every JSON line, then a summary: medians, twig / best
# PyTorch (also of the fastest repetitions, the least disturbed), and shares of sgemm peak.
# twig's model also predicts the reward (output 2 x 18); ensemble_train_step_out34 is the
# reference's exact 2 x 17 output. PyTorch rollouts use its default 10k chunks, twig 2048.
set -eu

BUILD=${1:-build}
ROUNDS=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REF=${TWIG_REFERENCE:-}
if [ -z "$REF" ]; then
    if [ -d "$ROOT/../shared/reference" ]; then
        REF="$ROOT/../shared/reference"
    else
        REF=/work/shared/reference
    fi
fi
CPU=${BENCH_CPU:-0}
TORCH_REPS=${TORCH_REPS:-5}
PY=/usr/bin/python3
BENCH="$BUILD/bench/twig-bench"
[ -x "$BENCH" ] || { echo "compare-ensemble: $BENCH not built" >&2; exit 1; }
[ -f "$REF/torch/ensemble_ref.py" ] || {
    echo "compare-ensemble: no ensemble_ref.py under $REF" >&2
    exit 1
}

PIN="taskset -c $CPU env OPENBLAS_NUM_THREADS=1"
FAST="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
TUNED=GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184

TMP=$(mktemp -d /tmp/twig-compare-ensemble.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/lines.jsonl"
: >"$OUT"

# sgemm peak of this core with the AVX-512 kernels
gcc -O2 -o "$TMP/sgemm_bench" "$REF/sgemm_bench.c" -lopenblas
PEAK=$($FAST ONLY=square_1024 $PIN "$TMP/sgemm_bench" 1 9 0.3 |
       awk '/square_1024/ { for (i = 1; i <= NF; i++) if ($i == "med") print $(i + 1) }')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
echo "{\"bench\":\"load_average_start\",\"value\":\"$LOAD\"}" | tee -a "$OUT"
echo "{\"bench\":\"sgemm_peak\",\"impl\":\"openblas\",\"gflops\":$PEAK,\"shape\":\"1024^3\"}" |
    tee -a "$OUT"

run() {   # label, command...
    label=$1
    shift
    "$@" | sed "s/^{/{\"config\":\"$label\",/" | tee -a "$OUT"
}

# figure by figure, so that twig and PyTorch see about the same load on a shared machine
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for b in train all one; do
        case $b in
        train) figs="ensemble_train_step ensemble_train_step_out34" ;;
        all) figs=rollout_all_members ;;
        one) figs=rollout_one_member ;;
        esac
        # shellcheck disable=SC2086
        run twig_installed $PIN "$BENCH" nn $figs
        # shellcheck disable=SC2086
        run twig_avx512 $FAST $PIN "$BENCH" nn $figs
        run torch_installed $PIN $PY "$REF/torch/ensemble_ref.py" --threads 1 --bench $b \
            --reps "$TORCH_REPS" --label installed
        run torch_tuned $FAST $TUNED $PIN $PY "$REF/torch/ensemble_ref.py" --threads 1 \
            --bench $b --reps "$TORCH_REPS" --label tuned
    done
    r=$((r + 1))
done
echo "{\"bench\":\"load_average\",\"value\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" | tee -a "$OUT"

$PY - "$OUT" <<'PYEOF'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = next(l["gflops"] for l in lines if l["bench"] == "sgemm_peak")
# twig figure -> (reference bench, unit, MFLOP per unit as the reference counts it)
pairs = {
    "ensemble_train_step": ("ensemble_train", "steps", 1396.33),
    "ensemble_train_step_out34": ("ensemble_train", "steps", 1396.33),
    "rollout_all_members": ("ensemble_all", "samples", 1.8396),
    "rollout_one_member": ("ensemble_one", "samples", 0.26288),
}
targets = {"ensemble_train": 1.5, "ensemble_all": 1.5, "ensemble_one": 1.5}
rate, fastest = {}, {}
for l in lines:
    if "per_s" not in l and not any(k.endswith("_per_s_median") for k in l):
        continue
    r = l.get("per_s")
    if r is None:
        r = next(v for k, v in l.items() if k.endswith("_per_s_median"))
    rate.setdefault((l["config"], l["bench"]), []).append(r)
    fastest.setdefault((l["config"], l["bench"]), []).append(l.get("max", r))
med = {k: statistics.median(v) for k, v in rate.items()}
top = {k: max(v) for k, v in fastest.items()}
for (cfg, bench) in sorted(med):
    print(f"# {bench:26s} {cfg:16s} {med[(cfg, bench)]:10.1f}/s")
summary = {"bench": "ensemble_compare", "sgemm_peak_gflops": peak}
for twig, (ref, unit, mflop) in pairs.items():
    t_inst = med.get(("twig_installed", twig))
    t_fast = med.get(("twig_avx512", twig))
    p_inst = med.get(("torch_installed", ref))
    p_tuned = med.get(("torch_tuned", ref))
    if None in (t_inst, t_fast, p_inst, p_tuned):
        continue
    best_twig, best_torch = max(t_inst, t_fast), max(p_inst, p_tuned)
    row = {
        "twig_installed": t_inst, "twig_avx512": t_fast,
        "torch_installed": p_inst, "torch_tuned": p_tuned,
        "ratio_vs_best_torch": round(best_twig / best_torch, 3),
        "ratio_same_kernels_installed": round(t_inst / p_inst, 3),
        "share_of_sgemm_peak": round(best_twig * mflop / 1e3 / peak, 3),
        "ratio_of_fastest_reps": round(
            max(top[("twig_installed", twig)], top[("twig_avx512", twig)]) /
            max(top[("torch_installed", ref)], top[("torch_tuned", ref)]), 3),
        "target_ratio": targets[ref],
    }
    summary[twig] = row
    print(f"# {twig:26s} twig {best_twig:10.1f} {unit}/s  best torch {best_torch:10.1f}  "
          f"ratio {best_twig / best_torch:5.2f}  {100 * best_twig * mflop / 1e3 / peak:5.1f} % "
          f"of sgemm peak {peak:.0f}")
print(json.dumps(summary))
PYEOF
