#!/usr/bin/env bash
# Validates deploy/kubernetes offline, with no cluster:
#
#   - every object, rendered as kustomization.yaml says (and again with the
#     tls component on), against the JSON schemas of Kubernetes 1.30 (the
#     oldest this supports: the preStop `sleep` handler) and 1.37, in strict
#     mode (an unknown or misspelt field fails), with kubernetes-validate;
#   - the ConfigMap's TOML: it parses, and each key is a setting of
#     src/config.rs with a value of its type, not also set by the env;
#   - what the manifests promise each other: probes on /health of the admin
#     port, listen addresses on the declared ports, advertise and seeds the
#     headless Service's names, --config the mounted ConfigMap, no Service
#     links (they would put RINGKV_* variables in the environment);
#   - with kubectl installed, that `kubectl kustomize` renders the same.
#
# kubernetes-validate (pinned) goes into a virtual environment under
# target/k8s-venv, made once and reused while it imports. PyPI is needed
# the first time only. Exit status 0 only when everything is valid.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${K8S_VENV:-$ROOT/target/k8s-venv}
VALIDATOR=kubernetes-validate==1.37.0
K8S_VERSIONS=(1.30.0 1.37.0)

die() {
    echo "validate.sh: $*" >&2
    exit 1
}

venv_ready() {
    [[ -x $VENV/bin/python ]] &&
        "$VENV/bin/python" -c 'import kubernetes_validate, yaml, sys
from importlib.metadata import version
sys.exit(version("kubernetes-validate") != sys.argv[1])' "${VALIDATOR#*==}" 2>/dev/null
}

if ! venv_ready; then
    command -v python3 >/dev/null 2>&1 || die "python3 is missing"
    echo "validate.sh: making $VENV ($VALIDATOR)" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$VALIDATOR" ||
        die "pip install $VALIDATOR failed"
    venv_ready || die "$VENV does not import kubernetes_validate after installing it"
fi

"$VENV/bin/python" "$HERE/k8s.py" validate "${K8S_VERSIONS[@]}"
