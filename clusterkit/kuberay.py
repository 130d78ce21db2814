"""What the KubeRay operator (v1.7) would run for a rendered RayService, as plain data.

One `Node` per pod: the head, and `replicas` pods of every worker group. Each carries the
`ray start` parameters KubeRay builds for its container (rayStartParams completed from the
container limits, as ray-operator/controllers/ray/common/pod.go does) and the container's
environment. No Ray here: `localray.LocalRayCluster` starts these nodes on one machine.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import yaml

# Kubernetes quantity suffixes (resource.Quantity).
_SUFFIXES = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("500m", "4Gi", 2) as a number."""
    number, suffix = _QUANTITY.match(str(value)).groups()
    return float(number) * _SUFFIXES[suffix]


def ceil_quantity(value: str | int | float) -> int:
    """resource.Quantity.Value(): rounded up to a whole number, as KubeRay passes it to Ray."""
    return math.ceil(quantity(value) - 1e-9)


@dataclass(frozen=True)
class Node:
    """One Ray pod: `ray start` parameters (without dashes) and its container environment."""

    name: str
    group: str
    params: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_head(self) -> bool:
        return self.group == "head"


def ray_start_params(group: dict, *, head: bool) -> dict[str, str]:
    """rayStartParams completed as KubeRay completes them (generateRayStartCommand)."""
    params = {key: str(value) for key, value in (group.get("rayStartParams") or {}).items()}
    (container,) = [c for c in group["template"]["spec"]["containers"] if c["name"].startswith("ray-")]
    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    if "num-cpus" not in params and (cpu := limits.get("cpu") or requests.get("cpu")):
        params["num-cpus"] = str(ceil_quantity(cpu))
    if "memory" not in params and "memory" in limits:
        params["memory"] = str(ceil_quantity(limits["memory"]))
    gpus = [value for key, value in sorted(limits.items()) if key.endswith("gpu")]
    if "num-gpus" not in params and gpus and ceil_quantity(gpus[0]) > 0:
        params["num-gpus"] = str(ceil_quantity(gpus[0]))
    # The group's structured Ray resources and labels (KubeRay >= 1.5) become flags too.
    if group.get("resources"):
        params["resources"] = json.dumps({k: quantity(v) for k, v in group["resources"].items()})
    if group.get("labels"):
        params["labels"] = ",".join(f"{k}={v}" for k, v in group["labels"].items())
    # KubeRay always adds these (their ports are made local by the harness).
    params["block"] = "true"
    if head:
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", "8080")
    params.setdefault("dashboard-agent-listen-port", "52365")
    return params


# What KubeRay adds to every Ray container of a RayService unless the container sets it "to improve
# service SLA" (common/pod.go, setContainerEnvVars); checked against the real operator's pods.
RAYSERVICE_ENV = {
    "RAY_timeout_ms_task_wait_for_death_info": "0",
    "RAY_gcs_server_request_timeout_seconds": "5",
    "RAY_SERVE_KV_TIMEOUT_S": "5",
}


def container_env(group: dict) -> dict[str, str]:
    (container,) = [c for c in group["template"]["spec"]["containers"] if c["name"].startswith("ray-")]
    return RAYSERVICE_ENV | {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# What KubeRay gives workers when GCS fault tolerance is on (DefaultWorkerRayGcsReconnectTimeoutS):
# a raylet that cannot reach the GCS for this long exits, and a head takes ~2 min to come back.
# The variable is Ray's config override RAY_<name> with the config's own lower-case name
# (utils/constant.go RAY_GCS_RPC_SERVER_RECONNECT_TIMEOUT_S at v1.5.0); Ray ignores an upper-case one.
WORKER_GCS_RECONNECT_TIMEOUT = ("RAY_gcs_rpc_server_reconnect_timeout_s", "600")


def gcs_fault_tolerance(
    cluster: dict, secrets: dict[tuple[str, str], str], cluster_uid: str
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(head env, head rayStartParams, worker env) that KubeRay adds for gcsFaultToleranceOptions
    (common/pod.go, configureGCSFaultTolerance / configureRedisFT). `secrets` resolves the
    password's secretKeyRef: {(secret, key): value}; the namespace defaults to the cluster's UID."""
    options = cluster.get("gcsFaultToleranceOptions")
    if options is None:
        return {}, {}, {}
    head_env = {
        "RAY_external_storage_namespace": options.get("externalStorageNamespace") or cluster_uid,
        "RAY_REDIS_ADDRESS": options["redisAddress"],
    }
    head_params = {}
    if password := options.get("redisPassword"):
        ref = (password.get("valueFrom") or {}).get("secretKeyRef")
        value = secrets[(ref["name"], ref["key"])] if ref else password["value"]
        head_env["REDIS_PASSWORD"] = value
        # KubeRay writes "$REDIS_PASSWORD", which the pod's shell expands; no shell here.
        head_params["redis-password"] = value
    return head_env, head_params, dict([WORKER_GCS_RECONNECT_TIMEOUT])


def nodes(
    rayservice: dict, secrets: dict[tuple[str, str], str] | None = None, cluster_uid: str = "local-cluster"
) -> list[Node]:
    """The pods of the RayService's cluster: the head first, then each worker group's replicas."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    head_env, head_params, worker_env = gcs_fault_tolerance(cluster, secrets or {}, cluster_uid)
    out = [
        Node(
            "head",
            "head",
            ray_start_params(head, head=True) | head_params,
            container_env(head) | head_env,
        )
    ]
    for group in cluster.get("workerGroupSpecs", []):
        for index in range(group.get("replicas", 0)):
            out.append(
                Node(
                    f"{group['groupName']}-{index}",
                    group["groupName"],
                    ray_start_params(group, head=False),
                    container_env(group) | worker_env,
                )
            )
    return out


def serve_config(rayservice: dict) -> dict:
    """serveConfigV2 as the operator sends it: the YAML string, converted to JSON."""
    return yaml.safe_load(rayservice["spec"]["serveConfigV2"])
