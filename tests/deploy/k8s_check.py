#!/usr/bin/python3
"""deploy/k8s against the config table: run by tests/deploy/test_k8s.c.

    /usr/bin/python3 tests/deploy/k8s_check.py BIN_DIR K8S_DIR

Renders K8S_DIR with deploy/k8s/validate.py (which must accept it), writes the run file of
the twig-run ConfigMap to a temporary file and, for every container, runs its command and
args (the ConfigMap's mount path replaced by that file, $(VAR) expanded from its env) with
--print-config: the program must accept them, and what it prints is the effective config
the pod would run with. Then checks, naming the manifest and the key:
  - the run file sets every key of configs/pendulum.yaml to that file's value;
  - the role is a twig program, the image the kustomization's one image;
  - the container port named grpc, every probe's address and the Service's port and
    targetPort are the port of the role's listen key, which listens on all addresses;
  - startup and liveness probes ask `twig health 127.0.0.1:PORT --service liveness
    --tls-from RUNFILE` (the mounted run file: TLS exactly when the run has it), readiness
    probes `--service readiness`;
  - the container port named metrics is the port of the role's metrics_listen (all
    addresses), the pod's prometheus.io/scrape and prometheus.io/port annotations say so, and
    the Service has a port named metrics to it;
  - modelserver_addr and learner_addr are their Services' NAME:PORT;
  - the model server's data_dir and the learner's checkpoint_dir are on the StatefulSet's
    volume claim, which is mounted writable; StatefulSets have one replica;
  - n_actors is the actor Job's completions and parallelism, n_rollout the rollout
    Deployment's replicas; actors exit when done (a Job must end);
  - each actor and rollout worker's id is its pod name (identical replicas, distinct ids);
  - terminationGracePeriodSeconds exceeds the role's grace_ms / flush_ms.
Exit 0 with a summary line, or 1 with one line per disagreement.
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRC, "deploy", "k8s"))
import validate  # noqa: E402

ROLES = {  # program -> its config section (and its Service: twig-<section>)
    "twig-modelserver": "modelserver",
    "twig-learner": "learner",
    "twig-rollout": "rollout",
    "twig-actor": "actor",
}
BIN_SUBDIR = {"twig-modelserver": "modelserver", "twig-learner": "learner",
              "twig-rollout": "modelserver", "twig-actor": "actor"}
WORKLOADS = {"StatefulSet", "Deployment", "Job"}
TASK_FILE = "configs/pendulum.yaml"  # the task the ConfigMap's run file runs


def port_of(addr):
    m = re.match(r"^(.*):([0-9]+)$", addr)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: k8s_check.py BIN_DIR K8S_DIR\n")
        return 2
    bin_dir, k8s_dir = argv[1], argv[2]
    probs = validate.Problems()
    files, kust = validate.load_kustomization(k8s_dir, probs)
    docs = []
    for f in files:
        for i, d in enumerate(validate.load_stream(f, probs)):
            validate.check_document(d, "%s: doc %d" % (f, i + 1), probs)
            d["_file"] = os.path.basename(f)
            docs.append(d)
    if probs.lines:
        for line in probs.lines:
            sys.stderr.write("not valid: " + line + "\n")
        return 1
    docs = validate.render(docs, kust)
    bad = []

    def fail(where, text):
        bad.append("%s: %s" % (where, text))

    images = kust.get("images") or []
    want_image = None
    if len(images) == 1:
        want_image = "%s:%s" % (images[0].get("newName", images[0]["name"]),
                                images[0].get("newTag", "latest"))
    else:
        fail("kustomization.yaml", "expected exactly one image, found %d" % len(images))

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    cms = [d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == "twig-run"]
    if len(cms) != 1 or "run.yaml" not in (cms[0].get("data") or {}):
        fail("run-config.yaml", "no ConfigMap twig-run with a run.yaml")
        return report(bad)
    services = {d["metadata"]["name"]: d for d in by_kind.get("Service", [])}
    for s in services.values():
        s.setdefault("spec", {}).setdefault("ports", [])

    check_task_file(cms[0]["data"]["run.yaml"], fail)
    tmp = tempfile.mkdtemp(prefix="twig-test-k8s-")
    run_file = os.path.join(tmp, "run.yaml")
    with open(run_file, "w", encoding="utf-8") as f:
        f.write(cms[0]["data"]["run.yaml"])
    configs = {}
    workloads = {}
    try:
        for d in docs:
            if d["kind"] not in WORKLOADS:
                continue
            where = "%s %s/%s" % (d["_file"], d["kind"], d["metadata"]["name"])
            tmpl = d["spec"]["template"]
            pod = tmpl.get("spec") or {}
            tlabels = (tmpl.get("metadata") or {}).get("labels") or {}
            for c in pod.get("containers") or []:
                w = "%s container %s" % (where, c["name"])
                cfg = check_container(c, pod, tmpl.get("metadata") or {}, w, run_file, bin_dir,
                                      want_image, fail)
                if cfg is None:
                    continue
                prog, eff = cfg
                sec = ROLES[prog]
                if sec in configs:
                    fail(w, "a second %s" % prog)
                configs[sec] = eff
                workloads[sec] = (d, c, w, tlabels)
        check_run(configs, workloads, services, fail)
    finally:
        os.remove(run_file)
        os.rmdir(tmp)
    return report(bad, len(configs), len(services))


def check_task_file(run_text, fail):
    """the run file sets every key of configs/pendulum.yaml to that file's value (it is that
    task's run, with the cluster's addresses and paths added)"""
    task_path = os.path.join(SRC, TASK_FILE)
    with open(task_path, encoding="utf-8") as f:
        task = yaml.safe_load(f)
    run = yaml.safe_load(run_text)
    if not isinstance(run, dict):
        fail("run-config.yaml", "run.yaml is not a map")
        return
    for key, want in task.items():
        if isinstance(want, dict):
            got_sec = run.get(key) if isinstance(run.get(key), dict) else {}
            pairs = [("%s.%s" % (key, k), v, got_sec.get(k)) for k, v in want.items()]
        else:
            pairs = [(key, want, run.get(key))]
        for name, v, got in pairs:
            if got != v:
                fail("run-config.yaml", "%s is %r, but %s has %r" % (name, got, TASK_FILE, v))


def report(bad, n_roles=0, n_services=0):
    for line in bad:
        sys.stderr.write("disagrees: " + line + "\n")
    if bad:
        return 1
    print("k8s_check: %d roles, %d services agree with the config table" % (n_roles, n_services))
    return 0


def expand(s, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), s)


def check_container(c, pod, tmeta, w, run_file, bin_dir, want_image, fail):
    """runs c's command with --print-config; (program, effective config) or None"""
    cmd = (c.get("command") or []) + (c.get("args") or [])
    if not cmd or cmd[0] not in ROLES:
        fail(w, "command %r is not one of %s" % (cmd[:1], ", ".join(ROLES)))
        return None
    prog = cmd[0]
    if want_image and c.get("image") != want_image:
        fail(w, "image %r, not the kustomization's %r" % (c.get("image"), want_image))
    # the ConfigMap's mount: every --config argument must be the run file in it
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    cm_paths = [mounts[n]["mountPath"].rstrip("/") + "/run.yaml" for n in mounts
                if n in vols and (vols[n].get("configMap") or {}).get("name") == "twig-run"]
    args = list(cmd[1:])
    if "--config" not in args:
        fail(w, "no --config")
        return None
    i = args.index("--config")
    if i + 1 >= len(args) or args[i + 1] not in cm_paths:
        fail(w, "--config %s is not the mounted twig-run ConfigMap (%s)"
             % (args[i + 1] if i + 1 < len(args) else "", ", ".join(cm_paths) or "none mounted"))
        return None
    args[i + 1] = run_file
    env = {}
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[e["name"]] = "pod-name-from-k8s"
    args = [expand(a, env) for a in args]
    exe = os.path.join(bin_dir, BIN_SUBDIR[prog], prog)
    r = subprocess.run([exe] + args + ["--print-config"], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        fail(w, "%s refuses its arguments (exit %d): %s" % (prog, r.returncode,
                                                             r.stderr.strip()))
        return None
    eff = yaml.safe_load(r.stdout)
    sec = ROLES[prog]
    host, port = port_of(str(eff[sec]["listen"]))
    if port is None:
        fail(w, "%s.listen %r is not HOST:PORT" % (sec, eff[sec]["listen"]))
        return None
    if host not in ("0.0.0.0", "[::]", ""):
        fail(w, "%s.listen %s does not listen on the pod's address" % (sec, eff[sec]["listen"]))
    ports = {p.get("name"): p for p in c.get("ports") or []}
    if "grpc" not in ports or ports["grpc"]["containerPort"] != port:
        fail(w, "containerPort grpc %s, but %s.listen is %s"
             % (ports.get("grpc", {}).get("containerPort"), sec, eff[sec]["listen"]))
    mhost, mport = port_of(str(eff[sec].get("metrics_listen", "")))
    if mport is None or mhost not in ("0.0.0.0", "[::]", ""):
        fail(w, "%s.metrics_listen %r does not serve /metrics on the pod's address"
             % (sec, eff[sec].get("metrics_listen")))
    elif "metrics" not in ports or ports["metrics"]["containerPort"] != mport:
        fail(w, "containerPort metrics %s, but %s.metrics_listen is %s"
             % (ports.get("metrics", {}).get("containerPort"), sec, eff[sec]["metrics_listen"]))
    notes = tmeta.get("annotations") or {}
    if mport is not None and (notes.get("prometheus.io/scrape") != "true"
                              or notes.get("prometheus.io/port") != str(mport)):
        fail(w, "pod annotations prometheus.io/scrape %r, prometheus.io/port %r: expected "
             "\"true\" and \"%s\" (%s.metrics_listen)" % (notes.get("prometheus.io/scrape"),
                                                        notes.get("prometheus.io/port"), mport,
                                                        sec))
    for probe, service in (("startupProbe", "liveness"), ("livenessProbe", "liveness"),
                           ("readinessProbe", "readiness")):
        # --tls-from the run file the container runs with: the probe speaks TLS when the
        # run does (its tls_* keys), plaintext when it does not
        want = ["twig", "health", "127.0.0.1:%d" % port, "--service", service, "--tls-from",
                cm_paths[0] if cm_paths else "/etc/twig/run.yaml"]
        got = ((c.get(probe) or {}).get("exec") or {}).get("command")
        if got != want:
            fail(w, "%s runs %r, expected %r (%s.listen %s)"
                 % (probe, got, want, sec, eff[sec]["listen"]))
    if sec in ("actor", "rollout") and eff[sec]["id"] != env.get("POD_NAME", None):
        fail(w, "%s.id is %r, not the pod's name (identical replicas need distinct ids)"
             % (sec, eff[sec]["id"]))
    grace = eff[sec].get("grace_ms", 0) + eff[sec].get("flush_ms", 0)
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    if tgp * 1000 <= grace:
        fail(w, "terminationGracePeriodSeconds %d is not above %s's grace %d ms"
             % (tgp, sec, grace))
    return prog, eff


def check_run(configs, workloads, services, fail):
    for sec in ROLES.values():
        if sec not in configs:
            fail("deploy/k8s", "no workload runs %s" % sec)
    if len(configs) != len(ROLES):
        return
    # each role's Service: selects its pods, port and targetPort its listen port
    for sec, (d, c, w, tlabels) in workloads.items():
        name = "twig-" + sec
        s = services.get(name)
        if s is None:
            fail(w, "no Service %s" % name)
            continue
        sel = s["spec"].get("selector") or {}
        if not sel or any(tlabels.get(k) != v for k, v in sel.items()):
            fail("Service %s" % name, "selector %r does not select %s's pods %r"
                 % (sel, d["metadata"]["name"], tlabels))
        _, port = port_of(str(configs[sec][sec]["listen"]))
        sp = [p for p in s["spec"]["ports"] if p.get("name") == "grpc"]
        tp = sp[0].get("targetPort") if sp else None
        cport = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        tp_num = cport.get(tp) if isinstance(tp, str) else tp
        if not sp or sp[0]["port"] != port or tp_num != port:
            fail("Service %s" % name, "port grpc %s -> targetPort %r (container port %s), "
                 "but %s.listen is %s" % (sp[0]["port"] if sp else None, tp, tp_num, sec,
                                          configs[sec][sec]["listen"]))
        _, mport = port_of(str(configs[sec][sec].get("metrics_listen", "")))
        mp = [p for p in s["spec"]["ports"] if p.get("name") == "metrics"]
        mtp = mp[0].get("targetPort") if mp else None
        mtp_num = cport.get(mtp) if isinstance(mtp, str) else mtp
        if mport is not None and (not mp or mp[0]["port"] != mport or mtp_num != mport):
            fail("Service %s" % name, "port metrics %s -> targetPort %r (container port %s), "
                 "but %s.metrics_listen is %s" % (mp[0]["port"] if mp else None, mtp, mtp_num,
                                                  sec, configs[sec][sec]["metrics_listen"]))
        if d["kind"] == "StatefulSet" and d["spec"].get("serviceName") != name:
            fail(w, "serviceName %r is not %s" % (d["spec"].get("serviceName"), name))
    # peers: the addresses in the run file are the Services' NAME:PORT
    for key, sec in (("modelserver_addr", "modelserver"), ("learner_addr", "learner")):
        s = services.get("twig-" + sec)
        if s is None:
            continue
        sp = [p for p in s["spec"]["ports"] if p.get("name") == "grpc"]
        if not sp:
            fail("Service twig-%s" % sec, "no port named grpc")
            continue
        want = "twig-%s:%d" % (sec, sp[0]["port"])
        for user, eff in configs.items():
            if eff[key] != want:
                fail("%s's config" % user, "%s is %s, but the Service is %s"
                     % (key, eff[key], want))
    # durable state on the volume claim, mounted writable; one replica each
    for sec, key in (("modelserver", "data_dir"), ("learner", "checkpoint_dir")):
        d, c, w, _ = workloads[sec]
        if d["kind"] != "StatefulSet" or d["spec"].get("replicas", 1) != 1:
            fail(w, "expected a StatefulSet of one replica")
            continue
        claims = {(t.get("metadata") or {}).get("name")
                  for t in d["spec"].get("volumeClaimTemplates") or []}
        path = str(configs[sec][sec][key])
        on = [m for m in c.get("volumeMounts") or []
              if m["name"] in claims and not m.get("readOnly")
              and (path + "/").startswith(m["mountPath"].rstrip("/") + "/")]
        if not on:
            fail(w, "%s.%s %s is not on a writable mount of a volume claim (%s)"
                 % (sec, key, path, ", ".join(sorted(claims)) or "none"))
    # counts: the run file's process counts are the controllers' replicas
    d, _, w, _ = workloads["actor"]
    n = configs["actor"]["n_actors"]
    if d["kind"] != "Job" or d["spec"].get("completions") != n or d["spec"].get("parallelism") != n:
        fail(w, "n_actors is %d: expected a Job with completions and parallelism %d" % (n, n))
    if configs["actor"]["actor"]["exit_when_done"] is not True:
        fail(w, "actor.exit_when_done is not true: the Job would never complete")
    d, _, w, _ = workloads["rollout"]
    n = configs["rollout"]["n_rollout"]
    if d["spec"].get("replicas", 1) != n:
        fail(w, "n_rollout is %d but replicas is %s" % (n, d["spec"].get("replicas", 1)))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except validate.Unreadable as e:
        sys.stderr.write("k8s_check: %s\n" % e)
        sys.exit(2)
