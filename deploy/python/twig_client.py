#!/usr/bin/python3
"""twig_client.py - read a live twig run from Python: status, evaluations, the current policy.

    python3 twig_client.py status --learner HOST:PORT --modelserver HOST:PORT
    python3 twig_client.py status --run-dir RUN           # addresses from RUN/config.yaml
    python3 twig_client.py evals  --learner HOST:PORT [--from N]
    python3 twig_client.py policy --learner HOST:PORT     # version, tensors and their shapes
    python3 twig_client.py act    --learner HOST:PORT --obs 0.5,-0.2,1.0 [--obs ...]
    python3 twig_client.py bounds ENV_ID                  # the action bounds act() scales to
    python3 twig_client.py status --run-dir RUN --tls-ca ca.pem --tls-cert me.pem --tls-key me.key
                                      # a run with TLS (a run dir's own tls_* keys are used too)

As a module (docs/python.md has every call with an example):

    import twig_client as tc
    learner = tc.Learner("127.0.0.1:7102")
    print(learner.progress().real_steps, learner.stats()["sac_updates"])
    for e in learner.evals():
        print(e.real_steps, e.return_mean)
    pol = learner.policy()                       # tc.Policy: numpy tensors + act()
    a = pol.act(obs)                             # deterministic action in env units
    ms = tc.ModelServer("127.0.0.1:7101")
    print(ms.log_status().end_offset)
    tls = tc.Tls("ca.pem", "me.pem", "me.key")  # a run with tls_ca/tls_cert/tls_key
    learner = tc.Learner("10.0.0.5:7102", tls=tls)

Needs Debian's python3-grpcio, python3-protobuf and python3-numpy, and the message classes
protoc generates from proto/*.proto (twig_pb2.py, health_pb2.py). The build makes them in
build/gen/python (proto/CMakeLists.txt); they are found through $TWIG_PY_GEN, or the
build/gen/python next to this source tree, or made by hand with
    protoc --python_out=DIR -I proto proto/twig.proto proto/health.proto
Methods are called by their path with grpc's generic unary_unary, so no grpc plugin is needed.

The output of the script is one `key=value ...` line per record, so shell tools and tests can
read it. Exit status: 0, 1 when a call failed (the reason on stderr), 2 for bad usage
(a missing TLS file too).
"""
import argparse
import os
import sys

import grpc
import numpy as np

MAX_MESSAGE = 256 << 20   # weight blobs of large models are big; twig's own limit is lower
DEFAULT_TIMEOUT = 5.0     # seconds per call


# ---- the generated message classes ----------------------------------------------------------

def _load_messages():
    """import twig_pb2 and health_pb2 from $TWIG_PY_GEN or <source tree>/build/gen/python"""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.environ.get("TWIG_PY_GEN", ""),
            os.path.join(here, "..", "..", "build", "gen", "python")]
    for d in dirs:
        if d and os.path.isfile(os.path.join(d, "twig_pb2.py")):
            if d not in sys.path:
                sys.path.insert(0, d)
            break
    try:
        import health_pb2
        import twig_pb2
    except ImportError as e:
        raise ImportError("twig_client: twig_pb2 / health_pb2 not found (%s): build twig "
                          "(they land in build/gen/python), set TWIG_PY_GEN to their "
                          "directory, or run: protoc --python_out=DIR -I proto "
                          "proto/twig.proto proto/health.proto" % e) from e
    return twig_pb2, health_pb2


pb, health_pb = _load_messages()


# ---- action bounds --------------------------------------------------------------------------

# (n_act, bound): every built-in task's actions lie in [-bound, bound] per dimension
# (common/env/tasks/pendulum.c, the ctrlrange of common/env/assets/*.xml). The weights do not
# carry them; tests/deploy/test_python_client.c checks this table against the C envs.
ENV_ACTION_BOUNDS = {
    "Pendulum-v1": (1, 2.0),
    "InvertedPendulum-v4": (1, 3.0),
    "HalfCheetah-v4": (6, 1.0),
    "Hopper-v4": (3, 1.0),
    "Walker2d-v4": (6, 1.0),
    "Ant-v4": (8, 1.0),
    "Humanoid-v4": (17, 0.4),
}


