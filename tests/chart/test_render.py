"""Every values scenario lints, renders the same with Helm 3 and Helm 4, and validates against
the KubeRay CRD, the Kubernetes schemas and Ray Serve's own config schema."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from clusterkit import serveconfig
from clusterkit.helmchart import (
    CHART,
    HELMS,
    KUBE_VERSIONS,
    SCENARIOS,
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


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rayservice_validates_against_the_kuberay_crd(rendered, scenario):
    errors = sorted(crd_validator("RayService").iter_errors(rayservice(rendered[scenario])), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_crd_check_rejects_an_unknown_field(rendered):
    service = copy.deepcopy(rayservice(rendered["default"]))
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 3
    assert not crd_validator("RayService").is_valid(service)


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


def test_fused_topology_keeps_only_the_ingress_of_the_apps_config():
    """`serve.topology: fused` is the same serve config, the app told to fuse and only the
    deployment a fused app has (Serve refuses options for deployments an app lacks)."""
    chart_config = serve_config(rayservice(render(sets={"serve.topology": '"fused"'})))
    serveconfig.check(chart_config)
    (app,) = chart_config["applications"]
    assert app["args"]["topology"] == "fused"
    (ingress,) = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]["deployments"][:1]
    assert app["deployments"] == [ingress]
