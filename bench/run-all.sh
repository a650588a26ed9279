#!/bin/sh
# run-all.sh - every benchmark against its reference (make bench). Each compare-*.sh script
# prints its JSON lines and a summary; this runs them one after the other, then the fault
# benchmark, which fails (exit 1) if a kill -9 lost or doubled an acknowledged transition.
# usage: bench/run-all.sh [BUILD_DIR]
set -eu
BUILD=${1:-build}
DIR=$(dirname "$0")
for script in "$DIR"/compare-*.sh; do
    echo "# $script"
    sh "$script" "$BUILD"
done
# docs/reliability.md: kill -9 the model server 30 times under load, per synced fsync policy
for fsync in batch group; do
    echo "# bench_fault_kill9 --fsync $fsync"
    "$BUILD/bench/bench_fault_kill9" --kills 30 --fsync "$fsync"
done
