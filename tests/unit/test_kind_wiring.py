"""`make kind-test` cannot run here (no Docker, no cluster): its wiring is checked offline with
`make -n`, which prints every command it would run, in order, without running any."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from clusterkit.helmchart import KUBE_VERSIONS
from clusterkit.localray import REPO


def planned(*args: str) -> str:
    result = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kind_test_runs_every_step_in_order_and_tears_down():
    plan = planned("kind-test", "OS=linux", "ARCH=amd64")
    steps = [
        "releases/download/v0.29.0/kind-linux-amd64",  # pinned tools, checksums verified
        "release/v1.33.1/bin/linux/amd64/kubectl",
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


PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")]
SUMS = {
    name: sha
    for sha, name in (
        line.split()
        for line in (REPO / "hack" / "tools.sha256").read_text().splitlines()
        if line[:1] not in "#"
    )
}


@pytest.mark.parametrize(("os", "arch"), PLATFORMS)
def test_kubectl_is_downloaded_for_the_platform_and_checked_against_its_pinned_sum(os, arch):
    plan = planned(str(REPO / "bin" / "kubectl-v1.33.1"), f"OS={os}", f"ARCH={arch}")
    assert f"https://dl.k8s.io/release/v1.33.1/bin/{os}/{arch}/kubectl" in plan
    assert f'"kubectl-v1.33.1-{os}-{arch}"' in plan and f"kubectl-v1.33.1-{os}-{arch}" in SUMS


@pytest.mark.parametrize(("os", "arch"), PLATFORMS)
def test_kind_is_a_pinned_download_or_a_go_install_verified_by_the_go_sumdb(os, arch):
    plan = planned(str(REPO / "bin" / "kind-v0.29.0"), f"OS={os}", f"ARCH={arch}")
    assert f"releases/download/v0.29.0/kind-{os}-{arch}" in plan
    # Without a pinned sum (only linux-amd64 has one) kind is built with `go install`.
    assert "go install sigs.k8s.io/kind@v0.29.0" in plan
    assert (f"kind-v0.29.0-{os}-{arch}" in SUMS) == ((os, arch) == ("linux", "amd64"))


def test_a_platform_without_a_pinned_sum_is_refused_before_any_download(tmp_path):
    result = subprocess.run(
        ["make", str(tmp_path / "kubectl-v1.33.1"), f"LOCALBIN={tmp_path}", "OS=freebsd", "ARCH=amd64"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no pinned sha256 for kubectl-v1.33.1-freebsd-amd64 in hack/tools.sha256" in result.stdout
    assert not list(tmp_path.iterdir())


def test_the_image_is_built_for_the_nodes_platform():
    arm = planned("image", "ARCH=arm64")
    assert "--platform linux/arm64" in arm and "rayproject/ray:2.60.0-py311-cpu-aarch64" in arm
    assert "--platform linux/amd64" in planned("image", "ARCH=amd64")


def test_the_release_workflow_publishes_images_and_chart_on_a_version_tag():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "release.yaml").read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    (job,) = workflow["jobs"].values()
    assert job["env"]["REGISTRY"] == "ghcr.io/${{ github.repository_owner }}"
    assert workflow["permissions"]["packages"] == "write"
    run = " ".join(step.get("run", "") for step in job["steps"])
    assert "make image-push" in run and "make chart-push" in run and "registry login ghcr.io" in run