def action_bounds(env_id):
    """(act_low, act_high) as float32 arrays for a built-in env id; KeyError otherwise"""
    if env_id not in ENV_ACTION_BOUNDS:
        raise KeyError("no built-in action bounds for env %r: pass act_low/act_high" % env_id)
    n, b = ENV_ACTION_BOUNDS[env_id]
    return np.full(n, -b, dtype=np.float32), np.full(n, b, dtype=np.float32)


# ---- the policy -----------------------------------------------------------------------------

def crc32c(data):
    """CRC-32C (Castagnoli), the checksum of WeightBlob.data (common/base/crc32c.c)"""
    table = _crc32c_table()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_CRC_TABLE = []


def _crc32c_table():
    if not _CRC_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC_TABLE.append(c)
    return _CRC_TABLE


def blob_tensors(blob, check_crc=True):
    """{name: float32 numpy array of its shape} from a WeightBlob (little-endian float32
    tensors back to back in blob.data, each at its byte offset). Copies; ValueError when the
    checksum or a tensor's extent is wrong."""
    data = bytes(blob.data)
    if check_crc and crc32c(data) != blob.crc32c:
        raise ValueError("weight blob: data checksum %08x, blob says %08x"
                         % (crc32c(data), blob.crc32c))
    out = {}
    for t in blob.tensors:
        shape = tuple(int(d) for d in t.shape)
        n = int(np.prod(shape)) if shape else 0
        end = t.offset + 4 * n
        if t.offset % 4 or end > len(data):
            raise ValueError("weight blob: tensor %s at offset %d overruns data of %d bytes"
                             % (t.name, t.offset, len(data)))
        out[t.name] = np.frombuffer(data, dtype="<f4", count=n,
                                    offset=t.offset).reshape(shape).astype(np.float32)
    return out


def mlp_forward(layers, x):
    """y = the MLP of common/nn/nn_mlp.c: h = relu(h @ W + b) on every layer but the last,
    which is linear. layers: [(W (in, out), b (out))...]; x: (B, in) float32"""
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, np.float32(0.0))
    return h


def policy_act(layers, obs, act_low, act_high):
    """the deterministic action of common/nn/policy.c (policy_act with deterministic true):
    out = mlp(obs) is (B, 2A) = [mu, log_std]; unit = tanh(mu) (log_std is unused);
    act = low + (unit + 1) (high - low) / 2, in float32 like the C code"""
    out = mlp_forward(layers, obs)
    n_act = act_low.shape[0]
    unit = np.tanh(out[:, :n_act])
    return act_low + (unit + np.float32(1.0)) * np.float32(0.5) * (act_high - act_low)


class Policy:
    """a policy WeightBlob as numpy: version, env_id, tensors {"actor.w0": (O, H), ...},
    layers [(W, b)...] in order, and act(obs)."""

    PREFIX = "actor"   # POLICY_BLOB_PREFIX, common/rpc/policy_blob.h

    def __init__(self, blob, act_low=None, act_high=None):
        if blob.kind != pb.WEIGHT_KIND_POLICY:
            raise ValueError("weight blob kind is %d, not POLICY" % blob.kind)
        self.version = blob.version
        self.env_id = blob.env_id
        self.tensors = blob_tensors(blob)
        self.layers = []
        while "%s.w%d" % (self.PREFIX, len(self.layers)) in self.tensors:
            i = len(self.layers)
            self.layers.append((self.tensors["%s.w%d" % (self.PREFIX, i)],
                                self.tensors["%s.b%d" % (self.PREFIX, i)]))
        if not self.layers:
            raise ValueError("policy blob has no %s.w0" % self.PREFIX)
        self.n_obs = self.layers[0][0].shape[0]
        self.n_act = self.layers[-1][0].shape[1] // 2
        if act_low is None or act_high is None:
            act_low, act_high = action_bounds(self.env_id)
        self.act_low = np.asarray(act_low, dtype=np.float32).reshape(-1)
        self.act_high = np.asarray(act_high, dtype=np.float32).reshape(-1)
        if self.act_low.shape != (self.n_act,) or self.act_high.shape != (self.n_act,):
            raise ValueError("bounds have %d / %d values, the policy acts in %d dimensions"
                             % (self.act_low.size, self.act_high.size, self.n_act))

    def act(self, obs):
        """deterministic actions in env units: (n_obs) -> (n_act), (B, n_obs) -> (B, n_act)"""
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        x = x.reshape(-1, self.n_obs)
        a = policy_act(self.layers, x, self.act_low, self.act_high)
        return a[0] if single else a


