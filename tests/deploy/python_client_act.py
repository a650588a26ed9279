#!/usr/bin/python3
"""Run deploy/python/twig_client.py's Policy.act on a serialized policy WeightBlob.

Run by tests/deploy/test_python_client.c, which wrote the blob from C weights and compares
what this prints with common/nn/policy.c's policy_act:
    /usr/bin/python3 python_client_act.py BLOB_FILE LOW HIGH OBS [OBS ...]
LOW, HIGH and each OBS are comma-separated floats. Prints one line per OBS, the action as
comma-separated %.9g, then one line for the whole batch at once (act on a (B, n_obs) array).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "deploy", "python"))
import numpy as np  # noqa: E402
import twig_client as tc  # noqa: E402


def floats(s):
    return [float(v) for v in s.split(",")]


def main(argv):
    blob = tc.pb.WeightBlob()
    with open(argv[0], "rb") as f:
        blob.ParseFromString(f.read())
    pol = tc.Policy(blob, floats(argv[1]), floats(argv[2]))
    obs = [floats(o) for o in argv[3:]]
    for o in obs:
        print(",".join("%.9g" % v for v in pol.act(o)))
    batch = pol.act(np.array(obs, dtype=np.float32))
    print(",".join("%.9g" % v for v in batch.reshape(-1)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
