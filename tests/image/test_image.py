"""The image runs the chart's RayService the way KubeRay runs it: a head container and a worker
container started with the rendered pods' `ray start` flags and environment on one network, the
rendered serveConfigV2 PUT to the head's dashboard, real digits classified on port 8000."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import requests

from clusterkit import kuberay
from clusterkit.helmchart import CI_VALUES, rayservice, render
from clusterkit.localray import RayDashboard, flags
from clusterkit.podman import podman

NETWORK = "mnist-serve-image-test"
DASHBOARD, SERVE = 38265, 38000


def head_running(name: str) -> None:
    state = podman("inspect", "--format={{.State.Status}}", name).stdout.strip()
    if state != "running":
        raise RuntimeError(f"{name} is {state}:\n{podman('logs', name, check=False).stderr[-3000:]}")


@pytest.fixture(scope="module")
def cluster(image, report):
    service = rayservice(render(CI_VALUES / "kind-values.yaml"))
    nodes = kuberay.nodes(service)
    names = [f"mnist-serve-{node.name}" for node in nodes]
    podman("rm", "-f", *names, check=False)
    podman("network", "rm", "-f", NETWORK, check=False)
    podman("network", "create", NETWORK)
    started = time.monotonic()
    try:
        for node, name in zip(nodes, names, strict=True):
            params = dict(node.params)
            publish = []
            if node.is_head:
                publish = [f"--publish=127.0.0.1:{DASHBOARD}:8265", f"--publish=127.0.0.1:{SERVE}:8000"]
            else:
                # KubeRay points workers at the head service; here the head container's name.
                params["address"] = f"{names[0]}:6379"
            env = [f"--env={k}={v}" for k, v in {**node.env, "RAY_AUTH_MODE": "disabled"}.items()]
            container = [
                "--detach",
                f"--name={name}",
                f"--hostname={name}",
                f"--network={NETWORK}",
                "--shm-size=1g",
            ]
            command = [
                "ray",
                "start",
                *(["--head"] if node.is_head else []),
                *flags(params),
                "--disable-usage-stats",
            ]
            podman("run", *container, *publish, *env, image, *command)
        dashboard = RayDashboard(f"http://127.0.0.1:{DASHBOARD}")
        dashboard.wait_up(180, lambda: head_running(names[0]), f"`podman logs {names[0]}`")
        # serveConfigV2 exactly as rendered: the image's weights path, 0.0.0.0:8000.
        dashboard.deploy(kuberay.serve_config(service))
        dashboard.wait_running(timeout_s=300)
        report(
            f"image (podman, stand-in base): RUNNING {time.monotonic() - started:.0f} s after `podman run`"
        )
        yield dashboard, names
    finally:
        podman("rm", "-f", "--time=5", *names, check=False)
        podman("network", "rm", "-f", NETWORK, check=False)


def test_real_digits_are_classified_through_the_head_container(cluster, mnist_test):
    correct = 0
    for start in range(0, 1000, 100):
        response = requests.post(
            f"http://127.0.0.1:{SERVE}/predict",
            data=mnist_test.images[start : start + 100].tobytes(),
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-model-version"] == "1"
        correct += int(np.sum(np.array(response.json()["labels"]) == mnist_test.labels[start : start + 100]))
    assert correct / 1000 >= 0.98


def test_replicas_run_in_the_worker_container(cluster):
    dashboard, _ = cluster
    workers = {n["node_id"] for n in dashboard.alive_nodes() if not n["is_head_node"]}
    deployments = dashboard.details()["applications"]["mnist"]["deployments"]
    assert {r["node_id"] for d in deployments.values() for r in d["replicas"]} <= workers


def test_the_image_runs_as_the_ray_user_with_labels(cluster, image):
    _, names = cluster
    assert podman("exec", names[0], "id", "-u").stdout.strip() == "1000"
    labels = json.loads(podman("image", "inspect", image).stdout)[0]["Labels"]
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["io.ray.version"] == "2.60.0"