# ---- the servers ----------------------------------------------------------------------------

class Tls:
    """the TLS files of a run (its keys tls_ca, tls_cert, tls_key, tls_server_name): mutual
    TLS, so all three files are needed; server_name, when set, is the name the servers'
    certificates must carry instead of the host dialled. The files are read here: a missing
    one raises OSError naming it."""

    def __init__(self, ca, cert, key, server_name=""):
        given = {"tls_ca": ca, "tls_cert": cert, "tls_key": key}
        missing = [k for k, v in given.items() if not v]
        if missing:
            raise ValueError("TLS needs tls_ca, tls_cert and tls_key: %s not given"
                             % ", ".join(missing))
        self.server_name = server_name or ""
        self._pem = {}
        for k, path in given.items():
            try:
                with open(path, "rb") as f:
                    self._pem[k] = f.read()
            except OSError as e:
                raise OSError("%s '%s': %s" % (k, path, e.strerror or e)) from e

    def credentials(self):
        return grpc.ssl_channel_credentials(root_certificates=self._pem["tls_ca"],
                                            private_key=self._pem["tls_key"],
                                            certificate_chain=self._pem["tls_cert"])

    def options(self):
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


class _Server:
    """one channel and its calls, each by path: (request class, reply class); tls: a Tls for
    a run with TLS, None for plaintext"""

    METHODS = {
        "health": ("/grpc.health.v1.Health/Check", "HealthCheckRequest", "HealthCheckResponse"),
        "stats": ("/twig.v1.Stats/GetStats", "StatsRequest", "StatsReply"),
    }

    def __init__(self, addr, timeout=DEFAULT_TIMEOUT, tls=None):
        self.addr = addr
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
        if tls is not None:
            self.channel = grpc.secure_channel(addr, tls.credentials(), options + tls.options())
        else:
            self.channel = grpc.insecure_channel(addr, options=options)
        self._calls = {}
        for key, (path, req, rep) in self.METHODS.items():
            mod = health_pb if path.startswith("/grpc.health") else pb
            self._calls[key] = (getattr(mod, req), self.channel.unary_unary(
                path, request_serializer=getattr(mod, req).SerializeToString,
                response_deserializer=getattr(mod, rep).FromString))

    def call(self, key, timeout=None, **fields):
        req_cls, fn = self._calls[key]
        return fn(req_cls(**fields), timeout=timeout or self.timeout)

    def health(self, service=""):
        """True when the server answers SERVING (grpc.health.v1)"""
        try:
            r = self.call("health", service=service)
        except grpc.RpcError:
            return False
        return r.status == health_pb.HealthCheckResponse.SERVING

    def wait_ready(self, deadline_s):
        """poll health until SERVING or deadline_s seconds have passed; True when serving"""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=deadline_s)
        except grpc.FutureTimeoutError:
            return False
        return self.health()

    def stats(self):
        """the process's counters and gauges: {name: float} (plus role and pid)"""
        r = self.call("stats")
        d = dict(r.values)
        d["role"] = r.role
        d["pid"] = r.pid
        return d

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Learner(_Server):
    METHODS = dict(_Server.METHODS, **{
        "progress": ("/twig.v1.Learner/GetProgress", "ProgressRequest", "Progress"),
        "evals": ("/twig.v1.Learner/GetEvals", "GetEvalsRequest", "GetEvalsReply"),
        "policy": ("/twig.v1.Learner/GetPolicy", "GetWeightsRequest", "GetWeightsReply"),
    })

    def progress(self):
        """twig.v1.Progress: updates, real_steps, policy_version, achieved_utd, ..."""
        return self.call("progress")

    def evals(self, from_index=0):
        """[twig.v1.EvalResult] from from_index on (real_steps, policy_version, return_mean...)"""
        return list(self.call("evals", from_index=from_index).evals)

    def policy_blob(self, have_version=0, wait_ms=0):
        """the newest policy WeightBlob newer than have_version, or None (waits up to wait_ms)"""
        timeout = self.timeout + wait_ms / 1000.0
        r = self.call("policy", timeout=timeout, have_version=have_version, wait_ms=wait_ms)
        return r.blob if r.HasField("blob") else None

    def policy(self, have_version=0, wait_ms=0, act_low=None, act_high=None):
        """the newest Policy (numpy tensors, act()), or None when none is newer"""
        blob = self.policy_blob(have_version, wait_ms)
        return Policy(blob, act_low, act_high) if blob is not None else None


