"""Helpers for validate.sh and compose-test.sh (run in their venv).

  k8s.py validate VERSION...   validate the rendered manifests (base, and with
                               the tls component) in strict mode against each
                               Kubernetes VERSION, check the ConfigMap's TOML
                               against src/config.rs, and check what the
                               manifests promise each other
  k8s.py toml                  print the ConfigMap's TOML
  k8s.py secret                print the cluster secret of manifests/secret.yaml
  k8s.py check-pods NS POD...  compare running Docker containers named POD
                               with what the StatefulSet gives pod POD in
                               namespace NS: environment, arguments, mounts,
                               user, read-only root, DNS names

Rendering follows kustomization.yaml (its resources, images and, for the
tls variant, the component's strategic-merge patch); when kubectl is
installed, `validate` also checks that `kubectl kustomize` renders the same.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def fail(msg):
    sys.exit(f"k8s.py: {msg}")


def load_yaml(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def merge(base, patch):
    """Strategic merge as kustomize does it for our patch: maps merge, and
    lists of named items (containers, env, mounts, volumes) merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    named = lambda xs: isinstance(xs, list) and all(
        isinstance(x, dict) and "name" in x for x in xs
    )
    if named(base) and named(patch):
        # Items new to the list come first, in the patch's order (as
        # kustomize puts them), then the base's, merged with the patch's.
        by_name = {x["name"]: x for x in patch}
        old = {x["name"] for x in base}
        return [x for x in patch if x["name"] not in old] + [
            merge(x, by_name[x["name"]]) if x["name"] in by_name else x for x in base
        ]
    return patch


def render(tls=False):
    kz = load_yaml(os.path.join(HERE, "kustomization.yaml"))[0]
    docs = []
    for res in kz["resources"]:
        docs += load_yaml(os.path.join(HERE, res))
    patches = []
    if tls:
        comp = load_yaml(os.path.join(HERE, "tls", "kustomization.yaml"))[0]
        if comp.get("kind") != "Component":
            fail("tls/kustomization.yaml is not a kustomize Component")
        for p in comp["patches"]:
            patches += load_yaml(os.path.join(HERE, "tls", p["path"]))
    for patch in patches:
        hits = [
            i
            for i, d in enumerate(docs)
            if (d["kind"], d["metadata"]["name"])
            == (patch["kind"], patch["metadata"]["name"])
        ]
        if len(hits) != 1:
            fail(f"patch of {patch['kind']}/{patch['metadata']['name']} matches {len(hits)} objects")
        docs[hits[0]] = merge(docs[hits[0]], patch)
    images = {i["name"]: i for i in kz.get("images", [])}
    for d in docs:
        for c in pod_spec(d)["containers"] if d["kind"] == "StatefulSet" else []:
            name = c["image"].split(":")[0]
            if name in images:
                i = images[name]
                c["image"] = f"{i.get('newName', name)}:{i['newTag']}"
    return docs


def pod_spec(sts):
    return sts["spec"]["template"]["spec"]


def find(docs, kind, name=None):
    hits = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    if len(hits) != 1:
        fail(f"expected one {kind} {name or ''}, found {len(hits)}")
    return hits[0]


def container(docs):
    containers = pod_spec(find(docs, "StatefulSet"))["containers"]
    return [c for c in containers if c["name"] == "ringkv"][0]


def configmap_toml(docs):
    return find(docs, "ConfigMap", "ringkv-config")["data"]["ringkv.toml"]


def config_keys():
    """Every setting and its Rust type, from `pub struct Config` in src/config.rs."""
    src = open(os.path.join(ROOT, "src", "config.rs")).read()
    body = re.search(r"pub struct Config \{(.*?)\n\}", src, re.S)
    if not body:
        fail("no `pub struct Config` in src/config.rs")
    return dict(re.findall(r"^\s*pub (\w+): ([^,]+),", body.group(1), re.M))


