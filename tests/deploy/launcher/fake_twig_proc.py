"""A stand-in for twig-modelserver, twig-learner and twig-actor in tests of `twig run`.

Run as: python3 fake_twig_proc.py ROLE_PATH ARGS... (ROLE_PATH ends in twig-<role>).
With --print-config it prints a line and exits 0. Otherwise it serves, on the address of
its `--set <section>.listen=HOST:PORT`, the health check and what the launcher's monitor
polls, as if the run had reached its budget: the model server's log holds REAL_STEPS
transitions and the learner holds one evaluation at REAL_STEPS. With FAKE_EVALS=restart the
learner first holds evaluations at 300 and 500 steps, then, as if restarted from an older
checkpoint, only the one at REAL_STEPS; with FAKE_EVALS=none it never holds one; like twig-learner it refuses a from_index past the
end with INVALID_ARGUMENT. Replies are encoded by hand
(field numbers from proto/twig.proto and proto/health.proto) with deploy/health_check.py's
varint helpers. It runs until SIGTERM.
"""
import os
import signal
import struct
import sys
import threading
from concurrent import futures

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "..", "deploy"))
from health_check import decode_varint, encode_varint as varint  # noqa: E402

REAL_STEPS = 1000


def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_float(field, x):
    return varint((field << 3) | 5) + struct.pack("<f", x)


def f_double(field, x):
    return varint((field << 3) | 1) + struct.pack("<d", x)


def f_bytes(field, b):
    return varint((field << 3) | 2) + varint(len(b)) + b


def health(req, ctx):
    return f_varint(1, 1)  # SERVING


def log_status(req, ctx):
    return f_varint(1, REAL_STEPS)


def get_stats(req, ctx):
    entry = f_bytes(1, b"model_holdout_loss") + f_double(2, 0.5)
    return f_bytes(3, entry)


def get_progress(req, ctx):
    return (f_varint(1, 20000) + f_varint(2, REAL_STEPS) + f_varint(3, 400000) +
            f_varint(4, 7) + f_varint(5, 3) + f_float(8, 20.0))


def eval_result(real_steps, seq):
    return (f_bytes(1, b"actor-0") + f_varint(2, real_steps) + f_varint(3, 7) +
            f_varint(4, 10) + f_float(5, -150.5) + f_float(6, 12.25) + f_varint(7, seq))


get_evals_calls = [0]


def get_evals(req, ctx):
    from_index = decode_varint(req, 1)[0] if len(req) >= 2 and req[0] == 0x08 else 0
    get_evals_calls[0] += 1
    # seq is the evaluation point (a multiple of eval_every, or init_steps), as actors send it
    held = [eval_result(REAL_STEPS, REAL_STEPS)]
    if os.environ.get("FAKE_EVALS") == "none":
        held = []
    if os.environ.get("FAKE_EVALS") == "restart" and get_evals_calls[0] == 1:
        held = [eval_result(300, 300), eval_result(500, 500)]
    if from_index > len(held):
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT,
                  "from_index is %d, only %d evaluations exist" % (from_index, len(held)))
    return b"".join(f_bytes(1, e) for e in held[from_index:]) + f_varint(2, len(held))


def main():
    role = os.path.basename(sys.argv[1]).replace("twig-", "")
    args = sys.argv[2:]
    if "--print-config" in args:
        print("fake: %s" % role)
        return 0
    addr = None
    for i, a in enumerate(args[:-1]):
        if a == "--set" and args[i + 1].split("=", 1)[0].endswith(".listen"):
            addr = args[i + 1].split("=", 1)[1]
    methods = {"/grpc.health.v1.Health/Check": health}
    if role == "modelserver":
        methods["/twig.v1.ModelServer/LogStatus"] = log_status
        methods["/twig.v1.Stats/GetStats"] = get_stats
    elif role == "learner":
        methods["/twig.v1.Learner/GetProgress"] = get_progress
        methods["/twig.v1.Learner/GetEvals"] = get_evals
    by_service = {}
    for path, fn in methods.items():
        service, method = path[1:].split("/")
        by_service.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(fn)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         options=[("grpc.so_reuseport", 0)])
    for service, handlers in by_service.items():
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    if server.add_insecure_port(addr) == 0:
        print("fake %s: cannot listen on %s" % (role, addr), file=sys.stderr)
        return 1
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    stop.wait(120)
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
