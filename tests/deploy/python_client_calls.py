#!/usr/bin/python3
"""Use deploy/python/twig_client.py as a module against a live run (the calls its script does
not make), printing what tests/deploy/test_python_client.c asserts, one key=value a line:
    /usr/bin/python3 python_client_calls.py RUN_DIR
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "deploy", "python"))
import twig_client as tc  # noqa: E402


def main(argv):
    addrs = tc.run_addresses(argv[0])
    with tc.Learner(addrs["learner"]) as l, tc.ModelServer(addrs["modelserver"]) as m:
        print("learner_ready=%d" % l.wait_ready(10.0))
        print("modelserver_health=%d" % m.health())
        print("unknown_service_health=%d" % m.health("no.Such"))
        rows = m.fetch_real(0, 64)
        n = rows["obs"].shape[0]
        print("fetch_rows=%d obs_cols=%d act_cols=%d end_offset=%d" %
              (n, rows["obs"].shape[1], rows["act"].shape[1], rows["end_offset"]))
        # within an episode, next_obs of a row is obs of the next
        cont = all((rows["next_obs"][i] == rows["obs"][i + 1]).all()
                   for i in range(n - 1) if not (rows["terminated"][i] or rows["truncated"][i]))
        print("fetch_continuous=%d" % cont)
        blob = m.model_blob()
        tensors = tc.blob_tensors(blob) if blob is not None else {}
        print("model_version=%d model_tensors=%d" % (blob.version if blob else 0, len(tensors)))
        pol = l.policy()
        print("policy_version=%d" % pol.version)
        newer = l.policy(have_version=pol.version + 1000000, wait_ms=100)
        print("far_future_policy=%d" % (newer is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
