"""The Helm chart rendered by the real, pinned helm binaries, and the schemas to check it with."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import jsonschema
import yaml

from clusterkit.kube import builds

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts"
CI_VALUES = CHART / "ci"
# Pinned in the Makefile (HELM_VERSIONS) and installed into bin/ by `make tools`.
HELMS = {version: REPO / "bin" / f"helm-{version}" for version in ("v4.3.1", "v3.18.0")}
HELM = HELMS["v4.3.1"]
# The Kubernetes versions the chart promises (Chart.yaml kubeVersion) up to the one kind runs.
KUBE_VERSIONS = ("1.25.0", "1.34.0")
ENVIRONMENTS = REPO / "k8s" / "envs"
# Every values scenario CI renders: the chart's defaults, each ci/*-values.yaml, and the values
# of each environment Argo CD deploys (k8s/envs/<env>/values.yaml).
SCENARIOS = (
    {"default": None}
    | {path.name.removesuffix("-values.yaml"): path for path in sorted(CI_VALUES.glob("*-values.yaml"))}
    | {f"env-{path.parent.name}": path for path in sorted(ENVIRONMENTS.glob("*/values.yaml"))}
)


class RenderError(Exception):
    """helm refused the values; the message is helm's."""


def helm(*args: str, binary: Path = HELM) -> subprocess.CompletedProcess:
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} is missing: run `make tools` (make test does)")
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)


# The namespace `render` renders into: the label the PodMonitor gives every series of a release
# there, and what the alert rules select on.
NAMESPACE = "serving"


def render(
    values: Path | list[Path] | None = None,
    *,
    sets: dict[str, str] | None = None,
    release: str = "mnist-serve",
    binary: Path = HELM,
    kube_version: str = KUBE_VERSIONS[-1],
    chart: Path = CHART,
) -> list[dict]:
    """`helm template` the chart with values file(s); the rendered objects, in order."""
    args = ["template", release, str(chart), "--namespace", NAMESPACE, "--kube-version", kube_version]
    for path in [values] if isinstance(values, Path) else values or []:
        args += ["--values", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set-json", f"{key}={value}"]
    result = helm(*args, binary=binary)
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def rayservice(objects: list[dict]) -> dict:
    (service,) = by_kind(objects, "RayService")
    return service


def groups(service: dict) -> dict[str, dict]:
    """The head group and every worker group, by name."""
    cluster = service["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"]} | {g["groupName"]: g for g in cluster["workerGroupSpecs"]}


def _structural(schema: dict) -> dict:
    """A CRD's openAPIV3Schema as the API server applies it, in plain JSON Schema terms."""
    if not isinstance(schema, dict):
        return schema
    out = {key: _structural(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        out["properties"] = {name: _structural(sub) for name, sub in schema["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = _structural(schema[key])
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    # Unknown fields are pruned or rejected by the API server unless explicitly preserved.
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def shared() -> Path:
    """`../shared` beside the checkout, where data from other repositories lives (it is never
    committed here). A clone made elsewhere finds it beside the repository it was cloned from;
    MNIST_SERVE_SHARED names it outright."""
    candidates = [Path(os.environ["MNIST_SERVE_SHARED"])] if "MNIST_SERVE_SHARED" in os.environ else []
    candidates.append(REPO.parent / "shared")
    origin = subprocess.run(
        ["git", "-C", str(REPO), "remote", "get-url", "origin"], capture_output=True, text=True
    ).stdout.strip()
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:  # a local path, not a URL
        candidates.append(Path(origin).resolve().parent / "shared")
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"no shared data folder: tried {', '.join(map(str, candidates))}")


# The KubeRay releases the chart is validated against, and where each one's CRDs come from: the
# oldest the chart supports from the ray-operator Go module the real-cluster tests run
# (config/crd/bases/ at the version clusterkit/kube/go/kuberay pins), the newest from
# ../shared/crds/ (the Go module proxy does not serve it).
OPERATOR_VERSIONS = ("1.5.0", "1.7.0")


def crd_folder(operator: str) -> Path:
    if operator == OPERATOR_VERSIONS[-1]:
        folder, found = shared() / "crds", ""
        if f"KubeRay v{operator} " in (folder / "SOURCE.txt").read_text():
            found = f"v{operator}"
    else:
        source = builds.module_source("kuberay", builds.KUBERAY)
        folder, found = source / "config" / "crd" / "bases", source.name.rpartition("@")[2]
    if found != f"v{operator}":
        raise FileNotFoundError(f"{folder} holds no KubeRay v{operator} CRDs")
    return folder


@functools.cache
def crd_validator(kind: str, operator: str = OPERATOR_VERSIONS[-1]) -> jsonschema.protocols.Validator:
    """A validator for a KubeRay custom resource, from that operator release's CRD."""
    crd = yaml.safe_load((crd_folder(operator) / f"ray.io_{kind.lower()}s.yaml").read_text())
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _structural(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)
