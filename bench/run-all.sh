#!/bin/sh
# run-all.sh - every benchmark against its reference (make bench). Each compare-*.sh script
# prints its JSON lines and a summary; this runs them one after the other.
# usage: bench/run-all.sh [BUILD_DIR]
set -eu
BUILD=${1:-build}
DIR=$(dirname "$0")
for script in "$DIR"/compare-*.sh; do
    echo "# $script"
    sh "$script" "$BUILD"
done
