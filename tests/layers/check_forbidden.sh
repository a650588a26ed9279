#!/bin/sh
# check_forbidden.sh BUILD_DIR LAYER|HEADER|bad-or-good|TARGET ...
# Builds each target (tests/layers/CMakeLists.txt): a "bad" one (a header its layer does not
# declare) must fail with "No such file", a "good" one must build. Prints one line a case;
# exit 1 if any case is wrong.
set -u
build=$1
shift
fail=0
out=$(mktemp)
for case in "$@"; do
    layer=${case%%|*}; rest=${case#*|}
    header=${rest%%|*}; rest=${rest#*|}
    kind=${rest%%|*}; target=${rest#*|}
    if cmake --build "$build" --target "$target" >"$out" 2>&1; then
        built=yes
    else
        built=no
    fi
    if [ "$kind" = bad ]; then
        if [ $built = no ] && grep -q "No such file" "$out"; then
            echo "ok: layer $layer cannot include $header"
        else
            echo "FAIL: layer $layer can include $header (built: $built)"; cat "$out"; fail=1
        fi
    else
        if [ $built = yes ]; then
            echo "ok: layer $layer includes $header"
        else
            echo "FAIL: layer $layer cannot include $header, its own or below:"; cat "$out"
            fail=1
        fi
    fi
done
rm -f "$out"
exit $fail
