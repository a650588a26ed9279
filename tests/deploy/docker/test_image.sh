#!/bin/sh
# The twig image (deploy/image/, docs/deploy.md "Image"), on the `dockerd` fixture's daemon.
#   test_image.sh build SRC_DIR BUILD_DIR TAG   build it by the documented command, from scratch
#                                               (base image dropped, no layer cache; with
#                                               TWIG_TEST_IMAGE_COLD=1 the debootstrap tarball too)
#   test_image.sh run SRC_DIR BUILD_DIR TAG     what is inside it and what it runs
# Every container it makes is named twig-ctest-<pid>-* and removed (with its volumes) at exit.
set -eu

mode=$1
src=$2
build=$3
tag=$4
docker=/usr/bin/docker
state="$build/dockerd"
[ -s "$state/docker-host" ] || { echo "FAIL: no $state/docker-host (the dockerd fixture did not run)"; exit 1; }
DOCKER_HOST=$(cat "$state/docker-host")
export DOCKER_HOST
prefix="twig-ctest-$$"

fail() {
    echo "FAIL: $*"
    exit 1
}
cleanup() {
    for c in $("$docker" ps -aq --filter "name=^$prefix-"); do
        "$docker" rm -f -v "$c" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

if [ "$mode" = build ]; then
    base=twig-base:bookworm
    "$docker" rmi -f "$tag" >/dev/null 2>&1 || true
    # the base goes too unless another image (make image's twig:latest) is built on it
    "$docker" rmi "$base" >/dev/null 2>&1 || echo "note: $base kept (an image uses it)"
    if [ "${TWIG_TEST_IMAGE_COLD:-0}" = 1 ]; then
        rm -f "$build/image-cache/bookworm-minbase.tar"
    fi
    t0=$(date +%s)
    TWIG_IMAGE_NO_CACHE=1 sh "$src/deploy/image/build.sh" "$build" "$tag" || fail "build.sh failed"
    echo "measured: image build $(($(date +%s) - t0)) s"
    "$docker" image inspect "$tag" >/dev/null || fail "$tag is not there after the build"
    size=$("$docker" image inspect -f '{{.Size}}' "$tag")
    echo "measured: image size $((size / 1000000)) MB"
    # only runtime: HEALTHCHECK, user, volumes as documented
    [ "$("$docker" image inspect -f '{{.Config.User}}' "$tag")" = "twig:twig" ] || fail "image user"
    vols=$("$docker" image inspect -f '{{range $k, $v := .Config.Volumes}}{{$k}} {{end}}' "$tag")
    for v in /var/lib/twig/modelserver /var/lib/twig/learner /var/lib/twig/run; do
        case " $vols" in *" $v "*) ;; *) fail "volume $v not declared (have: $vols)" ;; esac
    done
    "$docker" image inspect -f '{{.Config.Healthcheck.Test}}' "$tag" | grep -q "twig health" ||
        fail "no twig health HEALTHCHECK"
    echo "ok: built $tag"
    exit 0
fi

[ "$mode" = run ] || fail "unknown mode $mode"
run() { "$docker" run --rm --name "$prefix-$(date +%s%N)" "$@"; }

# wait_healthy CONTAINER WHAT: poll its HEALTHCHECK status until healthy (120 s deadline);
# fail, with its last log lines, if it stops first
wait_healthy() {
    end=$(($(date +%s) + 120))
    status=""
    while [ "$status" != healthy ]; do
        status=$("$docker" inspect -f '{{.State.Health.Status}}' "$1")
        if [ "$("$docker" inspect -f '{{.State.Running}}' "$1")" != true ]; then
            "$docker" logs "$1" 2>&1 | tail -n 20
            fail "$2 stopped (health $status)"
        fi
        [ "$(date +%s)" -lt "$end" ] || fail "$2: health '$status' after 120 s"
        [ "$status" = healthy ] || sleep 0.5
    done
}

