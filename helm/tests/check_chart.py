"""Lint, render and validate helm/leakwatch with Helm's own library (helm-python-sdk) and
the Kubernetes API schemas (kubernetes-validate), for the default values, variants, the
values snippet of the README's Kubernetes section, and helm/examples/my-app (a chart that
injects the sidecar into its own pod).

    python helm/tests/check_chart.py OUT_DIR

Every rendered manifest is validated (strict: an unknown field fails) against Kubernetes
1.29 (the first release with native sidecars on by default) and the newest schema the
package ships; the Prometheus Operator monitors, which are CRDs it has no schema for,
against a schema of the fields the chart writes plus checks that they select the pod and
its port. Each variant's rendered leakwatch config goes to OUT_DIR/VARIANT.toml and its
manifests to OUT_DIR/VARIANT.json, for tests/helm_chart.rs to run the real binary on.
Exits non-zero with the first failed check.

    python helm/tests/check_chart.py --render VALUES_JSON

renders the chart with VALUES_JSON (a JSON object of values, or the path of a file holding
one; `{}` for the defaults) as release "demo" in namespace "shop", like the checks, and
prints its manifests as one JSON list on stdout, nothing else: for tests that apply the
chart's own objects (e.g. the fleet's Leases, ServiceAccount, Role and RoleBinding) to a
real API server. The fleet's objects name their namespace; the others, like any chart's,
take it from `kubectl apply -n shop`. Exits 1 with Helm's error on stderr when the values
are refused, 2 when VALUES_JSON is no JSON object.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

HELM = Path(__file__).resolve().parent.parent
CHART = HELM / "leakwatch"
EXAMPLE = HELM / "examples" / "my-app"
RELEASE = "demo"
NAMESPACE = "shop"
KUBE_VERSIONS = ["1.29", kubernetes_validate.latest_version()]

VARIANTS = {
    "default": {},
    "classic": {"sidecar": {"mode": "classic"}},
    "capabilities": {"sidecar": {"targetOtherUid": True}},
    "monitors": {
        "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "serviceMonitor": {"enabled": True},
    },
    # Bundles in an emptyDir both containers mount; the config gets [actions.bundle].
    "diagnostics": {"diagnostics": {"enabled": True, "keep": 3}},
    # Only the kubelet's nodes reach the probe port, only Prometheus the main one; the
    # target's own ports stay open.
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "probeFrom": [{"ipBlock": {"cidr": "10.0.0.0/16"}}],
            "metricsFrom": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            ],
        }
    },
    # Also what the TOML writer must get right: whole numbers as integers (`fail_after = 3`;
    # `3.0` is refused), ratios as floats, a regex's backslash and quotes escaped, a null
    # dropping a default key.
    "pod-ip": {
        "sidecar": {"listen": "podIP"},
        "targetProbe": {"path": "/healthz/app"},
        "config": {
            "judge": {"window": None, "fail_after": 3, "usage_floor": 0.5},
            "target": [
                {
                    "name": "app",
                    "cmdline_regex": 'demo-child --leak-every \\d+s( "[^"]*")?',
                    "rules": {"fds": {"max_ratio": 0.9}, "tcp_close_wait": {"max": 200}},
                }
            ],
        },
    },
    # Fleet-safe restarts: two restart slots (K Leases, a Role on exactly them, its
    # RoleBinding to the pod's ServiceAccount, POD_NAME on the sidecar, [fleet] in the config).
    "fleet": {"fleet": {"enabled": True, "maxConcurrent": 2}},
    # Observe mode, the first step of adoption: `mode = "observe"` at the config's top level
    # (every other variant renders the default, `mode = "enforce"`).
    "observe": {"mode": "observe"},
    # A percentage of the Deployment's replicas: 25% of 8 -> K = 2, written to the config as
    # that integer; a group of its own and every optional [fleet] key.
    "fleet-percent": {
        "workload": {"replicas": 8},
        "fleet": {
            "enabled": True,
            "group": "api",
            "maxConcurrent": "25%",
            "leaseDuration": "20s",
            "renewEvery": "5s",
            "healthyFor": "40s",
            "maxHold": "10m",
            "maxWait": "20m",
            "restartCost": "60s",
            "fallbackSpread": "5m",
        },
    },
    # Adoption as a team starts it: observe mode, the dashboard, and the fleet's slots
    # ready for when it enforces.
    "adoption": {
        "mode": "observe",
        "grafanaDashboard": {"enabled": True},
        "fleet": {"enabled": True, "maxConcurrent": 1},
    },
    # The Grafana dashboard as a ConfigMap for kube-prometheus-stack's dashboard sidecar.
    "dashboard": {
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"release": "kube-prometheus-stack"},
            "annotations": {"grafana_folder": "leakwatch"},
        },
    },
}
# The dashboard the chart's ConfigMap must hold: the .deb's copy, generated by
# packaging/grafana/generate.py into both places.
DASHBOARD = HELM.parent / "packaging" / "grafana" / "leakwatch.json"

# The fleet variants' group, K (the number of slot Leases) and leaseDurationSeconds.
FLEET = {"fleet": ("demo", 2, 15), "fleet-percent": ("api", 2, 20), "adoption": ("demo", 1, 15)}

# fleet.* values -> the config's [fleet] keys, each written only when set.
FLEET_KEYS = {
    "leaseDuration": "lease_duration",
    "renewEvery": "renew_every",
    "healthyFor": "healthy_for",
    "maxHold": "max_hold",
    "maxWait": "max_wait",
    "restartCost": "restart_cost",
    "fallbackSpread": "fallback_spread",
}

# K as the chart computes it: (fleet values, workload values, K). A percentage of N
# (fleet.replicas, else workload.replicas) is rounded up, and K is at least 1.
FLEET_SLOTS = [
    ({"maxConcurrent": 3}, {}, 3),
    ({"maxConcurrent": 1, "replicas": 50}, {}, 1),
    ({"maxConcurrent": "25%", "replicas": 8}, {}, 2),
    ({"maxConcurrent": "25%"}, {"replicas": 8}, 2),
    ({"maxConcurrent": "25%", "replicas": 9}, {"replicas": 2}, 3),
    ({"maxConcurrent": "10%", "replicas": 3}, {}, 1),
    ({"maxConcurrent": "100%", "replicas": 5}, {}, 5),
    ({"maxConcurrent": "25%", "replicas": 400}, {}, 100),
    ({"maxConcurrent": "1%", "replicas": 0}, {}, 1),
]

# Values the schema must refuse, and what each gets wrong.
BAD_VALUES = [
    ({"grafanaDashboard": {"enabled": "yes"}}, "/grafanaDashboard/enabled"),
    ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "/grafanaDashboard/labels"),
    ({"sidecar": {"mode": "sideways"}}, "/sidecar/mode"),
    ({"sidecar": {"port": "9717"}}, "/sidecar/port"),
    ({"sidecar": {"port": 70000}}, "/sidecar/port"),
    ({"sidecar": {"probePort": 0}}, "/sidecar/probePort"),
    ({"networkPolicy": {"probeFrom": "10.0.0.0/16"}}, "/networkPolicy/probeFrom"),
    ({"sidecar": {"capabilities": ["SYS_PTRACE"]}}, "capabilities"),
    ({"targetProbe": {"path": "/livez"}}, "/targetProbe/path"),
    ({"config": {"target": []}}, "/config/target"),
    ({"config": {"listen": "0.0.0.0:1"}}, "/config/listen"),
    ({"podMonitor": {"enabled": "yes"}}, "/podMonitor/enabled"),
    ({"diagnostics": {"path": "bundles"}}, "/diagnostics/path"),
    ({"fleet": {"enabled": True, "group": "Api"}}, "/fleet/group"),
    ({"fleet": {"enabled": True, "group": "a" * 41}}, "/fleet/group"),
    ({"fleet": {"enabled": True, "group": "-api"}}, "/fleet/group"),
    ({"fleet": {"enabled": True, "maxConcurrent": "0"}}, "/fleet/maxConcurrent"),
    ({"fleet": {"enabled": True, "maxConcurrent": "150%"}}, "/fleet/maxConcurrent"),
    ({"fleet": {"enabled": True, "maxConcurrent": "x"}}, "/fleet/maxConcurrent"),
    ({"fleet": {"enabled": True, "maxConcurrent": 0}}, "/fleet/maxConcurrent"),
    ({"fleet": {"enabled": True, "maxConcurrent": 1.5}}, "/fleet/maxConcurrent"),
    ({"fleet": {"enabled": True, "maxConcurrent": 101}}, "/fleet/maxConcurrent"),
    ({"fleet": {"enabled": True, "leaseDuration": "15"}}, "/fleet/leaseDuration"),
    ({"fleet": {"enabled": "yes"}}, "/fleet/enabled"),
    ({"config": {"fleet": {"group": "api"}}}, "/config/fleet"),
    ({"mode": "dry-run"}, "/mode"),
    ({"config": {"mode": "observe"}}, "/config/mode"),
]

# Values the schema lets through but the templates refuse (with this release name), and a
# piece of the message: the group's default, the release name, is no DNS-1123 label of at
# most 40 characters; a percentage comes to more than 100 slots (leakwatch's limit).
BAD_RENDERS = [
    ({"fleet": {"enabled": True}}, "a-release-name-of-more-than-forty-characters", "set fleet.group"),
    ({"fleet": {"enabled": True}}, "shop.api", "set fleet.group"),
    ({"fleet": {"enabled": True, "maxConcurrent": "25%", "replicas": 404}}, RELEASE, "101 slots"),
]

_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "path": {"type": "string", "pattern": "^/"},
        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
        "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
    },
}


def _monitor_schema(kind: str, endpoints: str) -> dict:
    """The fields of monitoring.coreos.com/v1 PodMonitor/ServiceMonitor the chart writes
    (names and types as in the Prometheus Operator CRDs); anything else is refused."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints],
                "properties": {
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "matchLabels": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            }
                        },
                    },
                    endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }


