#!/usr/bin/python3
"""Strict offline validation of Kubernetes manifests against the Kubernetes 1.22 API.

    /usr/bin/python3 deploy/k8s/validate.py [--render] DIR_OR_FILE...

A directory must hold a kustomization.yaml: its resources are validated and, with --render,
the rendered stream (namespace and image set the way kustomize sets them) is printed. A file
is a stream of YAML documents, each validated on its own.

The schema is the one the Debian package python3-kubernetes (22.6, generated from the
Kubernetes 1.22 OpenAPI spec) carries in its model classes: each class lists its fields
(attribute_map: JSON name) and their types (openapi_types); a setter that refuses None marks
a required field. Every document is walked against the class of its apiVersion/kind, and
refused, with the document and the field's path, when it has
  - a field its class does not have (a typo: `contianerPort`),
  - a value of the wrong type (a string where an int goes, a map where a list goes, a bool
    for an int, a number for a string),
  - no value for a required field,
  - an int-or-string (ports, maxSurge, ...) that is neither, or a named port that is not an
    IANA service name,
  - a Quantity (resources, sizeLimit) that does not parse (`1 Gi`, `2GB`),
  - an apiVersion/kind outside the groups below,
  - a key given twice in one map, a name that is not DNS-1123, a port name that is not an
    IANA service name, a controller selector that does not select its own template.
Kubernetes 1.22 has no native gRPC probe (alpha in 1.23): probes run `twig health` (exec).

Exit status: 0 all valid (one summary line on stdout); 1 refused (one line per problem on
stderr, each `FILE: doc N (Kind/name): path: problem`); 2 bad usage or unreadable input.
"""
import os
import re
import sys

import yaml
import kubernetes
from kubernetes.client import models as k8s_models
from kubernetes.client.configuration import Configuration

K8S_VERSION = "1.22"  # the API the models of python3-kubernetes 22.x were generated from

# apiVersion -> class-name prefix; a kind is the class <prefix><Kind>
API_GROUPS = {
    "v1": "V1",
    "apps/v1": "V1",
    "batch/v1": "V1",
    "policy/v1": "V1",
    "networking.k8s.io/v1": "V1",
    "autoscaling/v1": "V1",
}
# which resource kinds a manifest may hold (the models also have List, Status, ... classes)
KINDS = {
    "v1": {"ConfigMap", "Secret", "Service", "ServiceAccount", "PersistentVolumeClaim", "Pod",
           "Namespace"},
    "apps/v1": {"Deployment", "StatefulSet", "DaemonSet"},
    "batch/v1": {"Job", "CronJob"},
    "policy/v1": {"PodDisruptionBudget"},
    "networking.k8s.io/v1": {"NetworkPolicy"},
    "autoscaling/v1": {"HorizontalPodAutoscaler"},
}

