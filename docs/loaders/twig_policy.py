"""twig_policy.py - load a twig policy file (.twigp, docs/policy-format.md) with numpy.

    from twig_policy import load_policy
    pol = load_policy("hopper.twigp")
    act = pol.act(obs)            # obs (n_obs,) or (B, n_obs) -> actions in the env's units

The action is the deterministic one twig evaluates with: the net's first n_act outputs are
mu, the next n_act log_std (unused), act = low + (tanh(mu) + 1) (high - low) / 2.
Needs only numpy (Debian: python3-numpy). Version 1 of the format.
"""
import struct

import numpy as np

FORMAT_VERSION = 1


def _crc32c(data):
    table = _crc32c.table
    if table is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
            table.append(c)
        _crc32c.table = table
    c = 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


_crc32c.table = None


class PolicyFileError(ValueError):
    """the file is not a valid policy file; the message names the field"""


class Policy:
    def __init__(self, env_id, policy_version, updates, act_low, act_high, activation, layers):
        self.env_id = env_id
        self.policy_version = policy_version
        self.updates = updates
        self.act_low = act_low            # (n_act,) float32
        self.act_high = act_high
        self.activation = activation      # 0 none, 1 ReLU, 2 swish
        self.layers = layers              # [(w (in, out), b (out,)), ...] float32
        self.n_obs = layers[0][0].shape[0]
        self.n_act = act_low.shape[0]

    def act(self, obs):
        """deterministic actions in the env's units for obs (n_obs,) or (B, n_obs)"""
        x = np.asarray(obs, dtype=np.float64)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.astype(np.float64) + b.astype(np.float64)
            if i + 1 < len(self.layers):
                if self.activation == 1:
                    x = np.maximum(x, 0.0)
                elif self.activation == 2:
                    x = x / (1.0 + np.exp(-x))
        mu = x[..., : self.n_act]
        lo = self.act_low.astype(np.float64)
        hi = self.act_high.astype(np.float64)
        return (lo + (np.tanh(mu) + 1.0) * 0.5 * (hi - lo)).astype(np.float32)


def parse_policy(data):
    """a Policy from the bytes of a policy file; PolicyFileError names what is wrong"""
    data = bytes(data)
    pos = 0

    def take(n, field):
        nonlocal pos
        if len(data) - pos < n:
            raise PolicyFileError("truncated at %s (the file has %d bytes)" % (field, len(data)))
        out = data[pos : pos + n]
        pos += n
        return out

    if take(8, "magic") != b"TWIGPOL\0":
        raise PolicyFileError('magic is not "TWIGPOL\\0" (not a twig policy file)')
    (version,) = struct.unpack("<I", take(4, "format_version"))
    if version != FORMAT_VERSION:
        raise PolicyFileError("format_version %d, this loader reads %d" % (version, FORMAT_VERSION))
    (env_len,) = struct.unpack("<I", take(4, "env_id_len"))
    if not 1 <= env_len <= 255:
        raise PolicyFileError("env_id_len %d is outside [1, 255]" % env_len)
    env_id = take(env_len, "env_id").decode("ascii")
    policy_version, updates = struct.unpack("<QQ", take(16, "policy_version/updates"))
    n_obs, n_act = struct.unpack("<II", take(8, "n_obs/n_act"))
    if not (1 <= n_obs <= 65536 and 1 <= n_act <= 65536):
        raise PolicyFileError("n_obs %d / n_act %d outside [1, 65536]" % (n_obs, n_act))
    act_low = np.frombuffer(take(4 * n_act, "act_low"), dtype="<f4").astype(np.float32)
    act_high = np.frombuffer(take(4 * n_act, "act_high"), dtype="<f4").astype(np.float32)
    if not (np.all(np.isfinite(act_low)) and np.all(np.isfinite(act_high))
            and np.all(act_low < act_high)):
        raise PolicyFileError("act_low / act_high: bounds must be finite with low < high")
    (n_layers,) = struct.unpack("<I", take(4, "n_layers"))
    if not 1 <= n_layers <= 8:
        raise PolicyFileError("n_layers %d is outside [1, 8]" % n_layers)
    sizes = struct.unpack("<%dI" % (n_layers + 1), take(4 * (n_layers + 1), "sizes"))
    if any(not 1 <= s <= 65536 for s in sizes):
        raise PolicyFileError("sizes %r: each must be in [1, 65536]" % (sizes,))
    if sizes[0] != n_obs or sizes[-1] != 2 * n_act:
        raise PolicyFileError("sizes[0] %d / sizes[-1] %d are not n_obs %d / 2 n_act %d"
                              % (sizes[0], sizes[-1], n_obs, 2 * n_act))
    activation, head = struct.unpack("<II", take(8, "activation/head"))
    if activation > 2:
        raise PolicyFileError("activation %d is not 0, 1 or 2" % activation)
    if head != 1:
        raise PolicyFileError("head %d is not 1 (tanh Gaussian)" % head)
    n_tensor = sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(n_layers))
    left = len(data) - pos
    if left != 4 * n_tensor + 4:
        raise PolicyFileError("%s: the tensors and crc32c need %d bytes, %d are left"
                              % ("truncated" if left < 4 * n_tensor + 4 else "trailing bytes",
                                 4 * n_tensor + 4, left))
    (stored,) = struct.unpack("<I", data[-4:])
    actual = _crc32c(data[:-4])
    if stored != actual:
        raise PolicyFileError("crc32c mismatch (stored %08x, computed %08x): corrupted"
                              % (stored, actual))
    layers = []
    for i in range(n_layers):
        w = np.frombuffer(take(4 * sizes[i] * sizes[i + 1], "w%d" % i), dtype="<f4")
        b = np.frombuffer(take(4 * sizes[i + 1], "b%d" % i), dtype="<f4")
        layers.append((w.reshape(sizes[i], sizes[i + 1]).astype(np.float32),
                       b.astype(np.float32)))
    return Policy(env_id, policy_version, updates, act_low, act_high, activation, layers)


def load_policy(path):
    """a Policy from a policy file written by `twig export`"""
    with open(path, "rb") as f:
        return parse_policy(f.read())
