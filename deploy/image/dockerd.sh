#!/bin/sh
# A Docker daemon for the `deploy` tests (ctest fixture "dockerd"; docs/deploy.md) and for
# `make image` on a machine where none runs.
#
#   sh deploy/image/dockerd.sh start STATE_DIR   use the daemon that answers, or start one
#   sh deploy/image/dockerd.sh stop STATE_DIR    stop it, only if `start` started it
#
# start: installs the deploy packages when docker.io is missing (deploy/install-deps.sh deploy).
# Then, when `docker info` answers (DOCKER_HOST, or the default socket) that daemon is used and
# never stopped. Otherwise Debian's /usr/sbin/dockerd starts with --storage-driver=vfs and its
# own socket, pid file, data-root and exec-root under STATE_DIR (nothing shared with another
# daemon), and `docker info` is polled until it answers (deadline DOCKERD_START_S, 60 s).
# Either way STATE_DIR/docker-host holds the DOCKER_HOST to use. A daemon this script started
# and left running (STATE_DIR/started) is used again by the next start.
# stop: SIGTERM to the pid in STATE_DIR/dockerd.pid, SIGKILL after DOCKERD_STOP_S (30 s);
# data-root is kept (the images are the warm cache of the next build; `make clean` drops it).
set -eu

docker=/usr/bin/docker
dockerd=/usr/sbin/dockerd
[ -x "$dockerd" ] || dockerd=/usr/bin/dockerd

usage() {
    echo "usage: dockerd.sh start|stop STATE_DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
state=$2
case "$state" in
    /*) ;;
    *) state="$(pwd)/$state" ;;
esac
sock="$state/docker.sock"
pidf="$state/dockerd.pid"

# answers docker info within the client's own timeout? $1: DOCKER_HOST ("" for the default)
answers() {
    if [ -n "$1" ]; then
        DOCKER_HOST="$1" timeout 10 "$docker" info >/dev/null 2>&1
    else
        (unset DOCKER_HOST; timeout 10 "$docker" info >/dev/null 2>&1)
    fi
}

alive() { [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }

start() {
    if [ ! -x "$docker" ] || [ ! -x "$dockerd" ]; then
        # Debian's docker.io (and the rest of the deploy set) when missing: needs root
        sh "$(dirname "$0")/../install-deps.sh" deploy
        [ -x /usr/sbin/dockerd ] && dockerd=/usr/sbin/dockerd
    fi
    [ -x "$docker" ] || { echo "dockerd.sh: $docker missing (sh deploy/install-deps.sh deploy)" >&2; exit 1; }
    mkdir -p "$state"
    if [ -f "$state/started" ] && alive && answers "unix://$sock"; then
        echo "unix://$sock" >"$state/docker-host"
        echo "dockerd.sh: using the daemon started earlier (pid $(cat "$pidf"))"
        return
    fi
    rm -f "$state/started"
    if answers "${DOCKER_HOST:-}"; then
        echo "${DOCKER_HOST:-unix:///var/run/docker.sock}" >"$state/docker-host"
        echo "dockerd.sh: using the running daemon at $(cat "$state/docker-host")"
        return
    fi
    [ -x "$dockerd" ] || { echo "dockerd.sh: dockerd missing (sh deploy/install-deps.sh deploy)" >&2; exit 1; }
    [ "$(id -u)" -eq 0 ] || { echo "dockerd.sh: starting dockerd needs root" >&2; exit 1; }
    rm -f "$sock" "$pidf"
    mkdir -p "$state/data" "$state/exec"
    "$dockerd" --storage-driver=vfs -H "unix://$sock" --pidfile "$pidf" \
        --data-root "$state/data" --exec-root "$state/exec" >"$state/dockerd.log" 2>&1 &
    pid=$!
    touch "$state/started"
    end=$(($(date +%s) + ${DOCKERD_START_S:-60}))
    while ! answers "unix://$sock"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$state/started"
            echo "dockerd.sh: dockerd exited at start; its log:" >&2
            tail -n 20 "$state/dockerd.log" >&2
            exit 1
        fi
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "dockerd.sh: docker info does not answer after ${DOCKERD_START_S:-60} s" >&2
            kill "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
    echo "unix://$sock" >"$state/docker-host"
    echo "dockerd.sh: started dockerd pid $pid (unix://$sock, data-root $state/data)"
}

stop() {
    if [ ! -f "$state/started" ]; then
        echo "dockerd.sh: not started by this script; left alone"
        return
    fi
    if alive; then
        pid=$(cat "$pidf")
        kill -TERM "$pid"
        end=$(($(date +%s) + ${DOCKERD_STOP_S:-30}))
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$(date +%s)" -ge "$end" ]; then
                echo "dockerd.sh: dockerd $pid still running after ${DOCKERD_STOP_S:-30} s: SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
        echo "dockerd.sh: stopped dockerd pid $pid"
    fi
    rm -f "$state/started" "$state/docker-host" "$sock"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
