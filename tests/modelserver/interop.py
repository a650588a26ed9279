#!/usr/bin/python3
"""Interop check: Debian's python3-grpcio talks to the C twig-modelserver using proto/*.proto.

Run by tests/modelserver/test_modelserver.c against a server it started (empty log):
    /usr/bin/python3 interop.py --proto-dir proto --addr 127.0.0.1:PORT --work-dir TMP
The _pb2 modules are generated into TMP with protoc at run time; nothing generated is kept.
Exits 0 when every check passed, 1 (with the reason on stderr) otherwise.
"""
import argparse
import math
import os
import subprocess
import sys


def fail(msg):
    print("interop: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--work-dir", required=True)
    a = ap.parse_args()

    out = os.path.join(a.work_dir, "pygen")
    os.makedirs(out, exist_ok=True)
    subprocess.run(["protoc", "--python_out=" + out, "-I" + a.proto_dir, "twig.proto",
                    "health.proto"], check=True)
    sys.path.insert(0, out)
    import grpc
    import health_pb2
    import twig_pb2

    ch = grpc.insecure_channel(a.addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    check = ch.unary_unary("/grpc.health.v1.Health/Check",
                           request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                           response_deserializer=health_pb2.HealthCheckResponse.FromString)
    append = ch.unary_unary("/twig.v1.ModelServer/AppendReal",
                            request_serializer=twig_pb2.TransitionBatch.SerializeToString,
                            response_deserializer=twig_pb2.AppendRealReply.FromString)
    fetch = ch.unary_unary("/twig.v1.ModelServer/FetchReal",
                           request_serializer=twig_pb2.FetchRealRequest.SerializeToString,
                           response_deserializer=twig_pb2.FetchRealReply.FromString)

    # health: "" and the service are SERVING, an unknown name is NOT_FOUND
    for svc in ("", "twig.v1.ModelServer"):
        r = check(health_pb2.HealthCheckRequest(service=svc), timeout=5, wait_for_ready=True)
        if r.status != health_pb2.HealthCheckResponse.SERVING:
            fail("health of %r is %d" % (svc, r.status))
    try:
        check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5)
        fail("unknown service did not fail")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            fail("unknown service gave %s" % e.code())

    # append two transitions, then a retry of the same (source_id, seq)
    b = twig_pb2.TransitionBatch(
        env_id="Pendulum-v1", obs_dim=3, act_dim=1, count=2,
        obs=[0.5, -1.25, 3.0, 1.0, 2.0, 3.0], act=[0.25, -0.75], reward=[-1.5, 2.0],
        next_obs=[0.75, -1.0, 2.5, 1.5, 2.5, 3.5], terminated=[False, True],
        truncated=[False, False], source_id="python-actor", seq=1)
    r = append(b, timeout=5)
    if (r.first_offset, r.count, r.duplicate, r.seq) != (0, 2, False, 1):
        fail("append reply %s" % r)
    r = append(b, timeout=5)
    if (r.first_offset, r.count, r.duplicate) != (0, 2, True):
        fail("retry reply %s" % r)

    # bad batches are INVALID_ARGUMENT with the field named
    bad = twig_pb2.TransitionBatch()
    bad.CopyFrom(b)
    bad.seq = 2
    bad.reward[1] = math.nan
    try:
        append(bad, timeout=5)
        fail("NaN reward accepted")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.INVALID_ARGUMENT or "reward[1]" not in e.details():
            fail("NaN reward gave %s %s" % (e.code(), e.details()))
    raw = ch.unary_unary("/twig.v1.ModelServer/AppendReal")
    try:
        raw(b"\xff\xff\xff\xff\x0f", timeout=5)
        fail("garbage accepted")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
            fail("garbage gave %s" % e.code())

    # the numbers come back exactly
    f = fetch(twig_pb2.FetchRealRequest(from_offset=0, max_count=10), timeout=5)
    if f.batch.count != 2 or list(f.batch.obs) != list(b.obs) or \
            list(f.batch.reward) != list(b.reward) or list(f.batch.terminated) != [False, True]:
        fail("fetch reply %s" % f)
    f = fetch(twig_pb2.FetchRealRequest(from_offset=2, max_count=10), timeout=5)
    if f.HasField("batch") or f.empty_reason != twig_pb2.EMPTY_REASON_AT_END:
        fail("fetch at end %s" % f)
    ch.close()
    print("interop: ok")


if __name__ == "__main__":
    main()
