#!/bin/sh
# make run: start the model server on its default address with a data dir under runs/.
# (The full training run replaces this once the distributed loop exists.)
set -eu
build=${1:-build}
addr=${TWIG_LISTEN:-127.0.0.1:7070}
dir=runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$dir"
echo "twig: model server on $addr, data in $dir (Ctrl-C stops it)"
echo "twig: health: /usr/bin/python3 deploy/health_check.py $addr"
exec "$build/modelserver/twig-modelserver" --listen "$addr" --data-dir "$dir/modelserver"
