#!/usr/bin/python3
"""check_includes.py SRC_DIR - no #include in the tree points up a layer.

The layers and what each may see are read from common/CMakeLists.txt (the twig_layer(...)
calls: a layer sees itself and its LAYERS), so this check and the build cannot disagree.
A file's layer is its folder: common/LAYER/..., tests/common/LAYER/... (tests mirror the
tree); everything else is a program (actor/, learner/, modelserver/, deploy/), a test or a
benchmark, which may include every layer and its own folder, never another program's.
External headers belong to the layer that links their library: <grpc/...> to rpc alone
(gRPC stays inside common/rpc), <openssl/...> to rpc alone (its TLS checks), <protobuf-c/...>,
<uv.h> and the generated "proto/..." to rpc and what is above it, <mujoco/...> to env (<GL/...>,
OSMesa's, to env alone), <microhttpd.h> to rpc alone, <cblas.h> to nn, <yaml.h> to config.
Prints every violation as FILE:LINE: what, and exits 1 if there is one."""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
PROGRAMS = ("actor", "learner", "modelserver", "deploy")
EXTERNAL = (("grpc/", "rpc", True), ("openssl/", "rpc", True), ("protobuf-c/", "rpc", False),
            ("proto/", "rpc", False), ("uv.h", "rpc", False), ("mujoco/", "env", False),
            ("GL/", "env", True), ("microhttpd.h", "rpc", True), ("cblas.h", "nn", False),
            ("yaml.h", "config", False))


def read_layers(src):
    text = open(os.path.join(src, "common", "CMakeLists.txt")).read()
    layers = {}
    for m in re.finditer(r'^twig_layer\(([^)]*)\)', text, re.M):
        words = m.group(1).split()
        deps, mode = [], None
        for w in words[1:]:
            if w in ("SOURCES", "LAYERS", "LIBS"):
                mode = w
            elif mode == "LAYERS":
                deps.append(w)
        layers[words[0]] = set(deps) | {words[0]}
    if not layers:
        sys.exit(f"{src}/common/CMakeLists.txt: no twig_layer(...) calls found")
    return layers


def file_layer(rel, layers):
    """(layer, program): layer is a common layer or None for the top; program its folder"""
    parts = rel.split("/")
    if parts[0] == "common" and len(parts) > 2 and parts[1] in layers:
        return parts[1], None
    if parts[:2] == ["tests", "common"] and len(parts) > 3 and parts[2] in layers:
        return parts[2], None
    if parts[0] in PROGRAMS:
        return None, parts[0]
    if parts[0] == "tests" and len(parts) > 2 and parts[1] in PROGRAMS:
        return None, parts[1]
    return None, "*"   # other tests, benchmarks: any layer, any program


def check(rel, lineno, quote, inc, layers, problems):
    layer, program = file_layer(rel, layers)
    sees = layers[layer] if layer else set(layers)
    where = f"{rel}:{lineno}"
    for prefix, owner, private in EXTERNAL:
        if inc == prefix or (prefix.endswith("/") and inc.startswith(prefix)):
            if private and layer != owner:
                problems.append(f"{where}: <{inc}> outside common/{owner}")
            elif owner not in sees:
                problems.append(f"{where}: {inc} belongs to layer {owner}, above {layer}")
            return
    if quote != '"':
        return
    parts = inc.split("/")
    if parts[0] == "common" and len(parts) > 2:
        if parts[1] not in layers:
            problems.append(f"{where}: {inc}: no layer {parts[1]}")
        elif parts[1] not in sees:
            problems.append(f"{where}: {inc} is layer {parts[1]}, not below {layer}")
    elif parts[:2] == ["tests", "common"] and len(parts) > 3 and parts[2] in layers:
        if parts[2] not in sees:
            problems.append(f"{where}: {inc} is layer {parts[2]}, not below {layer}")
    elif parts[0] in PROGRAMS:
        if layer:
            problems.append(f"{where}: {inc} is a program's header, above layer {layer}")
        elif program not in ("*", parts[0]):
            problems.append(f"{where}: {inc} is another program's header ({parts[0]})")
    elif parts[0] == "tests" and layer and inc not in ("tests/procfix.h", "tests/tlsfix.h"):
        # procfix.h and tlsfix.h (certificates by the openssl CLI) serve tests of every layer
        problems.append(f"{where}: {inc} is test support above layer {layer}")


def main():
    if len(sys.argv) != 2 or not os.path.isdir(os.path.join(sys.argv[1], "common")):
        sys.exit("usage: check_includes.py SRC_DIR (the twig source tree)")
    src = os.path.abspath(sys.argv[1])
    layers = read_layers(src)
    problems, n_files = [], 0
    for top in ("common", "actor", "learner", "modelserver", "deploy", "tests", "bench"):
        for dirpath, _, names in os.walk(os.path.join(src, top)):
            for name in sorted(names):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, src)
                n_files += 1
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if m:
                            check(rel, lineno, m.group(1), m.group(2), layers, problems)
    for p in problems:
        print(p)
    print(f"check_includes: {n_files} files, layers "
          + ", ".join(f"{k} (sees {' '.join(sorted(v - {k})) or 'nothing'})"
                      for k, v in layers.items())
          + f": {len(problems)} include(s) pointing up")
    return 1 if problems else 0


sys.exit(main())
