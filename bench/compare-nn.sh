#!/bin/sh
# compare-nn.sh - twig's SAC update against the PyTorch reference, side by side on one core.
#
# usage: bench/compare-nn.sh [BUILD_DIR] [ROUNDS]     (defaults: build 2)
# env:   TWIG_REFERENCE  the reference kit (default: ../shared/reference from the repo root,
#                        else /work/shared/reference)
#        BENCH_CPU       the core to pin to (default 0)
#        BENCH_REPS      timed repetitions per run, both sides (default 7)
#
# Per round, interleaved: twig with the image's OpenBLAS kernels (OPENBLAS_CORETYPE=Haswell),
# twig with OpenBLAS's own choice (AVX-512), PyTorch as installed, PyTorch tuned (AVX-512 +
# a malloc that keeps freed memory), as the reference README prescribes. twig-bench checks
# its BLAS results against a naive GEMM before it times, and fails on a mismatch. The sgemm
# peak of the same core (1024^3, AVX-512 kernels) is measured before and after (the best
# counts). Prints every JSON line, then a summary: medians, twig / best PyTorch, and twig's
# share of sgemm peak.
set -eu

BUILD=${1:-build}
ROUNDS=${2:-2}
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
REPS=${BENCH_REPS:-7}
PY=/usr/bin/python3
BENCH="$BUILD/bench/twig-bench"
[ -x "$BENCH" ] || { echo "compare-nn: $BENCH not built" >&2; exit 1; }
[ -f "$REF/torch/sac_ref.py" ] || { echo "compare-nn: no sac_ref.py under $REF" >&2; exit 1; }

PIN="taskset -c $CPU env OPENBLAS_NUM_THREADS=1"
FAST="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
TUNED=GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184

TMP=$(mktemp -d /tmp/twig-compare-nn.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/lines.jsonl"
: >"$OUT"

# sgemm peak of this core with the AVX-512 kernels
gcc -O2 -o "$TMP/sgemm_bench" "$REF/sgemm_bench.c" -lopenblas
peak() {   # sgemm GFLOPS at 1024^3, appended as a JSON line
    g=$($FAST ONLY=square_1024 $PIN "$TMP/sgemm_bench" 1 9 0.3 |
        awk '/square_1024/ { for (i = 1; i <= NF; i++) if ($i == "med") print $(i + 1) }')
    echo "{\"bench\":\"sgemm_peak\",\"impl\":\"openblas\",\"gflops\":$g,\"shape\":\"1024^3\"}" |
        tee -a "$OUT"
}
peak
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

run() {   # label, command...
    label=$1
    shift
    "$@" | sed "s/^{/{\"config\":\"$label\",/" | tee -a "$OUT"
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
    run twig_installed $PIN "$BENCH" nn --reps "$REPS" sac_update
    run twig_avx512 $FAST $PIN "$BENCH" nn --reps "$REPS" sac_update
    run torch_installed $PIN $PY "$REF/torch/sac_ref.py" --threads 1 --reps "$REPS" \
        --label installed
    run torch_tuned $FAST $TUNED $PIN $PY "$REF/torch/sac_ref.py" --threads 1 --reps "$REPS" \
        --label tuned
    r=$((r + 1))
done

peak
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$OUT" <<'PYEOF'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# other load can only lower the peak: take the best of the measurements
peak = max(l["gflops"] for l in lines if l["bench"] == "sgemm_peak")
rate, best = {}, {}
for l in lines:
    if l.get("bench") != "sac_update":
        continue
    r = l.get("per_s", l.get("updates_per_s_median"))
    rate.setdefault(l["config"], []).append(r)
    best[l["config"]] = max(best.get(l["config"], 0), l["max"])
# per round: the faster twig over the faster PyTorch, timed within the same minute or so
n_rounds = min(len(v) for v in rate.values())
round_ratios = [max(rate["twig_installed"][i], rate["twig_avx512"][i])
                / max(rate["torch_installed"][i], rate["torch_tuned"][i]) for i in range(n_rounds)]
med = {k: statistics.median(v) for k, v in rate.items()}
mflop = 581.57
for k in sorted(med):
    print(f"# {k:16s} {med[k]:7.1f} updates/s  {med[k] * mflop / 1e3:6.1f} GFLOPS  "
          f"({100 * med[k] * mflop / 1e3 / peak:4.1f} % of sgemm peak {peak:.0f})")
best_torch = max(med["torch_installed"], med["torch_tuned"])
best_twig = max(med["twig_installed"], med["twig_avx512"])
summary = {
    "bench": "sac_update_compare", "sgemm_peak_gflops": peak,
    "twig_installed": med["twig_installed"], "twig_avx512": med["twig_avx512"],
    "torch_installed": med["torch_installed"], "torch_tuned": med["torch_tuned"],
    "ratio_vs_best_torch": round(best_twig / best_torch, 3),
    "ratio_same_kernels_installed": round(med["twig_installed"] / med["torch_installed"], 3),
    "twig_share_of_peak": round(best_twig * mflop / 1e3 / peak, 3),
    "median_of_round_ratios": round(statistics.median(round_ratios), 3),
    "round_ratios": [round(x, 2) for x in round_ratios],
    # the fastest repetition of each: less sensitive to other load on a shared machine
    "ratio_of_fastest_reps": round(max(best["twig_installed"], best["twig_avx512"])
                                   / max(best["torch_installed"], best["torch_tuned"]), 3),
    "target_ratio": 1.5, "target_share_of_peak": 0.70,
}
print(json.dumps(summary))
PYEOF
