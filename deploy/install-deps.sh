#!/bin/sh
# Install the Debian packages twig needs to build, test and run.
# Idempotent: asks dpkg which packages are missing, runs `apt-get update` only when
# something is missing, installs only those, and says what it installs.
# It changes no machine setting (OPENBLAS_CORETYPE and friends are left alone).
#
# usage: deploy/install-deps.sh [build|test|bench|deploy|all]   (default: test)
set -eu

# libosmesa6-dev: offscreen rendering for `twig eval --video` (optional to the build: without
# it twig builds and --video says it is unavailable); ffmpeg encodes the video and its ffprobe
# checks it in test_twig_eval; python3-kubernetes (the Kubernetes 1.22 API models) and
# python3-yaml validate deploy/k8s offline in test_k8s (deploy/k8s/validate.py);
# libmicrohttpd-dev serves every process's GET /metrics, and prometheus (its promtool checks
# the text, its server scrapes a run in test_metrics_run); libssl-dev checks the TLS files at
# start (common/rpc/rpc_tls.c), and the openssl CLI makes the tests' CA and certificates
# (test_rpc_tls, test_tls_run)
build_pkgs="build-essential cmake pkg-config libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
 libuv1-dev libopenblas-dev libmujoco-dev libyaml-dev gnuplot-nox libosmesa6-dev
 libmicrohttpd-dev libssl-dev"
test_pkgs="libcriterion-dev python3 python3-grpcio python3-protobuf python3-numpy protobuf-compiler
 ffmpeg python3-kubernetes python3-yaml prometheus openssl"
bench_pkgs="python3-torch"
# deploy: `make image` and `make test-deploy` (docs/deploy.md): Debian's Docker daemon and CLI
# (/usr/bin/docker, /usr/bin/dockerd) and debootstrap for the image's base; iproute2 and
# iptables for test_netns_hosts (network namespaces on a bridge as three hosts)
deploy_pkgs="docker.io debootstrap iproute2 iptables"

case "${1:-test}" in
    build) want="$build_pkgs" ;;
    test) want="$build_pkgs $test_pkgs" ;;
    bench) want="$build_pkgs $test_pkgs $bench_pkgs" ;;
    deploy) want="$build_pkgs $test_pkgs $deploy_pkgs" ;;
    all) want="$build_pkgs $test_pkgs $bench_pkgs $deploy_pkgs" ;;
    *)
        echo "install-deps: unknown set '$1' (expected build, test, bench, deploy or all)" >&2
        exit 2
        ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages:$missing" >&2
    echo "install-deps: run as root (or: sudo apt-get install$missing)" >&2
    exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive

# Packages with a service (prometheus) start it from their postinst through invoke-rc.d or
# deb-systemd-invoke; both ask /usr/sbin/policy-rc.d first, and 101 means "do not start".
# Without one (a plain machine, a container without systemd) a service would be left
# listening (prometheus on :9090): deny starts for this install, then remove the denial.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# install-deps.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing

# and none at the next boot either: the tests run their own prometheus
case " $missing " in
    *" prometheus "*)
        if command -v deb-systemd-helper >/dev/null 2>&1; then
            deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
        fi
        if [ -x /etc/init.d/prometheus ] && command -v update-rc.d >/dev/null 2>&1; then
            update-rc.d prometheus disable >/dev/null 2>&1 || true
        fi
        ;;
esac