MONITOR_SCHEMAS = {
    "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints"),
    "ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
}


class CheckFailed(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def lint(path: Path, values: dict, what: str) -> None:
    report = helm.lint(path, values, strict=True, namespace=NAMESPACE)
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    check(not bad and not report["errors"], f"helm lint {what}: {report}")


def render(path: Path, values: dict, release: str = RELEASE) -> list[dict]:
    with helm.Chart.load(path) as chart:
        files = chart.render(values, name=release, namespace=NAMESPACE)
    docs = []
    for name, text in sorted(files.items()):
        if not name.endswith((".yaml", ".yml")):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def validate(doc: dict, what: str) -> None:
    kind = doc.get("kind")
    name = f"{what}: {kind}/{doc.get('metadata', {}).get('name')}"
    if kind in MONITOR_SCHEMAS:
        try:
            jsonschema.validate(doc, MONITOR_SCHEMAS[kind])
        except jsonschema.ValidationError as e:
            raise CheckFailed(f"{name}: {e.message} at {list(e.absolute_path)}") from None
        return
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path)
            raise CheckFailed(f"{name} is not valid Kubernetes {version}: {e.message} at {path}") from None


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    check(len(found) == 1, f"one {kind}, got {len(found)}")
    return found[0]


def kinds(docs: list[dict]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def sidecar_of(pod: dict, mode: str) -> dict:
    """The leakwatch container, checked to sit where `mode` puts it."""
    init = [c for c in pod.get("initContainers") or [] if c["name"] == "leakwatch"]
    regular = [c for c in pod["containers"] if c["name"] == "leakwatch"]
    if mode == "native":
        check(len(init) == 1 and not regular, "native: leakwatch is an init container only")
        check(init[0].get("restartPolicy") == "Always", "native: restartPolicy Always")
        return init[0]
    check(len(regular) == 1 and not init, "classic: leakwatch is a regular container only")
    check("restartPolicy" not in regular[0], "classic: no container restartPolicy")
    return regular[0]


def check_pod(pod: dict, target_name: str, mode: str, port: int, probe_port: int, path: str) -> dict:
    check(pod.get("shareProcessNamespace") is True, "shareProcessNamespace: true")
    sidecar = sidecar_of(pod, mode)
    target = [c for c in pod["containers"] if c["name"] == target_name]
    check(len(target) == 1, f"the target container {target_name}")
    probe = target[0].get("livenessProbe")
    check(probe is not None, "the target has a livenessProbe")
    check(
        probe["httpGet"] == {"path": path, "port": probe_port},
        f"the target's probe asks the sidecar's probe port by number and {path}: {probe}",
    )
    check(
        (probe["timeoutSeconds"], probe["periodSeconds"], probe["failureThreshold"]) == (3, 10, 3),
        f"probe timing 3/10/3: {probe}",
    )
    ports = sidecar["ports"]
    check(
        ports
        == [
            {"name": "leakwatch", "containerPort": port, "protocol": "TCP"},
            {"name": "leakwatch-probe", "containerPort": probe_port, "protocol": "TCP"},
        ],
        f"{ports}",
    )
    for which in ("startupProbe", "livenessProbe"):
        check(
            sidecar[which]["httpGet"] == {"path": "/livez", "port": probe_port},
            f"leakwatch's {which} on /livez at the probe port: {sidecar[which]}",
        )
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    check(mounts["leakwatch-config"]["mountPath"] == "/etc/leakwatch", "config mounted")
    args = sidecar["args"]
    check(args[:3] == ["run", "-c", "/etc/leakwatch/leakwatch.toml"], f"sidecar args {args}")
    volumes = {v["name"]: v for v in pod["volumes"]}
    check("configMap" in volumes["leakwatch-config"], "the config volume is the ConfigMap")
    return sidecar


def check_restricted(pod: dict, sidecar: dict) -> None:
    """Pod Security "restricted": non-root, no escalation, ALL dropped, seccomp."""
    psc = pod.get("securityContext", {})
    for c in pod["containers"] + (pod.get("initContainers") or []):
        sc = c.get("securityContext", {})
        runs_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        check(runs_non_root is True, f"{c['name']}: runAsNonRoot")
        check(sc.get("allowPrivilegeEscalation") is False, f"{c['name']}: no escalation")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{c['name']}: drop ALL")
        check("add" not in sc.get("capabilities", {}), f"{c['name']}: adds no capability")
        check(seccomp == "RuntimeDefault", f"{c['name']}: seccomp RuntimeDefault")
        check(sc.get("runAsUser", 1) != 0, f"{c['name']}: not uid 0")
    sc = sidecar["securityContext"]
    check(sc.get("readOnlyRootFilesystem") is True, "sidecar: read-only root")
    check("runAsUser" not in sc, "sidecar: the pod's uid, the target's")


def labels_select(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_variant(name: str, values: dict, docs: list[dict]) -> None:
    mode = values.get("sidecar", {}).get("mode", "native")
    path = values.get("targetProbe", {}).get("path", "/healthz")
    deployment = one(docs, "Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    sidecar = check_pod(pod, "app", mode, 9717, 9718, path)
    check(
        labels_select(deployment["spec"]["selector"]["matchLabels"], template["metadata"]["labels"]),
        "the Deployment selects its pods",
    )

    # The demo target: leakwatch's own image running its leaking child, which the
    # config's cmdline_regex selects (and leakwatch's own command line does not).
    target = next(c for c in pod["containers"] if c["name"] == "app")
    check(target["image"] == sidecar["image"], "the demo target runs the leakwatch image")
    check(target["args"][:3] == ["demo-child", "--leak-every", "2s"], f"demo args {target['args']}")
    cm = one(docs, "ConfigMap")
    regex = re.compile(_toml_string(cm["data"]["leakwatch.toml"], "cmdline_regex"))
    check(regex.search("leakwatch " + " ".join(target["args"])) is not None, "regex selects the demo")
    check(regex.search("leakwatch " + " ".join(sidecar["args"])) is None, "regex skips leakwatch")

    sc = sidecar["securityContext"]
    listen = sidecar["args"][sidecar["args"].index("--listen") + 1]
    probe_listen = sidecar["args"][sidecar["args"].index("--probe-listen") + 1]
    if values.get("sidecar", {}).get("listen") == "podIP":
        check(listen == "$(POD_IP):9717", f"listen on the pod IP: {listen}")
        check(probe_listen == "$(POD_IP):9718", f"probes on the pod IP: {probe_listen}")
        env = {e["name"]: e for e in sidecar["env"]}
        check(env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", "POD_IP")
    else:
        check(listen == "0.0.0.0:9717", f"listen on all addresses: {listen}")
        check(probe_listen == "0.0.0.0:9718", f"probes on all addresses: {probe_listen}")
    if values.get("sidecar", {}).get("targetOtherUid"):
        check(sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE", "DAC_READ_SEARCH"]}, f"{sc}")
        check(sc["runAsUser"] == 0 and sc["runAsNonRoot"] is False, f"caps need root: {sc}")
        check(sc["allowPrivilegeEscalation"] is False, "still no escalation")
    else:
        check_restricted(pod, sidecar)

    check_diagnostics(values, pod, sidecar, target, cm["data"]["leakwatch.toml"])

    config = tomllib.loads(cm["data"]["leakwatch.toml"])
    mode = values.get("mode", "enforce")
    check(config.get("mode") == mode, f"{name}: mode = {mode!r} in the config: {config.get('mode')!r}")
    check(all("mode" not in t for t in config["target"]), f"{name}: no target sets its own mode")

    check_fleet(name, values, docs, pod, sidecar)

    monitors = "podMonitor" in values
    policy = "networkPolicy" in values
    slots = FLEET[name][1] if name in FLEET else 0
    present = kinds(docs)
    expected = sorted(
        ["ConfigMap", "Deployment"]
        + (["NetworkPolicy"] if policy else [])
        + (["PodMonitor", "Service", "ServiceMonitor"] if monitors else [])
        + (["Lease"] * slots + ["Role", "RoleBinding", "ServiceAccount"] if slots else [])
    )
    check(present == expected, f"{name}: rendered {present}, expected {expected}")
    if policy:
        check_network_policy(values, docs, template["metadata"]["labels"])
    if monitors:
        pod_labels = template["metadata"]["labels"]
        pm = one(docs, "PodMonitor")
        check(labels_select(pm["spec"]["selector"]["matchLabels"], pod_labels), "PodMonitor selects the pod")
        check(pm["spec"]["podMetricsEndpoints"][0]["port"] == "leakwatch", "PodMonitor port name")
        check(pm["metadata"]["labels"]["release"] == "prometheus", "PodMonitor labels")
        svc = one(docs, "Service")
        check(labels_select(svc["spec"]["selector"], pod_labels), "the Service selects the pod")
        check(svc["spec"]["ports"][0]["targetPort"] == 9717, "Service targetPort by number")
        sm = one(docs, "ServiceMonitor")
        check(labels_select(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]), "ServiceMonitor selects the Service")
        check(sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"], "ServiceMonitor port name")


def split_dashboard(name: str, values: dict, docs: list[dict]) -> list[dict]:
    """grafanaDashboard.enabled: one ConfigMap labelled grafana_dashboard: "1" holding
    packaging/grafana/leakwatch.json as valid JSON, with the values' namespace, labels and
    annotations; none otherwise. Returns the other manifests."""
    dash = [d for d in docs if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})]
    rest = [d for d in docs if not any(d is x for x in dash)]
    gd = values.get("grafanaDashboard", {})
    if not gd.get("enabled"):
        check(not dash, f"{name}: no dashboard ConfigMap unless grafanaDashboard.enabled")
        return rest
    check(len(dash) == 1, f"{name}: one dashboard ConfigMap, got {len(dash)}")
    meta = dash[0]["metadata"]
    check(meta["labels"]["grafana_dashboard"] == "1", f"{name}: label grafana_dashboard: \"1\"")
    for k, v in gd.get("labels", {}).items():
        check(meta["labels"].get(k) == v, f"{name}: dashboard label {k}={v}: {meta['labels']}")
    check(meta.get("annotations", {}) == gd.get("annotations", {}), f"{name}: annotations {meta.get('annotations')}")
    check(meta.get("namespace", "") == gd.get("namespace", ""), f"{name}: namespace {meta.get('namespace')}")
    check(list(dash[0]["data"]) == ["leakwatch.json"], f"{name}: data keys {list(dash[0]['data'])}")
    text = dash[0]["data"]["leakwatch.json"]
    try:
        held = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckFailed(f"{name}: the dashboard ConfigMap holds invalid JSON: {e}")
    check(held == json.loads(DASHBOARD.read_text()), f"{name}: the ConfigMap's dashboard differs from {DASHBOARD}")
    check(text == DASHBOARD.read_text().rstrip("\n"), f"{name}: the ConfigMap's text differs from {DASHBOARD}")
    return rest


FLEET_KINDS = ("Lease", "Role", "RoleBinding", "ServiceAccount")


def check_fleet(name: str, values: dict, docs: list[dict], pod: dict, sidecar: dict) -> None:
    """fleet.enabled: exactly K slot Leases (no holder), a Role whose only rule is get and
    update on exactly those Lease names, a RoleBinding of it to the pod's ServiceAccount,
    POD_NAME from the downward API on the sidecar, and [fleet] in the config with the group
    and K as an integer; off, none of it."""
    env = {e["name"]: e for e in sidecar.get("env", [])}
    config = tomllib.loads(one(docs, "ConfigMap")["data"]["leakwatch.toml"])
    if name not in FLEET:
        present = [f"{d['kind']}/{d['metadata']['name']}" for d in docs if d["kind"] in FLEET_KINDS]
        check(not present, f"{name}: no fleet objects with fleet off: {present}")
        check("serviceAccountName" not in pod, f"{name}: the namespace's default ServiceAccount")
        check("automountServiceAccountToken" not in pod, f"{name}: automount as before")
        check("POD_NAME" not in env, f"{name}: no POD_NAME with fleet off")
        check("fleet" not in config, f"{name}: no [fleet] with fleet off")
        return
    group, slots, seconds = FLEET[name]
    names = [f"leakwatch-{group}-slot-{i}" for i in range(slots)]
    labels = one(docs, "ConfigMap")["metadata"]["labels"]
    leases = [d for d in docs if d["kind"] == "Lease"]
    check([d["metadata"]["name"] for d in leases] == names, f"{name}: Leases {names}: {leases}")
    for lease in leases:
        meta = lease["metadata"]
        check(meta.get("namespace") == NAMESPACE and meta["labels"] == labels, f"{name}: {meta}")
        check(lease["spec"] == {"leaseDurationSeconds": seconds}, f"{name}: no holder: {lease['spec']}")

    sa = one(docs, "ServiceAccount")
    role = one(docs, "Role")
    binding = one(docs, "RoleBinding")
    for d in (sa, role, binding):
        check(d["metadata"].get("namespace") == NAMESPACE, f"{name}: {d['kind']} in {NAMESPACE}")
        check(d["metadata"]["labels"] == labels, f"{name}: {d['kind']}'s labels")
    check(
        role["rules"]
        == [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": names,
                "verbs": ["get", "update"],
            }
        ],
        f"{name}: the Role allows get and update on exactly the slot Leases: {role['rules']}",
    )
    check(pod.get("serviceAccountName") == sa["metadata"]["name"], f"{name}: the pod runs as {sa['metadata']['name']}")
    check(pod.get("automountServiceAccountToken") is True, f"{name}: the token is mounted")
    check(
        binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
        f"{name}: the RoleBinding names the Role: {binding['roleRef']}",
    )
    check(
        binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}],
        f"{name}: the RoleBinding binds the pod's ServiceAccount: {binding['subjects']}",
    )
    check(
        env.get("POD_NAME") == {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        f"{name}: POD_NAME from the downward API: {env.get('POD_NAME')}",
    )
    fleet = values["fleet"]
    expected = {"group": group, "max_concurrent": slots} | {
        key: fleet[value] for value, key in FLEET_KEYS.items() if fleet.get(value) is not None
    }
    check(config.get("fleet") == expected, f"{name}: [fleet] {config.get('fleet')}, expected {expected}")
    check(type(config["fleet"]["max_concurrent"]) is int, f"{name}: max_concurrent is the integer K")


def check_fleet_slots() -> int:
    """K for integers and percentages: as many Leases, as many names in the Role, and the
    same integer in the config."""
    for fleet, workload, slots in FLEET_SLOTS:
        values = {"fleet": {"enabled": True} | fleet, "workload": workload}
        docs = render(CHART, values)
        leases = [d["metadata"]["name"] for d in docs if d["kind"] == "Lease"]
        check(leases == [f"leakwatch-{RELEASE}-slot-{i}" for i in range(slots)], f"{values}: {slots} Leases: {leases}")
        check(one(docs, "Role")["rules"][0]["resourceNames"] == leases, f"{values}: the Role names the Leases")
        config = tomllib.loads(one(docs, "ConfigMap")["data"]["leakwatch.toml"])
        check(config["fleet"]["max_concurrent"] == slots, f"{values}: max_concurrent = {slots}: {config['fleet']}")
    return len(FLEET_SLOTS)


def check_network_policy(values: dict, docs: list[dict], pod_labels: dict) -> None:
    """The kubelet's nodes to the probe port, Prometheus to the main port, every other port
    of the pod from anywhere: TCP around the two ports, all of UDP and SCTP."""
    np = values["networkPolicy"]
    policy = one(docs, "NetworkPolicy")["spec"]
    check(labels_select(policy["podSelector"]["matchLabels"], pod_labels), "the policy selects the pod")
    check(policy["policyTypes"] == ["Ingress"], f"{policy['policyTypes']}")
    rules = policy["ingress"]
    check(len(rules) == 3, f"three rules: {rules}")
    check(rules[0] == {"from": np["probeFrom"], "ports": [{"port": 9718, "protocol": "TCP"}]}, f"{rules[0]}")
    check(rules[1] == {"from": np["metricsFrom"], "ports": [{"port": 9717, "protocol": "TCP"}]}, f"{rules[1]}")
    others = rules[2]
    check("from" not in others, "other ports from anywhere")
    check(
        others["ports"]
        == [
            {"port": 1, "endPort": 9716, "protocol": "TCP"},
            {"port": 9719, "endPort": 65535, "protocol": "TCP"},
            {"protocol": "UDP"},
            {"protocol": "SCTP"},
        ],
        f"every TCP port but leakwatch's, and all of UDP and SCTP: {others['ports']}",
    )


def check_diagnostics(values: dict, pod: dict, sidecar: dict, target: dict, toml: str) -> None:
    """diagnostics.enabled: one emptyDir, mounted by both containers at the bundle dir the
    config names; off, none of it."""
    on = values.get("diagnostics", {}).get("enabled", False)
    path = "/var/lib/leakwatch/bundles"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = lambda c: {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    if not on:
        check("leakwatch-bundles" not in volumes, "no bundles volume when off")
        check("[actions" not in toml, f"no actions when off:\n{toml}")
        return
    check(volumes["leakwatch-bundles"] == {"name": "leakwatch-bundles", "emptyDir": {"sizeLimit": "512Mi"}}, f"{volumes}")
    check(mounts(sidecar).get("leakwatch-bundles") == path, f"the sidecar mounts the bundles: {mounts(sidecar)}")
    check(mounts(target).get("leakwatch-bundles") == path, f"the target mounts the bundles: {mounts(target)}")
    check("[actions.bundle]" in toml and _toml_string(toml, "dir") == path, f"[actions.bundle] dir:\n{toml}")
    check(re.search(r"^keep = 3$", toml, re.M) is not None, f"keep from the values:\n{toml}")
    check(re.search(r'^max_bytes = "50MiB"$', toml, re.M) is not None, f"max_bytes:\n{toml}")


def _toml_string(text: str, key: str) -> str:
    """The first `key = "..."` of a rendered config (a JSON string is a TOML string)."""
    m = re.search(rf'^{key} = (".*")$', text, re.M)
    check(m is not None, f"{key} in the config:\n{text}")
    return json.loads(m.group(1))


def check_inject(out: Path) -> list[dict]:
    """helm/examples/my-app: a chart that includes the sidecar templates in its own pod."""
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp) / "my-app"
        shutil.copytree(EXAMPLE, parent)
        shutil.copytree(CHART, parent / "charts" / "leakwatch")
        lint(parent, {}, "examples/my-app")
        docs = render(parent, {})
    check(kinds(docs) == ["ConfigMap", "Deployment"], f"my-app renders {kinds(docs)}")
    deployment = one(docs, "Deployment")
    check(deployment["metadata"]["name"] == f"{RELEASE}-my-app", "only my-app's Deployment")
    pod = deployment["spec"]["template"]["spec"]
    check_pod(pod, "my-app", "native", 9717, 9718, "/healthz")
    check("serviceAccountName" not in pod, "my-app: no ServiceAccount with fleet off")
    cm = one(docs, "ConfigMap")
    volumes = {v["name"]: v for v in pod["volumes"]}
    check(volumes["leakwatch-config"]["configMap"]["name"] == cm["metadata"]["name"], "the volume names the ConfigMap")
    check(_toml_string(cm["data"]["leakwatch.toml"], "name") == "my-app", "my-app's target")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    check("checksum/leakwatch-config" in annotations, "the config checksum annotation")
    sidecar = sidecar_of(pod, "native")
    check_restricted(pod, sidecar)
    return docs


def check_inject_fleet() -> list[dict]:
    """helm/examples/my-app with the subchart's fleet on: the subchart renders the Lease,
    ServiceAccount, Role and RoleBinding, and my-app's pod runs as that ServiceAccount."""
    values = {"leakwatch": {"fleet": {"enabled": True, "group": "my-app"}}}
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp) / "my-app"
        shutil.copytree(EXAMPLE, parent)
        shutil.copytree(CHART, parent / "charts" / "leakwatch")
        lint(parent, values, "examples/my-app with fleet")
        docs = render(parent, values)
    expected = ["ConfigMap", "Deployment", "Lease", "Role", "RoleBinding", "ServiceAccount"]
    check(kinds(docs) == expected, f"my-app with fleet renders {kinds(docs)}")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    check(pod.get("serviceAccountName") == sa and pod.get("automountServiceAccountToken") is True, f"{pod}")
    binding = one(docs, "RoleBinding")
    check(binding["subjects"][0]["name"] == sa, f"my-app: the RoleBinding binds {sa}")
    check(one(docs, "Lease")["metadata"]["name"] == "leakwatch-my-app-slot-0", "my-app's slot")
    env = {e["name"] for e in sidecar_of(pod, "native")["env"]}
    check("POD_NAME" in env, f"my-app: POD_NAME on the sidecar: {env}")
    return docs


