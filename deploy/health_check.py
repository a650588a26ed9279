#!/usr/bin/python3
"""health_check.py - ask a twig server whether it is serving (grpc.health.v1.Health/Check).

    deploy/health_check.py [HOST:PORT] [--service NAME] [--timeout SECONDS]
                           [--tls-ca CA --tls-cert CERT --tls-key KEY [--tls-server-name N]]

Exits 0 when the answer is SERVING and 1 otherwise (NOT_SERVING, unknown service, nobody
listening, timeout, a TLS file that cannot be read), printing why on stderr; 2 for bad usage.
A run with TLS (docs/deploy.md, "TLS") needs the run's tls_ca and a certificate it signed:
its plaintext probe is refused (UNAVAILABLE). Usable as a Docker HEALTHCHECK,
    HEALTHCHECK CMD ["/usr/bin/python3", "/opt/twig/health_check.py", "127.0.0.1:50051"]
Needs Debian's python3-grpcio and nothing generated: the two tiny messages of
proto/health.proto are encoded here by hand,
    HealthCheckRequest  { string service = 1; }      -> 0x0a, length, utf-8 bytes
    HealthCheckResponse { ServingStatus status = 1; } -> 0x08, varint (SERVING = 1)
"""
import argparse
import sys

import grpc

CHECK_PATH = "/grpc.health.v1.Health/Check"
SERVING = 1
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(buf, i):
    """(value, next index); ValueError if the buffer ends inside the varint"""
    shift = 0
    value = 0
    while i < len(buf):
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            break
    raise ValueError("truncated or overlong varint")


def encode_request(service):
    s = service.encode("utf-8")
    if not s:
        return b""  # proto3: an empty string is not sent
    return b"\x0a" + encode_varint(len(s)) + s


def decode_status(buf):
    """the status field of a HealthCheckResponse (0 when absent); skips unknown fields"""
    status = 0
    i = 0
    while i < len(buf):
        key, i = decode_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = decode_varint(buf, i)
            if field == 1:
                status = value
        elif wire == 2:
            n, i = decode_varint(buf, i)
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError("wire type %d is not valid" % wire)
        if i > len(buf):
            raise ValueError("field %d runs past the end" % field)
    return status


def channel(addr, tls):
    """a plaintext channel, or a mutual-TLS one when tls = {"tls_ca": path, ...}"""
    if not tls:
        return grpc.insecure_channel(addr)
    pem = {}
    for key in ("tls_ca", "tls_cert", "tls_key"):
        with open(tls[key], "rb") as f:
            pem[key] = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=pem["tls_ca"],
                                         private_key=pem["tls_key"],
                                         certificate_chain=pem["tls_cert"])
    options = []
    if tls.get("tls_server_name"):
        options.append(("grpc.ssl_target_name_override", tls["tls_server_name"]))
    return grpc.secure_channel(addr, creds, options)


def check(addr, service, timeout, tls=None):
    """0 when SERVING, else 1; prints the reason on stderr"""
    try:
        ch = channel(addr, tls)
    except OSError as e:
        print("health_check: %s: %s" % (e.filename, e.strerror), file=sys.stderr)
        return 1
    with ch:
        call = ch.unary_unary(CHECK_PATH)  # bytes in, bytes out
        try:
            reply = call(encode_request(service), timeout=timeout)
        except grpc.RpcError as e:
            print("health_check: %s service=%r: %s: %s"
                  % (addr, service, e.code().name, e.details()), file=sys.stderr)
            return 1
    try:
        status = decode_status(reply)
    except ValueError as e:
        print("health_check: %s: reply did not parse: %s" % (addr, e), file=sys.stderr)
        return 1
    if status != SERVING:
        print("health_check: %s service=%r: %s"
              % (addr, service, STATUS_NAMES.get(status, str(status))), file=sys.stderr)
        return 1
    return 0


def main(argv):
    p = argparse.ArgumentParser(description="exit 0 if the gRPC server at ADDR is SERVING")
    p.add_argument("addr", nargs="?", default="127.0.0.1:50051", help="HOST:PORT")
    p.add_argument("--service", default="", help='service name ("" = whole server)')
    p.add_argument("--timeout", type=float, default=1.0, help="seconds (default 1)")
    for key in ("tls_ca", "tls_cert", "tls_key", "tls_server_name"):
        p.add_argument("--" + key.replace("_", "-"), dest=key, default="",
                       help="the run's %s (TLS: all three files)" % key)
    a = p.parse_args(argv)
    if a.timeout <= 0:
        p.error("--timeout must be positive")
    tls = {k: getattr(a, k) for k in ("tls_ca", "tls_cert", "tls_key", "tls_server_name")}
    given = [k for k in ("tls_ca", "tls_cert", "tls_key") if tls[k]]
    if given and len(given) != 3:
        p.error("TLS needs --tls-ca, --tls-cert and --tls-key (or none of them)")
    if not given and tls["tls_server_name"]:
        p.error("--tls-server-name needs --tls-ca, --tls-cert and --tls-key")
    return check(a.addr, a.service, a.timeout, tls if given else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
