#!/bin/sh
# make run: a whole MBPO training of Pendulum-v1 on this machine (configs/pendulum.yaml).
# Extra arguments go to `twig run` (e.g. --set real_steps=3000).
set -eu
build=${1:-build}
shift || true
exec "$build/deploy/twig" run configs/pendulum.yaml "$@"
