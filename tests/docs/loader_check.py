"""docs/loaders/twig_policy.py as a user would use it: acts on N float32 observations and
writes N float32 actions. usage: loader_check.py POLICY OBS_F32 N OUT_F32 (a refused file:
its message on stderr, exit 1)"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "docs", "loaders"))

import numpy as np  # noqa: E402

from twig_policy import PolicyFileError, load_policy  # noqa: E402


def main():
    path, obs_path, n, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    try:
        pol = load_policy(path)
    except PolicyFileError as e:
        print("load_policy: %s" % e, file=sys.stderr)
        return 1
    obs = np.fromfile(obs_path, dtype="<f4").reshape(n, pol.n_obs)
    pol.act(obs).astype("<f4").tofile(out_path)
    print("env_id=%s n_obs=%d n_act=%d" % (pol.env_id, pol.n_obs, pol.n_act))
    return 0


if __name__ == "__main__":
    sys.exit(main())