# the fields the OpenAPI spec types as IntOrString (python3-kubernetes says `object`)
INT_OR_STRING = {
    ("V1HTTPGetAction", "port"), ("V1TCPSocketAction", "port"),
    ("V1ServicePort", "target_port"), ("V1NetworkPolicyPort", "port"),
    ("V1PodDisruptionBudgetSpec", "min_available"),
    ("V1PodDisruptionBudgetSpec", "max_unavailable"),
    ("V1RollingUpdateDeployment", "max_surge"), ("V1RollingUpdateDeployment", "max_unavailable"),
    ("V1RollingUpdateDaemonSet", "max_surge"), ("V1RollingUpdateDaemonSet", "max_unavailable"),
}
# the fields the spec types as Quantity (python3-kubernetes says `str` or `dict(str, str)`)
QUANTITY = {
    ("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"),
    ("V1EmptyDirVolumeSource", "size_limit"), ("V1PodSpec", "overhead"),
}
# fields that name a port: IANA service names (what a probe's or Service's port may name)
PORT_NAMES = {("V1ContainerPort", "name")}
# the ports that are named must be IANA service names (what a probe's port may name)
NAMED_PORT = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# Quantity: a signed decimal and one of the suffixes of apimachinery's resource.Quantity
QUANTITY_RE = re.compile(
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
DNS1123_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                               r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PRIMITIVES = {"str", "int", "float", "bool", "datetime", "date", "object"}
INT32_MAX = 2**31 - 1


class Unreadable(Exception):
    """an input that cannot be read at all (exit 2)"""


class Problems:
    def __init__(self):
        self.lines = []

    def add(self, where, path, text):
        self.lines.append("%s: %s: %s" % (where, path or "(document)", text))


def _type_name(v):
    return {dict: "a map", list: "a list", str: "a string", bool: "a bool", int: "an int",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _required_fields(cls):
    """the attributes whose setter refuses None under client-side validation"""
    cfg = Configuration()
    cfg.client_side_validation = True
    probe = cls.__new__(cls)
    probe.local_vars_configuration = cfg
    required = set()
    for attr in cls.openapi_types:
        try:
            setattr(probe, attr, None)
        except ValueError:
            required.add(attr)
    return required


_REQUIRED = {}


def required_fields(cls):
    if cls not in _REQUIRED:
        _REQUIRED[cls] = _required_fields(cls)
    return _REQUIRED[cls]


def check_quantity(v, path, where, out):
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        out.add(where, path, "a Quantity is a string or a number, not %s" % _type_name(v))
    elif isinstance(v, str) and not QUANTITY_RE.match(v):
        out.add(where, path, "'%s' is not a Quantity (e.g. 500m, 2Gi, 1e3)" % v)


def check_int_or_string(v, path, where, out, port):
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        out.add(where, path, "int-or-string, not %s" % _type_name(v))
    elif isinstance(v, int) and port and not 1 <= v <= 65535:
        out.add(where, path, "port %d is outside 1..65535" % v)
    elif isinstance(v, str) and port and not NAMED_PORT.match(v):
        out.add(where, path, "'%s' is not a port name (IANA service name, <= 15 chars)" % v)


def check_value(typ, v, path, where, out, owner=None, attr=None):
    """v against the python3-kubernetes type string typ"""
    if v is None:
        return  # an explicit null is an absent field to the API server
    if (owner, attr) in INT_OR_STRING:
        check_int_or_string(v, path, where, out, port=attr in ("port", "target_port"))
        return
    if (owner, attr) in PORT_NAMES and isinstance(v, str) and not NAMED_PORT.match(v):
        out.add(where, path, "'%s' is not a port name (IANA service name, <= 15 chars)" % v)
    quantity = (owner, attr) in QUANTITY
    m = re.match(r"^list\[(.*)\]$", typ)
    if m:
        if not isinstance(v, list):
            out.add(where, path, "expected a list, got %s" % _type_name(v))
            return
        for i, item in enumerate(v):
            check_value(m.group(1), item, "%s[%d]" % (path, i), where, out)
        return
    m = re.match(r"^dict\(str, (.*)\)$", typ)
    if m:
        if not isinstance(v, dict):
            out.add(where, path, "expected a map, got %s" % _type_name(v))
            return
        for k, item in v.items():
            if not isinstance(k, str):
                out.add(where, path, "map key %r is not a string" % (k,))
            p = "%s.%s" % (path, k)
            if quantity:
                check_quantity(item, p, where, out)
            else:
                check_value(m.group(1), item, p, where, out)
        return
    if quantity:
        check_quantity(v, path, where, out)
    elif typ == "str" or typ in ("datetime", "date"):
        if not isinstance(v, str):
            out.add(where, path, "expected a string, got %s %r" % (_type_name(v), v))
    elif typ == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            out.add(where, path, "expected an int, got %s %r" % (_type_name(v), v))
    elif typ == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            out.add(where, path, "expected a number, got %s %r" % (_type_name(v), v))
    elif typ == "bool":
        if not isinstance(v, bool):
            out.add(where, path, "expected a bool, got %s %r" % (_type_name(v), v))
    elif typ == "object":
        pass  # free-form in the spec (RawExtension and the like)
    else:
        check_object(getattr(k8s_models, typ), v, path, where, out)


def check_object(cls, v, path, where, out):
    if not isinstance(v, dict):
        out.add(where, path, "expected a map (%s), got %s" % (cls.__name__, _type_name(v)))
        return
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for key, item in v.items():
        p = "%s.%s" % (path, key) if path else str(key)
        attr = by_json.get(key)
        if attr is None:
            near = [j for j in by_json if j.lower() == str(key).lower()]
            hint = " (did you mean '%s'?)" % near[0] if near else ""
            out.add(where, p, "unknown field '%s' in %s%s" % (key, cls.__name__, hint))
            continue
        check_value(cls.openapi_types[attr], item, p, where, out, cls.__name__, attr)
    for attr in sorted(required_fields(cls)):
        if v.get(cls.attribute_map[attr]) is None:
            p = "%s.%s" % (path, cls.attribute_map[attr]) if path else cls.attribute_map[attr]
            out.add(where, p, "required field missing in %s" % cls.__name__)


def check_document(doc, where, out):
    """one manifest; returns its (apiVersion, kind, name)"""
    if not isinstance(doc, dict):
        out.add(where, "", "a manifest is a map, not %s" % _type_name(doc))
        return None
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if api not in API_GROUPS:
        out.add(where, "apiVersion", "'%s' is not one of %s" % (api, ", ".join(API_GROUPS)))
        return None
    if kind not in KINDS[api]:
        out.add(where, "kind", "'%s' is not a kind of %s here (%s)"
                % (kind, api, ", ".join(sorted(KINDS[api]))))
        return None
    cls = getattr(k8s_models, API_GROUPS[api] + kind)
    check_object(cls, doc, "", where, out)
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not DNS1123_SUBDOMAIN.match(name):
        out.add(where, "metadata.name", "%r is not a DNS-1123 name" % (name,))
    check_selector(doc, where, out)
    return (api, kind, name)


def check_selector(doc, where, out):
    """a controller's selector.matchLabels must select its own pod template (the API server
    refuses `selector does not match template labels`)"""
    spec = doc.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("selector"), dict):
        return
    if doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet"):
        return
    want = spec["selector"].get("matchLabels") or {}
    tmpl = spec.get("template")
    meta = tmpl.get("metadata") if isinstance(tmpl, dict) else None
    labels = (meta.get("labels") if isinstance(meta, dict) else None) or {}
    if not isinstance(want, dict) or not isinstance(labels, dict):
        return  # already refused by type
    if not want and not spec["selector"].get("matchExpressions"):
        out.add(where, "spec.selector", "selects nothing (empty matchLabels)")
    for k, v in want.items():
        if labels.get(k) != v:
            out.add(where, "spec.selector.matchLabels.%s" % k,
                    "%r does not match the template's label %r" % (v, labels.get(k)))


class StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one map (PyYAML keeps the last one
    silently; the API server's strict decoding refuses it)"""


def _construct_map(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "in a map", node.start_mark, "duplicate key '%s' (first on line %d)"
                % (key, seen[key] + 1), key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


def load_stream(path, out):
    try:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.load_all(f, Loader=StrictLoader))
    except OSError as e:
        raise Unreadable("%s: %s" % (path, e.strerror)) from e
    except yaml.YAMLError as e:
        out.add(path, "", "not YAML: %s" % str(e).replace("\n", " "))
        return []
    return [d for d in docs if d is not None]


# the keys of kustomization.yaml this tool renders; others are refused, not ignored
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "images", "namespace"}
IMAGE_KEYS = {"name", "newName", "newTag"}


def load_kustomization(d, out):
    """(resource paths, kustomization) of directory d"""
    path = os.path.join(d, "kustomization.yaml")
    if not os.path.isfile(path):
        raise Unreadable("%s: no kustomization.yaml" % d)
    docs = load_stream(path, out)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        out.add(path, "", "a kustomization is one map")
        return [], {}
    k = docs[0]
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        out.add(path, "apiVersion", "expected kustomize.config.k8s.io/v1beta1 Kustomization")
    for key in k:
        if key not in KUSTOMIZATION_KEYS:
            out.add(path, key, "field '%s' is not one validate.py renders (%s)"
                    % (key, ", ".join(sorted(KUSTOMIZATION_KEYS))))
    res = k.get("resources")
    if not isinstance(res, list) or not res:
        out.add(path, "resources", "expected a non-empty list of files")
        res = []
    files = []
    for i, r in enumerate(res):
        f = os.path.join(d, r) if isinstance(r, str) else None
        if f is None or not os.path.isfile(f):
            out.add(path, "resources[%d]" % i, "%r is not a file beside kustomization.yaml" % (r,))
        elif f in files:
            out.add(path, "resources[%d]" % i, "%r is listed twice" % r)
        else:
            files.append(f)
    listed = {os.path.basename(f) for f in files}
    for name in sorted(os.listdir(d)):
        if name.endswith(".yaml") and name != "kustomization.yaml" and name not in listed:
            out.add(path, "resources", "%s is in %s but not in resources" % (name, d))
    images = k.get("images", [])
    if not isinstance(images, list):
        out.add(path, "images", "expected a list")
        images = []
    for i, im in enumerate(images):
        if not isinstance(im, dict) or not isinstance(im.get("name"), str):
            out.add(path, "images[%d]" % i, "expected a map with a name")
            continue
        for key, v in im.items():
            if key not in IMAGE_KEYS or not isinstance(v, str):
                out.add(path, "images[%d].%s" % (i, key), "expected one of %s, strings"
                        % ", ".join(sorted(IMAGE_KEYS)))
    for key in ("namespace",):
        if key in k and not (isinstance(k[key], str) and DNS1123_SUBDOMAIN.match(k[key])):
            out.add(path, key, "expected a DNS-1123 name")
    return files, k


def _pod_specs(doc):
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        yield spec
    elif isinstance(spec.get("template"), dict):
        yield spec["template"].get("spec") or {}


def render(docs, k):
    """apply the kustomization's namespace and images the way kustomize does"""
    images = {im["name"]: im for im in k.get("images", []) if isinstance(im, dict)}
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        if "namespace" in k and doc.get("kind") != "Namespace":
            meta["namespace"] = k["namespace"]
        for ps in _pod_specs(doc):
            for c in (ps.get("containers") or []) + (ps.get("initContainers") or []):
                name, _, tag = str(c.get("image", "")).partition(":")
                im = images.get(name)
                if im:
                    c["image"] = "%s:%s" % (im.get("newName", name),
                                            im.get("newTag", tag or "latest"))
    return docs


def main(argv):
    args = argv[1:]
    do_render = "--render" in args
    args = [a for a in args if a != "--render"]
    if not args or any(a.startswith("-") for a in args):
        sys.stderr.write("usage: validate.py [--render] DIR_OR_FILE...\n")
        return 2
    out = Problems()
    rendered = []
    n = 0
    kinds = {}
    for target in args:
        if os.path.isdir(target):
            files, k = load_kustomization(target, out)
        elif os.path.isfile(target):
            files, k = [target], {}
        else:
            sys.stderr.write("validate: %s: no such file or directory\n" % target)
            return 2
        docs = []
        for f in files:
            for i, doc in enumerate(load_stream(f, out)):
                label = "%s: doc %d" % (f, i + 1)
                if isinstance(doc, dict):
                    meta = doc.get("metadata")
                    name = meta.get("name") if isinstance(meta, dict) else None
                    label += " (%s/%s)" % (doc.get("kind"), name)
                ident = check_document(doc, label, out)
                n += 1
                if ident:
                    kinds[ident[1]] = kinds.get(ident[1], 0) + 1
                    docs.append(doc)
        rendered += render(docs, k)
    if out.lines:
        for line in out.lines:
            sys.stderr.write(line + "\n")
        sys.stderr.write("validate: %d problem(s) in %d document(s) (Kubernetes %s API)\n"
                         % (len(out.lines), n, K8S_VERSION))
        return 1
    if do_render:
        yaml.safe_dump_all(rendered, sys.stdout, sort_keys=False)
    else:
        print("validate: %d documents valid against the Kubernetes %s API "
              "(python3-kubernetes %s): %s" % (n, K8S_VERSION, kubernetes.__version__,
              ", ".join("%s %d" % kv for kv in sorted(kinds.items()))))
    return 0


def run(argv):
    try:
        return main(argv)
    except Unreadable as e:
        sys.stderr.write("validate: %s\n" % e)
        return 2


if __name__ == "__main__":
    sys.exit(run(sys.argv))