def readme_values() -> dict:
    """The values snippet of docs/kubernetes.md's "Kubernetes (Helm sidecar)" section."""
    readme = (HELM.parent / "docs" / "kubernetes.md").read_text()
    section = readme.split("\n## Kubernetes (Helm sidecar)\n", 1)
    check(len(section) == 2, "docs/kubernetes.md has its Kubernetes section")
    block = re.search(r"^```yaml\n(.*?)^```", section[1], re.M | re.S)
    check(block is not None, "the Kubernetes section has a values snippet")
    return yaml.safe_load(block.group(1))


def check_readme(values: dict, docs: list[dict]) -> None:
    """The README's own-service recipe: the api container, probed through leakwatch."""
    check(kinds(docs) == ["ConfigMap", "Deployment"], f"README values render {kinds(docs)}")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    sidecar = check_pod(pod, "api", "native", 9717, 9718, "/healthz")
    check_restricted(pod, sidecar)
    check(pod["securityContext"]["runAsUser"] == 10001, "the api's uid for the pod")
    api = next(c for c in pod["containers"] if c["name"] == "api")
    check(api["command"] == ["/usr/bin/api", "--serve"] and "args" not in api, f"{api}")
    cm = one(docs, "ConfigMap")
    regex = re.compile(_toml_string(cm["data"]["leakwatch.toml"], "cmdline_regex"))
    check(regex.search(" ".join(api["command"])) is not None, "the regex selects the api")
    check(sidecar["resources"]["limits"]["memory"] == "96Mi", "the sized limit")
    config = tomllib.loads(cm["data"]["leakwatch.toml"])
    check(config.get("mode") == values.get("mode", "enforce"), f"README: the mode: {config.get('mode')}")


