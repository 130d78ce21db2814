"""`make kind-test`'s wiring, checked offline with `make -n`, which prints every command it would
run, in order, without running any: the path of a user with Docker and internet, and the local
one (KIND_LOCAL=1) that `make kind-test` runs on this machine for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from clusterkit.helmchart import KUBE_VERSIONS
from clusterkit.kube.builds import KUBERAY, go_version
from clusterkit.localray import REPO

# Where the plans would install tools and find the Go builds: folders that do not exist, so that
# what this machine already built doesn't hide the rules a fresh one runs (`make -n` creates nothing).
TOOLS = Path("/nonexistent/mnist-serve-bin")
BUILDS = Path("/nonexistent/mnist-serve-cache")


@pytest.fixture
def planned(make_plan):
    return lambda *args: make_plan(f"LOCALBIN={TOOLS}", f"KUBE_CACHE={BUILDS}", *args)


def in_order(plan: str, steps: list[str]) -> None:
    positions = [plan.find(step) for step in steps]
    assert all(p >= 0 for p in positions), [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions)


def test_kind_test_runs_every_step_in_order_and_tears_down(planned):
    plan = planned("kind-test", "OS=linux", "ARCH=amd64")
    in_order(
        plan,
        [
            "releases/download/v0.33.0/kind-linux-amd64",  # pinned tools, checksums verified
            "release/v1.33.1/bin/linux/amd64/kubectl",
            "clusterkit.kind.engine up",  # an engine only when none answers
            "create cluster --name mnist-serve --config k8s/kind/cluster.yaml",
            "--kubeconfig artifacts/kind/kubeconfig ${image:+--image $image}",
            "upgrade --install kuberay-operator kuberay-operator --repo https://ray-project.github.io/kuberay-helm/",
            "--version 1.7.0 --namespace kuberay-system",
            "build  -f image/Dockerfile -t mnist-serve:0.1.0-ray2.60.0-cpu",
            "load image-archive artifacts/image.tar --name mnist-serve",
            "upgrade --install mnist-serve charts --namespace mnist-serve",
            "--values charts/ci/kind-values.yaml --set image.repository=mnist-serve",
            "--set kuberay.operatorVersion=1.7.0",
            "wait rayservice/mnist-serve --for=condition=Ready --timeout=15m",
            "clusterkit.kind.cluster routes-up",
            'pytest -m "kube" tests/kube',
            "delete cluster --name mnist-serve --kubeconfig artifacts/kind/kubeconfig",
            "clusterkit.kind.cluster routes-down",
            "clusterkit.kind.engine down",
        ],
    )
    (suite,) = [line for line in plan.splitlines() if 'pytest -m "kube" tests/kube' in line]
    assert suite.startswith("MNIST_SERVE_CLUSTER=kind KIND_CLUSTER=mnist-serve")  # clusterkit.kube.target
    assert "image=;" in plan  # the pinned node image unless KIND_NODE_IMAGE says otherwise


def test_kind_local_builds_everything_here_and_changes_only_the_node_and_operator_images(planned):
    plan = planned("kind-test", "KIND_LOCAL=1", "OS=linux", "ARCH=amd64")
    k8s = go_version("kubernetes", "k8s.io/kubernetes")
    operator = go_version("kuberay", KUBERAY).lstrip("v")
    in_order(
        plan,
        [
            "clusterkit/kube/build.sh kind",
            "go install sigs.k8s.io/kind@v0.33.0",
            "image=local;",
            "clusterkit.kind.nodeimage --kind-version v0.33.0",
            "create cluster --name mnist-serve --config k8s/kind/cluster.yaml",
            "clusterkit.kube.addons gateway operator",
            "clusterkit.kube.release image",
            "--values charts/ci/kind-values.yaml --set image.repository=localhost/mnist-serve",
            f"--set kuberay.operatorVersion={operator}",
            f"kubernetes-{k8s}/kubectl --kubeconfig artifacts/kind/kubeconfig -n mnist-serve wait",
            'pytest -m "kube" tests/kube',
            "delete cluster --name mnist-serve",
        ],
    )
    for reached in ("https://", "docker build", "curl "):
        assert reached not in plan


def test_the_local_node_image_is_the_pinned_images_kubernetes_version():
    (node,) = yaml.safe_load((REPO / "k8s" / "kind" / "cluster.yaml").read_text())["nodes"]
    assert node["image"].split(":")[1].split("@")[0] == go_version("kubernetes", "k8s.io/kubernetes")


def test_the_smoke_load_is_gated_on_the_slos(planned):
    plan = planned("loadtest", "HOST=http://127.0.0.1:18000", "RESULTS=loadtest/results/kind")
    assert plan.index("locust -f locustfile.py --headless --host http://127.0.0.1:18000") < plan.index(
        "loadtest/slo.py loadtest/results/kind/locust --slo loadtest/slo.yaml"
    )


def test_keep_cluster_skips_the_teardown_and_podman_names_images_localhost(planned):
    kept = planned("kind-test", "KEEP_CLUSTER=1")
    assert "delete cluster" not in kept and "engine down" not in kept
    podman = planned("kind-load", "kind-deploy", "CONTAINER_TOOL=podman")
    assert "podman build" in podman and "KIND_EXPERIMENTAL_PROVIDER=podman" in podman
    assert "--set image.repository=localhost/mnist-serve" in podman


def test_diagnostics_cover_the_rayservice_pods_operator_and_ray_logs(planned):
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
    assert jobs["kind"]["timeout-minutes"] >= 60


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
def test_kubectl_is_downloaded_for_the_platform_and_checked_against_its_pinned_sum(os, arch, planned):
    plan = planned(str(TOOLS / "kubectl-v1.33.1"), f"OS={os}", f"ARCH={arch}")
    assert f"https://dl.k8s.io/release/v1.33.1/bin/{os}/{arch}/kubectl" in plan
    assert f'"kubectl-v1.33.1-{os}-{arch}"' in plan and f"kubectl-v1.33.1-{os}-{arch}" in SUMS


@pytest.mark.parametrize(("os", "arch"), PLATFORMS)
def test_kind_is_a_pinned_download_or_a_go_install_verified_by_the_go_sumdb(os, arch, planned):
    plan = planned(str(TOOLS / "kind-v0.33.0"), f"OS={os}", f"ARCH={arch}")
    assert f"releases/download/v0.33.0/kind-{os}-{arch}" in plan and f"kind-v0.33.0-{os}-{arch}" in SUMS
    # Offline (KIND_LOCAL=1), or without a pinned sum, kind is built with `go install`.
    assert "go install sigs.k8s.io/kind@v0.33.0" in plan


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


def test_the_image_is_built_for_the_nodes_platform(planned):
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


def test_kube_test_runs_the_same_suite_on_its_own_cluster_and_always_tears_down(planned):
    plan = planned("kube-test")
    in_order(
        plan, ["clusterkit.kube.cluster up", "clusterkit.kube.release up", 'pytest -m "kube" tests/kube']
    )
    assert plan.rstrip().endswith("exit $rc") and "clusterkit.kube.cluster down" in plan


def test_gitops_test_installs_argo_cd_instead_of_the_release_and_always_tears_down(planned):
    plan = planned("gitops-test")
    in_order(
        plan,
        [
            "clusterkit/kube/build.sh argocd",
            "clusterkit.kube.cluster up",
            "clusterkit.kube.addons coredns gateway operator networkpolicies",
            "clusterkit.kube.release image",
            "clusterkit.kube.argocd up",
            "pytest -m gitops tests/gitops",
        ],
    )
    assert "clusterkit.kube.release up" not in plan  # Argo CD installs the chart, not helm
    assert plan.rstrip().endswith("exit $rc") and "clusterkit.kube.cluster down" in plan