# one container (each costs seconds on vfs) looks for compilers, its uid and every role's --help
out=$(run "$tag" sh -c '
    for c in gcc cc c99 c++ g++ clang tcc ld ld.bfd ld.gold as; do
        command -v "$c" | sed "s/^/compiler: /"
    done
    ls /usr/bin /usr/local/bin /opt/twig/bin |
        grep -E "(^|-)(gcc|g\+\+|cc|c\+\+|clang|ld|as)(-[0-9.]+)?(\.bfd|\.gold)?$" |
        sed "s/^/compiler: /"
    echo "uid: $(id -u)"
    for b in twig twig-modelserver twig-learner twig-actor twig-rollout; do
        if h=$("$b" --help 2>&1) && echo "$h" | grep -q usage; then
            echo "help ok: $b"
        else
            echo "help failed: $b: $(echo "$h" | head -n 3)"
        fi
    done') || fail "the check container failed: $out"
found=$(echo "$out" | sed -n 's/^compiler: //p')
[ -z "$found" ] || fail "compilers in the image: $found"
echo "ok: no compiler"
uid=$(echo "$out" | sed -n 's/^uid: //p')
[ -n "$uid" ] && [ "$uid" != 0 ] || fail "runs as uid '$uid'"
echo "ok: runs as uid $uid"
# each role's binary starts (every library found) and prints its --help
[ "$(echo "$out" | grep -c '^help ok: ')" = 5 ] || fail "--help: $(echo "$out" | grep '^help')"
echo "ok: every role prints --help"

# a model server in a container; its HEALTHCHECK reaches healthy, twig health answers inside
# it and from a second container, its log is docker logs, OpenBLAS settings passed through
ms="$prefix-ms"
"$docker" run -d --name "$ms" -e TWIG_HEALTH_ADDR=127.0.0.1:7101 -e OPENBLAS_CORETYPE \
    -e OPENBLAS_L2_SIZE "$tag" twig-modelserver --listen 0.0.0.0:7101 \
    --data-dir /var/lib/twig/modelserver/log >/dev/null || fail "docker run twig-modelserver"
wait_healthy "$ms" "the model server container"
echo "ok: HEALTHCHECK healthy"
out=$("$docker" exec "$ms" twig health 127.0.0.1:7101) || fail "twig health inside: $out"
echo "$out" | grep -q ": SERVING" || fail "twig health said: $out"
ip=$("$docker" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$ms")
peer=$(run "$tag" sh -c "twig health $ip:7101 --service liveness; echo exit=\$?;
    twig health $ip:7101 --service no.Such 2>/dev/null; echo exit=\$?")
echo "$peer" | grep -q '"liveness": SERVING' || fail "twig health from a peer: $peer"
[ "$(echo "$peer" | sed -n 's/^exit=//p' | tr '\n' ' ')" = "0 4 " ] ||
    fail "twig health from a peer: exits $(echo "$peer" | sed -n 's/^exit=//p') (expected 0, 4)"
echo "ok: twig health inside ($out)"
"$docker" logs "$ms" 2>&1 | grep -q "event=started" || fail "docker logs lacks event=started"
echo "ok: docker logs shows the model server's log"
"$docker" exec "$ms" sh -c 'ls -A /var/lib/twig/modelserver/log' | grep -q . ||
    fail "the model server wrote nothing into its data volume"
for v in OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; do
    host=$(printenv "$v" || true)
    inside=$("$docker" exec "$ms" sh -c "tr '\\0' '\\n' </proc/1/environ | sed -n 's/^$v=//p'")
    [ "$host" = "$inside" ] || fail "$v: host '$host', container '$inside'"
done
echo "ok: OPENBLAS_CORETYPE='${OPENBLAS_CORETYPE:-}' OPENBLAS_L2_SIZE='${OPENBLAS_L2_SIZE:-}' passed through"
"$docker" stop -t 20 "$ms" >/dev/null
[ "$("$docker" inspect -f '{{.State.ExitCode}}' "$ms")" = 0 ] || fail "model server exit code on docker stop"
echo "ok: docker stop ends it with status 0"

# with TLS: the HEALTHCHECK takes the run file's keys (TWIG_HEALTH_TLS_FROM) and reaches
# healthy, a plaintext probe of the same server is refused (exit 3), --tls-from answers
tls=$(mktemp -d /tmp/twig-test-image-tls.XXXXXX)
trap 'cleanup; rm -rf "$tls"' EXIT
ossl() { /usr/bin/openssl "$@" >>"$tls/openssl.log" 2>&1 || fail "openssl $1 (see $tls/openssl.log)"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/ca.key" \
    -out "$tls/ca.pem" -days 2 -subj /CN=twig-test-ca
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/host.key" \
    -out "$tls/host.csr" -subj /CN=localhost
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
    >"$tls/ext.cnf"
ossl x509 -req -in "$tls/host.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext.cnf" -out "$tls/host.pem"
chmod 755 "$tls" && chmod 644 "$tls"/*
cat >"$tls/run.yaml" <<'RUN'
env: Pendulum-v1
tls_ca: /etc/twig/tls/ca.pem
tls_cert: /etc/twig/tls/host.pem
tls_key: /etc/twig/tls/host.key
modelserver:
  listen: "0.0.0.0:7101"
  data_dir: /var/lib/twig/modelserver/log
RUN
mst="$prefix-ms-tls"
"$docker" run -d --name "$mst" -v "$tls:/etc/twig/tls:ro" \
    -e TWIG_HEALTH_ADDR=127.0.0.1:7101 -e TWIG_HEALTH_TLS_FROM=/etc/twig/tls/run.yaml \
    -e OPENBLAS_CORETYPE -e OPENBLAS_L2_SIZE "$tag" \
    twig-modelserver --config /etc/twig/tls/run.yaml >/dev/null || fail "docker run (TLS)"
wait_healthy "$mst" "the TLS model server container"
echo "ok: HEALTHCHECK healthy with TLS (TWIG_HEALTH_TLS_FROM)"
"$docker" logs "$mst" 2>&1 | grep -q "tls=mutual" || fail "the TLS model server does not log tls=mutual"
codes=$("$docker" exec "$mst" sh -c 'twig health 127.0.0.1:7101 --timeout-ms 3000 >/dev/null 2>&1;
    echo $?; twig health 127.0.0.1:7101 --tls-from /etc/twig/tls/run.yaml >/dev/null; echo $?' |
    tr '\n' ' ')
[ "$codes" = "3 0 " ] || fail "TLS: plaintext and --tls-from probes exit '$codes' (expected 3, 0)"
echo "ok: a plaintext probe of the TLS server is refused (3), --tls-from answers (0)"
"$docker" stop -t 20 "$mst" >/dev/null