class ModelServer(_Server):
    METHODS = dict(_Server.METHODS, **{
        "log_status": ("/twig.v1.ModelServer/LogStatus", "LogStatusRequest", "LogStatusReply"),
        "fetch_real": ("/twig.v1.ModelServer/FetchReal", "FetchRealRequest", "FetchRealReply"),
        "model": ("/twig.v1.ModelServer/GetModel", "GetWeightsRequest", "GetWeightsReply"),
    })

    def log_status(self):
        """twig.v1.LogStatusReply: end_offset (real transitions stored), env_id, dims, ..."""
        return self.call("log_status")

    def fetch_real(self, from_offset=0, max_count=0):
        """real transitions [from_offset, ...) as numpy: dict of obs (N, O), act (N, A),
        reward, next_obs, terminated, truncated, first_offset, end_offset"""
        r = self.call("fetch_real", from_offset=from_offset, max_count=max_count)
        b = r.batch
        n = b.count
        return {
            "first_offset": r.first_offset, "end_offset": r.end_offset,
            "obs": np.array(b.obs, dtype=np.float32).reshape(n, b.obs_dim),
            "act": np.array(b.act, dtype=np.float32).reshape(n, b.act_dim),
            "reward": np.array(b.reward, dtype=np.float32),
            "next_obs": np.array(b.next_obs, dtype=np.float32).reshape(n, b.obs_dim),
            "terminated": np.array(b.terminated, dtype=bool),
            "truncated": np.array(b.truncated, dtype=bool),
        }

    def model_blob(self, have_version=0):
        """the newest model WeightBlob (its tensors: blob_tensors(blob)), or None"""
        r = self.call("model", have_version=have_version)
        return r.blob if r.HasField("blob") else None


# ---- a run directory ------------------------------------------------------------------------

RUN_TLS_KEYS = ("tls_ca", "tls_cert", "tls_key", "tls_server_name")


def run_addresses(run_dir):
    """{"modelserver": addr, "learner": addr} from RUN/learner.config.yaml (the effective
    config, defaults included), else RUN/config.yaml with twig's defaults; with the run's
    TLS keys (tls_ca, ...) when they are set"""
    addrs = {"modelserver": "127.0.0.1:7101", "learner": "127.0.0.1:7102"}
    for name in ("learner.config.yaml", "config.yaml"):
        path = os.path.join(run_dir, name)
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                if line[:1] in (" ", "\t", "#"):
                    continue   # only the top level
                key, _, value = line.partition(":")
                value = value.split("#", 1)[0].strip().strip("'\"")
                if key in ("modelserver_addr", "learner_addr") and value:
                    addrs[key[:-len("_addr")]] = value
                elif key in RUN_TLS_KEYS and value:
                    addrs[key] = value
        return addrs
    raise FileNotFoundError("%s: no learner.config.yaml or config.yaml" % run_dir)


# ---- the script -----------------------------------------------------------------------------

def _kv(prefix, pairs):
    parts = [prefix] if prefix else []
    for k, v in pairs:
        if isinstance(v, float):
            v = "%.9g" % v
        parts.append("%s=%s" % (k, v))
    return " ".join(parts)


def cmd_status(a):
    with Learner(a.learner, a.timeout, a.tls) as l, \
            ModelServer(a.modelserver, a.timeout, a.tls) as m:
        p = l.progress()
        print(_kv("learner", [(k, getattr(p, k)) for k in p.DESCRIPTOR.fields_by_name]))
        print(_kv("learner_stats", sorted(l.stats().items())))
        s = m.log_status()
        print(_kv("modelserver", [(k, getattr(s, k)) for k in s.DESCRIPTOR.fields_by_name]))
        print(_kv("modelserver_stats", sorted(m.stats().items())))
    return 0


def cmd_evals(a):
    with Learner(a.learner, a.timeout, a.tls) as l:
        evs = l.evals(a.from_index)
        for e in evs:
            print(_kv("eval", [(k, getattr(e, k)) for k in e.DESCRIPTOR.fields_by_name]))
        print(_kv("evals", [("count", len(evs))]))
    return 0


