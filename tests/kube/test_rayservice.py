"""The chart's RayService as the real KubeRay operator runs it: Ready, answering real digits through
its serve Service, and a serve-config rollout applied in place under load."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from clusterkit import helmchart
from clusterkit.kube import release, target
from clusterkit.kube.layout import REPO
from clusterkit.load import Load, accuracy, failed, summary
from clusterkit.poll import Sampler, wait_for


def operator_image(core) -> str:
    (pod,) = core.list_namespaced_pod(
        "kuberay-system", label_selector="app.kubernetes.io/name=kuberay-operator"
    ).items
    return pod.spec.containers[0].image


@pytest.mark.smoke
def test_the_operator_marks_the_rayservice_ready(core, report):
    image = operator_image(core)
    # The chart validates features against the operator version it is told: it must be this one.
    assert image.endswith(f":v{json.loads(release.base_values()['kuberay.operatorVersion'])}")
    obj = release.rayservice()
    ready = release.condition(obj, "Ready")
    assert ready.get("status") == "True", obj.get("status")
    apps = obj["status"]["activeServiceStatus"]["applicationStatuses"]
    assert {name: app["status"] for name, app in apps.items()} == {"mnist": "RUNNING"}
    report(f"kube: KubeRay operator {image} set Ready ({ready.get('reason')}) on the RayService")


@pytest.mark.smoke
def test_helm_test_passes():
    helm = [str(helmchart.HELM), "test", release.RELEASE, "--namespace", release.NAMESPACE, "--logs"]
    result = subprocess.run(
        [*helm, "--kubeconfig", str(target.current().kubeconfig)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.smoke
def test_real_digits_through_the_serve_service(serve_url, mnist_test, report):
    with Load(serve_url, mnist_test.images, mnist_test.labels, clients=4, batch=8) as load:
        load.wait_for(300, timeout_s=180)
    report(f"kube: through the serve Service: {summary(load.outcomes)}")
    assert failed(load.outcomes) == [], {(o.status, o.error) for o in failed(load.outcomes)}
    assert accuracy(load.outcomes) >= 0.98


def test_locust_through_the_serve_service_meets_the_slos(serve_url, tmp_path, report):
    """`make loadtest` as a user runs it, every user class, gated on loadtest/slo.yaml."""
    args = [f"HOST={serve_url}", f"RAY_DASHBOARD=http://{release.head_ip()}:8265", "SHAPE=steady"]
    args += ["DURATION=30", "PEAK_USERS=4", f"RESULTS={tmp_path}"]
    run = subprocess.run(
        ["make", "--no-print-directory", "loadtest", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    gate = run.stdout[run.stdout.index("SLO gate over") :].strip()
    report(f"kube: Locust through the serve Service, {gate}")


@pytest.mark.smoke
def test_a_serve_config_change_is_applied_in_place_under_load(serve_url, mnist_test, report):
    cluster_before, _ = release.clusters()
    with (
        Load(serve_url, mnist_test.images, mnist_test.labels, clients=4) as load,
        Sampler(release.serve_endpoints, interval=0.5) as endpoints,
    ):
        load.wait_for(100, timeout_s=120)
        started = time.monotonic()
        release.install({"model.version": '"2"'})
        wait_for(
            "version 2 answering", lambda: any(o.model_version == "2" for o in load.between(started)), 600
        )
        switched = time.monotonic() - started
        load.wait_for(200, timeout_s=120)
    outcomes = load.outcomes
    report(
        f"kube: in-place rollout (model.version 1 -> 2): version 2 answered {switched:.1f} s after "
        f"helm upgrade; {summary(outcomes)}"
    )
    assert failed(outcomes) == [], f"{summary(outcomes)}; {release.unserved(endpoints.samples, started)}"
    assert release.clusters() == (cluster_before, ""), "a new cluster"
