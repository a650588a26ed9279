# run-env.sh - sourced by the learning and scaling benchmarks (needs $build).
#
# ports: the --set options that put a run on PORT_BASE (default 7100): model server
# PORT_BASE+1, learner +2, actors +10.., rollout workers +40.., so a benchmark can run beside
# a run on the default ports.
#
# run_env: `env` arguments for the processes. The machine's OPENBLAS_CORETYPE picks AVX2
# kernels at half speed; the processes run without it (and without OPENBLAS_L2_SIZE) once
# `twig-bench nn --check-only` has checked, under that same environment, that SAC updates,
# ensemble steps and rollouts through BLAS match a plain reference GEMM (the script stops
# if not). BLAS_ENV=keep keeps the machine's settings.
pb=${PORT_BASE:-7100}
ports="--set modelserver_addr=127.0.0.1:$((pb + 1)) --set learner_addr=127.0.0.1:$((pb + 2))
       --set launcher.actor_base_port=$((pb + 10)) --set launcher.rollout_base_port=$((pb + 40))"
if [ "${BLAS_ENV:-unset}" = keep ]; then
    run_env=""
else
    run_env="-u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
fi
if [ -n "$run_env" ]; then
    # shellcheck disable=SC2086
    env $run_env "$build/bench/twig-bench" nn --check-only > /dev/null
fi