def _policy(a):
    low = high = None
    if a.act_low is not None or a.act_high is not None:
        low, high = _floats(a.act_low or ""), _floats(a.act_high or "")
    with Learner(a.learner, a.timeout, a.tls) as l:
        pol = l.policy(act_low=low, act_high=high)
    if pol is None:
        raise LookupError("the learner has no policy yet")
    return pol


def cmd_policy(a):
    pol = _policy(a)
    print(_kv("policy", [("version", pol.version), ("env_id", pol.env_id),
                         ("n_obs", pol.n_obs), ("n_act", pol.n_act),
                         ("layers", len(pol.layers))]))
    for name, t in pol.tensors.items():
        print(_kv("tensor", [("name", name), ("shape", "x".join(map(str, t.shape))),
                             ("mean", float(t.mean())), ("std", float(t.std()))]))
    return 0


def cmd_act(a):
    pol = _policy(a)
    print(_kv("policy", [("version", pol.version), ("env_id", pol.env_id)]))
    for o in a.obs:
        act = pol.act(_floats(o))
        print(_kv("act", [("obs", o), ("action", ",".join("%.9g" % v for v in act))]))
    return 0


def cmd_bounds(a):
    low, high = action_bounds(a.env_id)
    print(_kv("bounds", [("env_id", a.env_id), ("n_act", low.size),
                         ("low", ",".join("%.9g" % v for v in low)),
                         ("high", ",".join("%.9g" % v for v in high))]))
    return 0


def _floats(s):
    return [float(v) for v in s.split(",") if v.strip()]


def main(argv):
    ap = argparse.ArgumentParser(prog="twig_client.py", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def servers(p, modelserver):
        p.add_argument("--run-dir", help="a `twig run` directory: its addresses")
        p.add_argument("--learner", help="HOST:PORT of twig-learner")
        if modelserver:
            p.add_argument("--modelserver", help="HOST:PORT of twig-modelserver")
        p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help="seconds per call (default %(default)s)")
        for key in RUN_TLS_KEYS:
            p.add_argument("--" + key.replace("_", "-"), dest=key,
                           help="the run's %s (default: the run dir's, else none)" % key)

    def bounds(p):
        p.add_argument("--act-low", help="comma-separated action lower bounds (plugin envs)")
        p.add_argument("--act-high", help="comma-separated action upper bounds")

    p = sub.add_parser("status", help="learner Progress + Stats, model server LogStatus + Stats")
    servers(p, True)
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("evals", help="the learner's evaluations (GetEvals)")
    servers(p, False)
    p.add_argument("--from", dest="from_index", type=int, default=0, help="first index")
    p.set_defaults(fn=cmd_evals)
    p = sub.add_parser("policy", help="the current policy (GetPolicy): version and tensors")
    servers(p, False)
    bounds(p)
    p.set_defaults(fn=cmd_policy)
    p = sub.add_parser("act", help="the current policy's deterministic action for --obs")
    servers(p, False)
    bounds(p)
    p.add_argument("--obs", action="append", required=True,
                   help="comma-separated observation (repeatable)")
    p.set_defaults(fn=cmd_act)
    p = sub.add_parser("bounds", help="the built-in action bounds of an env id")
    p.add_argument("env_id")
    p.set_defaults(fn=cmd_bounds)

    a = ap.parse_args(argv)
    if a.cmd != "bounds":
        addrs = run_addresses(a.run_dir) if a.run_dir else {}
        a.learner = a.learner or addrs.get("learner")
        if not a.learner:
            ap.error("--learner or --run-dir is required")
        if a.cmd == "status":
            a.modelserver = a.modelserver or addrs.get("modelserver")
            if not a.modelserver:
                ap.error("--modelserver or --run-dir is required")
        tls = {k: getattr(a, k) or addrs.get(k, "") for k in RUN_TLS_KEYS}
        a.tls = None
        if any(tls[k] for k in RUN_TLS_KEYS):
            try:
                a.tls = Tls(tls["tls_ca"], tls["tls_cert"], tls["tls_key"],
                            tls["tls_server_name"])
            except (OSError, ValueError) as e:
                ap.error(str(e))
    try:
        return a.fn(a)
    except grpc.RpcError as e:
        print("twig_client: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
    except (LookupError, ValueError, OSError) as e:
        print("twig_client: %s" % e, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
