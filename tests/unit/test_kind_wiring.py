"""`make kind-test` cannot run here (no Docker, no cluster): its wiring is checked offline with
`make -n`, which prints every command it would run, in order, without running any."""

from __future__ import annotations

import subprocess

import yaml

from clusterkit.helmchart import KUBE_VERSIONS
from clusterkit.localray import REPO


def planned(*args: str) -> str:
    result = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kind_test_runs_every_step_in_order_and_tears_down():
    plan = planned("kind-test")
    steps = [
        "kind-linux-amd64.sha256sum",  # pinned tools, checksums verified
        "kubectl.sha256",
        "create cluster --name mnist-serve --config k8s/kind/cluster.yaml",
        "upgrade --install kuberay-operator kuberay-operator --repo https://ray-project.github.io/kuberay-helm/",
        "--version 1.7.0 --namespace kuberay-system",
        "build  -f image/Dockerfile -t mnist-serve:0.1.0-ray2.60.0-cpu",
        "load image-archive artifacts/image.tar --name mnist-serve",
        "upgrade --install mnist-serve charts --namespace mnist-serve",
        "--values charts/ci/kind-values.yaml --set image.repository=mnist-serve",
        "wait rayservice/mnist-serve --for=condition=Ready --timeout=15m",
        "test mnist-serve --namespace mnist-serve --logs",
        "port-forward svc/mnist-serve-serve-svc 18000:8000",
        "make --no-print-directory loadtest HOST=http://127.0.0.1:18000",
        "delete cluster --name mnist-serve",
    ]
    positions = [plan.find(step) for step in steps]
    assert all(p >= 0 for p in positions), [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions)


def test_the_smoke_load_is_gated_on_the_slos():
    plan = planned("loadtest", "HOST=http://127.0.0.1:18000", "RESULTS=loadtest/results/kind")
    assert plan.index("locust -f locustfile.py --headless --host http://127.0.0.1:18000") < plan.index(
        "loadtest/slo.py loadtest/results/kind/locust --slo loadtest/slo.yaml"
    )


def test_keep_cluster_skips_the_teardown_and_podman_names_images_localhost():
    assert "delete cluster" not in planned("kind-test", "KEEP_CLUSTER=1")
    podman = planned("kind-load", "kind-deploy", "CONTAINER_TOOL=podman")
    assert "podman build" in podman and "KIND_EXPERIMENTAL_PROVIDER=podman" in podman
    assert "--set image.repository=localhost/mnist-serve" in podman


def test_diagnostics_cover_the_rayservice_pods_operator_and_ray_logs():
    plan = planned("kind-diagnostics")
    for what in (
        "get rayservice mnist-serve -o yaml",
        "get events",
        "get pods -A",
        "logs deployment/kuberay-operator",
    ):
        assert what in plan
    assert "controller_*.log" in plan


def test_the_kind_node_runs_the_kubernetes_the_chart_is_validated_against():
    (node,) = yaml.safe_load((REPO / "k8s" / "kind" / "cluster.yaml").read_text())["nodes"]
    version = node["image"].split(":")[1].split("@")[0]
    assert version.lstrip("v").split(".")[:2] == KUBE_VERSIONS[-1].split(".")[:2]
    assert "@sha256:" in node["image"]


def test_the_workflow_runs_the_tests_then_kind():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yaml").read_text())
    jobs = workflow["jobs"]
    run = lambda job: " ".join(step.get("run", "") for step in jobs[job]["steps"])  # noqa: E731
    assert "make test" in run("test")
    assert "make kind-test" in run("kind") and jobs["kind"]["needs"] == "test"
