"""The chart's pod as a static pod for a standalone kubelet.

helm/leakwatch is rendered with Helm's own library, as helm/tests/check_chart.py does
(the same `render`), and its Deployment's pod template becomes a Pod manifest that a
kubelet with no API server runs from its staticPodPath. Only what a static pod on a node
without a CNI or an API server cannot have is changed; every other field is kept as
rendered:
  - the ConfigMap volume becomes a hostPath directory holding the ConfigMap's files (a
    static pod cannot reference API objects);
  - hostNetwork: true (no CNI plugin gives the pod a network);
  - imagePullPolicy: Never on every container (no registry: the images are imported);
  - the Pod gets the name and namespace a Deployment's controller would have given it;
  - given a fleet kubeconfig (fleet.enabled), no serviceAccountName (a static pod gets no
    ServiceAccount token: no API server admits one for it): the sidecar's credentials for
    the slot Leases are that kubeconfig file, its directory a hostPath volume mounted
    read-only at FLEET_KUBECONFIG_DIR, and [fleet] in the config names it
    (`kubeconfig = ...`). The identity stays $POD_NAME: the downward API gives a static
    pod its name (NAME-<node name>).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

HELM = Path(__file__).resolve().parents[3] / "helm"
sys.path.insert(0, str(HELM / "tests"))

from check_chart import CHART, NAMESPACE, RELEASE, render  # noqa: E402

# Where the sidecar finds the fleet's kubeconfig (fleet_kubeconfig below).
FLEET_KUBECONFIG_DIR = "/etc/leakwatch-fleet"


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        raise SystemExit(f"static_pod: the chart rendered {len(found)} {kind}s, not one")
    return found[0]


def static_pod(docs: list[dict], name: str, config_dir: Path,
               fleet_kubeconfig: Path | None = None) -> dict:
    """The Deployment's pod as a static Pod; writes the ConfigMap's files to config_dir.
    fleet_kubeconfig: a kubeconfig file for the sidecar's [fleet] (its directory becomes a
    hostPath volume)."""
    deployment = one(docs, "Deployment")
    config_map = one(docs, "ConfigMap")
    template = copy.deepcopy(deployment["spec"]["template"])
    spec = template["spec"]

    data = dict(config_map.get("data", {}))
    if fleet_kubeconfig is not None:
        keys = {"kubeconfig": f"{FLEET_KUBECONFIG_DIR}/{fleet_kubeconfig.name}"}
        data = {k: with_fleet_keys(text, keys) if k.endswith(".toml") else text
                for k, text in data.items()}
        # What the chart gives the pod for the in-cluster credentials, which a static pod
        # cannot have.
        spec.pop("serviceAccountName", None)
        spec.pop("automountServiceAccountToken", None)
        spec.setdefault("volumes", []).append({
            "name": "leakwatch-fleet-kubeconfig",
            "hostPath": {"path": str(fleet_kubeconfig.parent), "type": "Directory"},
        })
        sidecar = [c for c in spec.get("initContainers", []) + spec["containers"]
                   if c["name"] == "leakwatch"]
        if len(sidecar) != 1:
            raise SystemExit(f"static_pod: {len(sidecar)} containers named leakwatch, expected one")
        sidecar[0].setdefault("volumeMounts", []).append({
            "name": "leakwatch-fleet-kubeconfig", "mountPath": FLEET_KUBECONFIG_DIR,
            "readOnly": True,
        })
    config_dir.mkdir(parents=True, exist_ok=True)
    for key, text in data.items():
        atomic_write(config_dir / key, text)
    replaced = 0
    for volume in spec.get("volumes", []):
        if volume.get("configMap", {}).get("name") == config_map["metadata"]["name"]:
            if volume["configMap"].get("items"):
                raise SystemExit("static_pod: a ConfigMap volume with items is not handled")
            del volume["configMap"]
            volume["hostPath"] = {"path": str(config_dir), "type": "Directory"}
            replaced += 1
    if replaced != 1:
        raise SystemExit(f"static_pod: {replaced} volumes of the ConfigMap, expected one")

    spec["hostNetwork"] = True
    for container in spec.get("initContainers", []) + spec["containers"]:
        container["imagePullPolicy"] = "Never"

    metadata = template.get("metadata", {})
    metadata["name"] = name
    metadata["namespace"] = NAMESPACE
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def with_fleet_keys(toml: str, keys: dict[str, str]) -> str:
    """The rendered config with `keys` (string values) added to its [fleet] table."""
    lines = toml.splitlines(keepends=True)
    if lines.count("[fleet]\n") != 1:
        raise SystemExit("static_pod: the rendered config has no [fleet] table (fleet.enabled?)")
    at = lines.index("[fleet]\n") + 1
    added = [f"{k} = {json.dumps(v)}\n" for k, v in keys.items()]
    return "".join(lines[:at] + added + lines[at:])


def atomic_write(path: Path, text: str) -> None:
    """Write through a hidden temp file and a rename: the kubelet's file source skips
    dot-files, and never reads a half-written manifest."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_static_pod(values: dict, name: str, manifests: Path, config_dir: Path,
                     fleet_kubeconfig: Path | None = None) -> dict:
    """Render the chart with `values`, write the pod to manifests/NAME.json; returns it."""
    docs = render(CHART, values)
    pod = static_pod(docs, name, config_dir, fleet_kubeconfig)
    atomic_write(manifests / f"{name}.json", json.dumps(pod, indent=2) + "\n")
    return pod


if __name__ == "__main__":
    # python static_pod.py VALUES_JSON NAME MANIFEST_DIR CONFIG_DIR: for looking at a render.
    values_arg, name_arg, manifests_arg, config_arg = sys.argv[1:5]
    print(json.dumps(write_static_pod(json.loads(values_arg), name_arg, Path(manifests_arg),
                                      Path(config_arg)), indent=2))
    print(f"release {RELEASE}", file=sys.stderr)