def check_value(key, rust, v):
    """Whether a TOML value fits the Rust type serde reads it as."""
    inner = re.fullmatch(r"Option<(.*)>", rust)
    rust = inner.group(1) if inner else rust
    if rust in ("String", "PathBuf"):
        return isinstance(v, str)
    if rust == "bool":
        return isinstance(v, bool)
    if rust in ("u64", "usize", "u32"):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if rust == "Vec<String>":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if rust == "FsyncMode":
        return v in ("always", "interval", "never")
    if rust == "LogFormat":
        return v in ("text", "json")
    fail(f"src/config.rs: {key} has a type this check does not know ({rust}); teach check_value")


def env_key(name):
    return name[len("RINGKV_"):].lower() if name.startswith("RINGKV_") else None


def check_consistency(docs, keys, variant):
    """What the manifests promise each other, and the TOML's keys."""
    problems = []
    sts = find(docs, "StatefulSet")
    spec = pod_spec(sts)
    c = container(docs)
    env = {e["name"]: e for e in c["env"]}
    for name in env:
        k = env_key(name)
        if k is not None and k not in keys:
            problems.append(f"env {name}: `{k}` is no setting of src/config.rs")
    if spec.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks must be false: Service links put RINGKV_* variables in the environment")
    text = configmap_toml(docs)
    try:
        toml = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.append(f"ConfigMap ringkv.toml is not TOML: {e}")
        toml = {}
    for k, v in toml.items():
        if k not in keys:
            problems.append(f"ringkv.toml: `{k}` is no setting of src/config.rs")
        elif not check_value(k, keys[k], v):
            problems.append(f"ringkv.toml: `{k} = {v!r}` does not fit its type {keys[k]}")
        if f"RINGKV_{k.upper()}" in env:
            problems.append(f"ringkv.toml: `{k}` is also set by the environment, which wins: set it in one place")
    # The config file the node reads is the one the ConfigMap mounts.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    conf_vol = [n for n, v in vols.items() if v.get("configMap", {}).get("name") == "ringkv-config"]
    want_args = ["node", "--config", f"{mounts.get(conf_vol[0] if conf_vol else '', '?')}/ringkv.toml"]
    if c.get("args") != want_args:
        problems.append(f"args {c.get('args')} do not read the mounted ConfigMap ({want_args})")
    # Ports: what the node listens on, what the pod declares and probes.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for key, port in (("CLIENT", "client"), ("PEER", "peer"), ("ADMIN", "admin")):
        value = env.get(f"RINGKV_{key}", {}).get("value", "")
        if not value.endswith(f":{ports.get(port)}"):
            problems.append(f"RINGKV_{key}={value} does not listen on the {port} port {ports.get(port)}")
    https = env.get("RINGKV_TLS_ADMIN", {}).get("value") == "true"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c.get(probe, {}).get("httpGet", {})
        if (get.get("path"), get.get("port")) != ("/health", "admin"):
            problems.append(f"{probe} must GET /health on the admin port")
        if get.get("scheme", "HTTP") != ("HTTPS" if https else "HTTP"):
            problems.append(f"{probe}: scheme {get.get('scheme', 'HTTP')} with tls_admin {https}")
    for name in ("RINGKV_TLS_CERT_FILE", "RINGKV_TLS_KEY_FILE", "RINGKV_TLS_CA_CERT_FILE"):
        path = env.get(name, {}).get("value")
        if path and os.path.dirname(path) not in mounts.values():
            problems.append(f"{name}={path} is in no mounted directory")
    # Names: advertise and seeds are the headless Service's DNS names.
    headless = find(docs, "Service", sts["spec"]["serviceName"])
    if headless["spec"].get("clusterIP") != "None" or not headless["spec"].get("publishNotReadyAddresses"):
        problems.append("the StatefulSet's service must be headless with publishNotReadyAddresses")
    suffix = f".{headless['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local:{ports['peer']}"
    if env.get("RINGKV_NAME", {}).get("value") != "$(POD_NAME)":
        problems.append("RINGKV_NAME must be $(POD_NAME)")
    if env.get("RINGKV_ADVERTISE", {}).get("value") != "$(POD_NAME)" + suffix:
        problems.append(f"RINGKV_ADVERTISE must be $(POD_NAME){suffix}")
    seeds = env.get("RINGKV_SEEDS", {}).get("value", "").split(",")
    if seeds != [f"{sts['metadata']['name']}-{i}{suffix}" for i in range(len(seeds))] or len(seeds) > sts["spec"]["replicas"]:
        problems.append(f"RINGKV_SEEDS must be the first pods' names, as ringkv-0{suffix}")
    # Every selector finds the pods; the label that scaling down takes off
    # a pod to keep clients away is not one the StatefulSet selects by.
    labels = sts["spec"]["template"]["metadata"]["labels"]
    selectors = {f"StatefulSet {sts['metadata']['name']}": sts["spec"]["selector"]["matchLabels"]}
    for d in docs:
        if d["kind"] == "Service":
            selectors[f"Service {d['metadata']['name']}"] = d["spec"]["selector"]
        elif d["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            sel = d["spec"]["selector" if d["kind"] == "PodDisruptionBudget" else "podSelector"]
            selectors[f"{d['kind']} {d['metadata']['name']}"] = sel["matchLabels"]
    for who, sel in selectors.items():
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            problems.append(f"{who} selects {sel}, which the pods' labels {labels} do not match")
    client = find(docs, "Service", "ringkv")["spec"]["selector"]
    if "ringkv-clients" not in client or "ringkv-clients" in selectors[f"StatefulSet {sts['metadata']['name']}"]:
        problems.append("the client Service must select ringkv-clients, and the StatefulSet must not")
    return [f"{variant}: {p}" for p in problems]


def kubectl_render(tls):
    """`kubectl kustomize` of a copy of this directory (tls: with the
    component turned on), or None without kubectl."""
    if not shutil.which("kubectl"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "k")
        shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns("*.sh", "*.py", "compose.yml", "__pycache__"))
        if tls:
            kz = os.path.join(copy, "kustomization.yaml")
            text = open(kz).read()
            on = text.replace("# components:\n#   - tls\n", "components:\n  - tls\n")
            if on == text:
                fail("kustomization.yaml lacks the commented `# components:\\n#   - tls` lines")
            open(kz, "w").write(on)
        out = subprocess.run(["kubectl", "kustomize", copy], capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"kubectl kustomize failed: {out.stderr.strip()}")
        return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def canonical(docs):
    return sorted(json.dumps(d, sort_keys=True) for d in docs)


