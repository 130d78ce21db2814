"""The Argo CD manifests (k8s/argocd/): they point at what exists, in the right order, and judge a
RayService's health by what KubeRay reports."""

from __future__ import annotations

import lupa
import pytest
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


def test_argo_cd_applies_the_worker_groups_as_git_has_them():
    """The autoscaler's replica counts live in the RayCluster, which Argo CD does not manage; an
    ignoreDifferences on the RayService's would make Argo CD apply the live worker-group list
    (mnist-serve.yaml says why). tests/gitops checks on a real Argo CD that the Application stays
    Synced while the autoscaler adds a worker."""
    spec = load("mnist-serve.yaml")["spec"]["template"]["spec"]
    assert "ignoreDifferences" not in spec
    assert "RespectIgnoreDifferences=true" not in spec["syncPolicy"]["syncOptions"]


def test_staging_syncs_itself_and_prod_waits_for_a_person():
    appset = load("mnist-serve.yaml")
    auto = {e["env"]: e["autoSync"] for e in appset["spec"]["generators"][0]["list"]["elements"]}
    assert auto == {"staging": True, "prod": False}
    assert (
        "automated:" in appset["spec"]["templatePatch"]
        and "{{- if .autoSync }}" in appset["spec"]["templatePatch"]
    )


def condition(kind: str, status: str, reason: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": f"{kind} {reason}".strip()}


# KubeRay's RayService conditions (ray-operator/apis/ray/v1/rayservice_types.go) and the health
# Argo CD must show for them; InitializingTimeout is final (markFailedOnInitializingTimeout,
# rayservice_controller.go), so it is Degraded, never Progressing forever.
HEALTH = [
    ("no status yet", None, "Progressing"),
    ("initializing", [condition("Ready", "False", "Initializing")], "Progressing"),
    ("ready", [condition("Ready", "True", "NonZeroServeEndpoints")], "Healthy"),
    (
        "upgrading",
        [
            condition("Ready", "True"),
            condition("UpgradeInProgress", "True", "BothActivePendingClustersExist"),
        ],
        "Progressing",
    ),
    ("rolling back", [condition("Ready", "True"), condition("RollbackInProgress", "True")], "Progressing"),
    ("initializing timeout", [condition("Ready", "False", "InitializingTimeout")], "Degraded"),
    ("refused by validation", [condition("Ready", "False", "ValidationFailed")], "Degraded"),
    ("suspended", [condition("Ready", "False"), condition("Suspended", "True")], "Suspended"),
]

# Serve application statuses (activeServiceStatus / pendingServiceStatus.applicationStatuses):
# a config that cannot deploy leaves Ready True while the old replicas serve.
APPS = [
    ("running", "activeServiceStatus", "RUNNING", "Healthy"),
    ("deploying on the pending cluster", "pendingServiceStatus", "DEPLOYING", "Healthy"),
    ("failed to deploy", "activeServiceStatus", "DEPLOY_FAILED", "Degraded"),
    ("unhealthy", "activeServiceStatus", "UNHEALTHY", "Degraded"),
    ("failed on the pending cluster", "pendingServiceStatus", "DEPLOY_FAILED", "Degraded"),
]


@pytest.mark.parametrize(("conditions", "health"), [c[1:] for c in HEALTH], ids=[c[0] for c in HEALTH])
def test_the_health_check_maps_kuberays_conditions(conditions, health):
    assert _health(None if conditions is None else {"conditions": conditions})["status"] == health


@pytest.mark.parametrize(("side", "app", "health"), [a[1:] for a in APPS], ids=[a[0] for a in APPS])
def test_the_health_check_reads_the_serve_applications(side, app, health):
    status = {
        "conditions": [condition("Ready", "True", "NonZeroServeEndpoints")],
        side: {"applicationStatuses": {"mnist": {"status": app, "message": "model file missing"}}},
    }
    result = _health(status)
    assert result["status"] == health
    if health == "Degraded":
        assert result["message"] == f"mnist {app} on the {side}: model file missing"


def _health(status: dict | None) -> dict:
    """The Lua health script Argo CD runs, run by a real Lua interpreter on an object's status."""
    script = load("argocd-cm-health.yaml")["data"]["resource.customizations.health.ray.io_RayService"]
    lua = lupa.LuaRuntime()
    run = lua.eval(f"function(obj)\n{script}\nend")
    return dict(run(_lua_table(lua, {} if status is None else {"status": status})))


def _lua_table(lua, value):
    """JSON data as Lua tables, as Argo CD hands the object to the script."""
    if isinstance(value, dict):
        return lua.table_from({k: _lua_table(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_lua_table(lua, v) for v in value])
    return value
