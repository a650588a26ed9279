#!/bin/sh
# Build the twig image (docs/deploy.md, "Image"): `make image`, or
#   sh deploy/image/build.sh [BUILD_DIR] [TAG]        (defaults: build, twig:latest)
#
# 1. The base: twig-base:bookworm, a `debootstrap --variant=minbase bookworm` tree imported
#    with `docker import` (there is no registry). The debootstrap tarball is kept in the cache
#    dir and the base image in the daemon; each is made again only when missing.
# 2. The runtime packages: ldd of the five release binaries in BUILD_DIR, each library mapped
#    to its Debian package with dpkg -S (the host is Debian 12, as the base is).
# 3. docker build of deploy/image/Dockerfile with the binaries staged in its context.
#
# Environment: TWIG_IMAGE_CACHE (the tarball's dir; default BUILD_DIR/image-cache),
# TWIG_IMAGE_BASE (the base tag; default twig-base:bookworm), TWIG_IMAGE_NO_CACHE=1 (docker
# build --no-cache: the runtime packages installed again), DOCKER_HOST (the daemon).
# Needs root (debootstrap) only when the tarball is missing, and a daemon that answers.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
tag=${2:-twig:latest}
base=${TWIG_IMAGE_BASE:-twig-base:bookworm}
cache=${TWIG_IMAGE_CACHE:-$build/image-cache}
docker=/usr/bin/docker
bins="deploy/twig actor/twig-actor modelserver/twig-modelserver modelserver/twig-rollout
 learner/twig-learner"

say() { echo "image: $*"; }
die() {
    echo "image: $*" >&2
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t_start=$(now)
[ -x "$docker" ] || die "$docker is missing (sh deploy/install-deps.sh deploy)"
for b in $bins; do
    [ -x "$build/$b" ] || die "$build/$b is missing: build first (make build, or BUILD_DIR)"
done
"$docker" info >/dev/null 2>&1 ||
    die "no Docker daemon answers at ${DOCKER_HOST:-the default socket} (start one: \
sh deploy/image/dockerd.sh start DIR, then DOCKER_HOST=unix://DIR/docker.sock)"

# the mirror: the URIs of the machine's apt sources for bookworm (deb822 first, then one-line)
mirror_of_host() {
    f=/etc/apt/sources.list.d/debian.sources
    if [ -r "$f" ]; then
        awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ { if (u) { print u; exit } }
             /^$/ { u = "" }' "$f"
        return
    fi
    f=/etc/apt/sources.list
    [ -r "$f" ] && awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' "$f"
}

# 1. the base
tarball="$cache/bookworm-minbase.tar"
if "$docker" image inspect "$base" >/dev/null 2>&1; then
    say "base $base: cached in the daemon"
else
    if [ -s "$tarball" ]; then
        say "base tarball: cached ($tarball)"
    else
        [ "$(id -u)" -eq 0 ] || die "making the base needs root (debootstrap); run as root"
        command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ||
            die "debootstrap is missing (sh deploy/install-deps.sh deploy)"
        mirror=$(mirror_of_host)
        [ -n "$mirror" ] || die "no bookworm mirror in /etc/apt/sources.list.d/debian.sources \
or /etc/apt/sources.list"
        mkdir -p "$cache"
        root="$cache/rootfs.tmp"
        rm -rf "$root" "$tarball.tmp"
        t=$(now)
        say "debootstrap --variant=minbase bookworm from $mirror"
        /usr/sbin/debootstrap --variant=minbase bookworm "$root" "$mirror" \
            >"$cache/debootstrap.log" 2>&1 || die "debootstrap failed (see $cache/debootstrap.log)"
        # the host's apt sources (bookworm, -updates, -security): the same library versions
        if [ -r /etc/apt/sources.list.d/debian.sources ]; then
            cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
            rm -f "$root/etc/apt/sources.list"
        fi
        rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
        tar -C "$root" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
        say "base tarball: made in $(since "$t") s ($tarball)"
    fi
    t=$(now)
    "$docker" import "$tarball" "$base" >/dev/null || die "docker import of $tarball failed"
    say "base $base: imported in $(since "$t") s"
fi

# 2. the runtime packages: every library the binaries link, by its package. Each library is
# looked up by its path, its resolved path and the other side of the merged /usr, in one dpkg
# query (one per library would take minutes)
libs=$(for b in $bins; do ldd "$build/$b"; done |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
cands=""
for lib in $libs; do
    for path in "$lib" "$(readlink -f "$lib")"; do
        case "$path" in
            /usr/*) cands="$cands $path ${path#/usr}" ;;
            *) cands="$cands $path /usr$path" ;;
        esac
    done
done
# shellcheck disable=SC2086
owners=$(dpkg -S $cands 2>/dev/null || true)   # "pkg[:arch]: path" for the paths dpkg knows
pkgs=""
for lib in $libs; do
    real=$(readlink -f "$lib")
    p=$(echo "$owners" | awk -v a="$lib" -v b="$real" '
        { path = $NF; pkg = $1; sub(/:$/, "", pkg); sub(/:.*/, "", pkg) }
        path == a || path == b || path == "/usr" a || path == "/usr" b ||
        "/usr" path == a || "/usr" path == b { print pkg; exit }')
    [ -n "$p" ] || die "no Debian package owns $lib (linked by the binaries in $build)"
    case " $pkgs " in
        *" $p "*) ;;
        *) pkgs="$pkgs $p" ;;
    esac
done
pkgs=$(echo $pkgs | tr ' ' '\n' | sort | tr '\n' ' ')
say "runtime packages (from ldd of $(echo $libs | wc -w) libraries): $pkgs"

# 3. the image
ctx="$build/image-context"
rm -rf "$ctx"
mkdir -p "$ctx/bin"
cp "$here/Dockerfile" "$ctx/"
for b in $bins; do
    cp "$build/$b" "$ctx/bin/"
done
t=$(now)
nocache=""
[ "${TWIG_IMAGE_NO_CACHE:-0}" = 1 ] && nocache=--no-cache
"$docker" build $nocache --build-arg "BASE=$base" --build-arg "RUNTIME_PKGS=$pkgs" -t "$tag" "$ctx" \
    >"$build/image-build.log" 2>&1 || {
    tail -n 30 "$build/image-build.log" >&2
    die "docker build failed (log: $build/image-build.log)"
}
rm -rf "$ctx"
size=$("$docker" image inspect -f '{{.Size}}' "$tag")
say "built $tag in $(since "$t") s (total $(since "$t_start") s), $((size / 1000000)) MB"