def cmd_validate(versions):
    import kubernetes_validate

    keys = config_keys()
    problems = []
    count = 0
    for tls in (False, True):
        variant = "with tls" if tls else "base"
        docs = render(tls)
        problems += check_consistency(docs, keys, variant)
        for version in versions:
            for d in docs:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                    count += 1
                except kubernetes_validate.ValidationError as e:
                    at = ".".join(str(p) for p in e.path) or "(top)"
                    problems.append(f"{variant}: {d['kind']}/{d['metadata']['name']} on Kubernetes {version}, at {at}: {e.message}")
                except Exception as e:  # no schema for the kind or version
                    problems.append(f"{variant}: {d['kind']}/{d['metadata']['name']} on Kubernetes {version}: {e}")
        theirs = kubectl_render(tls)
        if theirs is None:
            print(f"k8s.py: kubectl is not installed: not comparing the {variant} rendering with kubectl kustomize")
        elif canonical(theirs) != canonical(docs):
            problems.append(f"{variant}: kubectl kustomize renders other objects than k8s.py")
        else:
            print(f"k8s.py: {variant}: kubectl kustomize renders the same {len(docs)} objects")
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"k8s.py: {count} objects valid in strict mode on Kubernetes {', '.join(versions)} "
          f"(base and with tls); ringkv.toml has {len(tomllib.loads(configmap_toml(render())))} "
          f"settings, all known to src/config.rs")