def check_bad_values() -> int:
    for values, where in BAD_VALUES:
        with helm.Chart.load(CHART) as chart:
            try:
                chart.render(values, name=RELEASE, namespace=NAMESPACE)
            except helm.HelmValuesError as e:
                check(where in str(e), f"refusing {values} names {where}: {e}")
            else:
                raise CheckFailed(f"values.schema.json accepted {values}")
        report = helm.lint(CHART, values, strict=True)
        check(bool(report["errors"]), f"helm lint accepted {values}: {report}")
    for values, release, message in BAD_RENDERS:
        try:
            render(CHART, values, release)
        except helm.HelmRenderError as e:
            check(message in str(e), f"refusing {values} as release {release} says {message!r}: {e}")
        else:
            raise CheckFailed(f"the chart rendered {values} as release {release}")
        render(CHART, {}, release)  # the release name itself is fine without fleet
    return len(BAD_VALUES) + len(BAD_RENDERS)


def render_only(arg: str) -> int:
    """--render VALUES_JSON: the chart's manifests as one JSON list on stdout."""
    try:
        values = json.loads(arg)
    except json.JSONDecodeError:
        try:
            values = json.loads(Path(arg).read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"--render: {arg!r} is neither a JSON object nor a file holding one: {e}", file=sys.stderr)
            return 2
    if not isinstance(values, dict):
        print(f"--render: the values must be a JSON object, got {arg}", file=sys.stderr)
        return 2
    try:
        docs = render(CHART, values)
    except helm.HelmError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    json.dump(docs, sys.stdout, indent=1)
    print()
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        return render_only(sys.argv[2])
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with helm.Chart.load(CHART) as chart:
        app_version = chart.metadata["appVersion"]
    print(f"helm {helm.helm_sdk_version()}, schemas of Kubernetes {' and '.join(KUBE_VERSIONS)}")
    try:
        validated = 0
        for name, values in VARIANTS.items():
            lint(CHART, values, name)
            docs = render(CHART, values)
            for doc in docs:
                validate(doc, name)
                validated += 1
            others = split_dashboard(name, values, docs)
            check_variant(name, values, others)
            (out / f"{name}.toml").write_text(one(others, "ConfigMap")["data"]["leakwatch.toml"])
            (out / f"{name}.json").write_text(json.dumps(docs, indent=1))
            print(f"ok  {name}: lint, {len(docs)} manifests valid ({', '.join(kinds(docs))})")
        values = readme_values()
        lint(CHART, values, "README")
        docs = render(CHART, values)
        for doc in docs:
            validate(doc, "README")
            validated += 1
        check_readme(values, docs)
        (out / "readme.toml").write_text(one(docs, "ConfigMap")["data"]["leakwatch.toml"])
        print("ok  the README's values for a service of your own")
        docs = check_inject(out)
        for doc in docs:
            validate(doc, "examples/my-app")
            validated += 1
        (out / "my-app.toml").write_text(one(docs, "ConfigMap")["data"]["leakwatch.toml"])
        (out / "my-app.json").write_text(json.dumps(docs, indent=1))
        print("ok  examples/my-app: the sidecar injected into another chart's pod")
        docs = check_inject_fleet()
        for doc in docs:
            validate(doc, "examples/my-app with fleet")
            validated += 1
        print("ok  examples/my-app with fleet: the subchart's Lease and RBAC, the pod's ServiceAccount")
        slots = check_fleet_slots()
        print(f"ok  fleet: K Leases, Role names and max_concurrent agree for {slots} integers and percentages")
        refused = check_bad_values()
        print(f"ok  values.schema.json refuses {refused} wrong values (render and lint)")
    except (CheckFailed, helm.HelmError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    (out / "app_version").write_text(app_version)
    print(f"{validated} manifests validated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
