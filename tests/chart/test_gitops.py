"""The Argo CD manifests (k8s/argocd/): they point at what exists, in the right order, and leave
the worker counts to the Ray autoscaler."""

from __future__ import annotations

import yaml

from clusterkit.helmchart import CHART, ENVIRONMENTS, REPO

ARGOCD = REPO / "k8s" / "argocd"


def load(name: str) -> dict:
    return yaml.safe_load((ARGOCD / name).read_text())


def test_the_operator_syncs_first_at_the_version_the_chart_is_validated_against():
    operator, appset = load("kuberay-operator.yaml"), load("mnist-serve.yaml")
    wave = lambda obj: int(obj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])  # noqa: E731
    assert wave(operator) < wave(appset["spec"]["template"])
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert operator["spec"]["source"]["targetRevision"] == chart["annotations"]["mnist-serve/kuberay-version"]
    assert "ServerSideApply=true" in operator["spec"]["syncPolicy"]["syncOptions"]


def test_every_environment_deploys_the_chart_with_its_own_values():
    appset = load("mnist-serve.yaml")
    envs = [e["env"] for e in appset["spec"]["generators"][0]["list"]["elements"]]
    assert sorted(envs) == sorted(p.name for p in ENVIRONMENTS.iterdir())
    chart_source, values_source = appset["spec"]["template"]["spec"]["sources"]
    assert (REPO / chart_source["path"] / "Chart.yaml").is_file()
    assert values_source["ref"] == "values"
    (values_file,) = chart_source["helm"]["valueFiles"]
    for env in envs:
        assert (REPO / values_file.replace("$values/", "").replace("{{ .env }}", env)).is_file()
    project = load("project.yaml")
    namespaces = {d["namespace"] for d in project["spec"]["destinations"]}
    assert {f"mnist-serve-{env}" for env in envs} | {"kuberay-system"} <= namespaces


def test_the_autoscaler_owns_worker_replicas():
    spec = load("mnist-serve.yaml")["spec"]["template"]["spec"]
    (ignored,) = spec["ignoreDifferences"]
    assert (ignored["group"], ignored["kind"]) == ("ray.io", "RayService")
    assert ignored["jqPathExpressions"] == [".spec.rayClusterConfig.workerGroupSpecs[].replicas"]
    # Without this, a sync would still write Git's counts over the autoscaler's.
    assert "RespectIgnoreDifferences=true" in spec["syncPolicy"]["syncOptions"]


def test_staging_syncs_itself_and_prod_waits_for_a_person():
    appset = load("mnist-serve.yaml")
    auto = {e["env"]: e["autoSync"] for e in appset["spec"]["generators"][0]["list"]["elements"]}
    assert auto == {"staging": True, "prod": False}
    assert (
        "automated:" in appset["spec"]["templatePatch"]
        and "{{- if .autoSync }}" in appset["spec"]["templatePatch"]
    )


def test_the_health_check_reads_kuberays_ready_condition():
    script = load("argocd-cm-health.yaml")["data"]["resource.customizations.health.ray.io_RayService"]
    assert 'condition.type == "Ready"' in script and 'condition.type == "UpgradeInProgress"' in script