def expand(value, env):
    """Kubernetes' $(VAR) expansion: known variables are replaced, $$ is a
    literal $, anything else stays as written."""
    return re.sub(
        r"\$\$|\$\((\w+)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


def pod_env(docs, pod, namespace):
    """The environment the StatefulSet gives pod POD (its own entries)."""
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in docs if d["kind"] == "Secret"}
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    env = {}
    for e in container(docs)["env"]:
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            fail(f"env {e['name']}: a source this check does not know")
    return env


def inspect(what, name):
    out = subprocess.run(["docker", what, "inspect", name], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"docker {what} inspect {name}: {out.stderr.strip()}")
    return json.loads(out.stdout)[0]


def cmd_check_pods(namespace, pods):
    docs = render()
    sts = find(docs, "StatefulSet")
    c = container(docs)
    spec = pod_spec(sts)
    headless = sts["spec"]["serviceName"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    ours = lambda k: k.startswith("RINGKV_") or k.startswith("POD_")
    problems = []
    for pod in pods:
        info = inspect("container", pod)
        image = inspect("image", info["Config"]["Image"])
        # In a pod as in the container, the image's environment is there
        # too, under the StatefulSet's.
        want = dict(e.split("=", 1) for e in image["Config"]["Env"] or [])
        want.update(pod_env(docs, pod, namespace))
        want = {k: v for k, v in want.items() if ours(k)}
        got = {k: v for k, v in (e.split("=", 1) for e in info["Config"]["Env"]) if ours(k)}
        for k in sorted(set(want) | set(got)):
            if want.get(k) != got.get(k):
                problems.append(f"{pod}: env {k}: StatefulSet gives {want.get(k)!r}, container has {got.get(k)!r}")
        if info["Config"]["Cmd"] != c["args"]:
            problems.append(f"{pod}: command {info['Config']['Cmd']} is not the StatefulSet's args {c['args']}")
        got_mounts = {m["Destination"] for m in info["Mounts"]}
        if got_mounts != mounts:
            problems.append(f"{pod}: mounts {sorted(got_mounts)}, StatefulSet {sorted(mounts)}")
        data = [m for m in info["Mounts"] if m["Destination"] == "/data"]
        claim = f"{sts['spec']['volumeClaimTemplates'][0]['metadata']['name']}-{pod}"
        if not data or not data[0].get("Name", "").endswith(claim):
            problems.append(f"{pod}: /data is not the named volume ...{claim} (its claim)")
        sc = spec["securityContext"]
        if info["Config"]["User"] != f"{sc['runAsUser']}:{sc['runAsGroup']}":
            problems.append(f"{pod}: user {info['Config']['User']}, StatefulSet {sc['runAsUser']}:{sc['runAsGroup']}")
        if info["HostConfig"]["ReadonlyRootfs"] != c["securityContext"]["readOnlyRootFilesystem"]:
            problems.append(f"{pod}: read-only root differs from the StatefulSet's")
        fqdn = f"{pod}.{headless}.{namespace}.svc.cluster.local"
        if (info["Config"]["Hostname"], info["Config"]["Domainname"]) != (pod, fqdn.split(".", 1)[1]):
            problems.append(f"{pod}: hostname {info['Config']['Hostname']}.{info['Config']['Domainname']}, not {fqdn}")
        aliases = [a for n in info["NetworkSettings"]["Networks"].values() for a in (n.get("Aliases") or [])]
        if fqdn not in aliases:
            problems.append(f"{pod}: {fqdn} is not one of its DNS names on the network ({aliases})")
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)


def main(argv):
    if not argv:
        sys.exit(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "validate" and args:
        cmd_validate(args)
    elif cmd == "toml" and not args:
        sys.stdout.write(configmap_toml(render()))
    elif cmd == "secret" and not args:
        sys.stdout.write(pod_env(render(), "x", "x")["RINGKV_CLUSTER_SECRET"])
    elif cmd == "check-pods" and len(args) >= 2:
        cmd_check_pods(args[0], args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
