"""What the chart promises, asserted on the rendered objects of each scenario."""

from __future__ import annotations

import pytest

from clusterkit.helmchart import SCENARIOS, by_kind, groups, rayservice, render
from clusterkit.kuberay import serve_config

GPU = "nvidia.com/gpu"


def deployments(objects: list[dict]) -> dict[str, dict]:
    (app,) = serve_config(rayservice(objects))["applications"]
    return {d["name"]: d for d in app["deployments"]}


def container(group: dict) -> dict:
    (ray,) = group["template"]["spec"]["containers"]
    return ray


def test_gpu_pool_carries_limits_tolerations_selector_and_the_gpu_image(rendered):
    gpu = groups(rayservice(rendered["gpu-fractional"]))["gpu"]
    ray, pod = container(gpu), gpu["template"]["spec"]
    assert ray["resources"]["limits"][GPU] == 1
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert ray["image"].endswith("-ray2.60.0-gpu")
    # Ray's GPU count comes from the limit, as KubeRay derives it: no num-gpus to disagree with it.
    assert "num-gpus" not in gpu["rayStartParams"]


def test_fractional_gpus_land_on_the_classifier_pinned_to_its_pool(rendered):
    classifier = deployments(rendered["gpu-fractional"])["Classifier"]
    assert classifier["ray_actor_options"]["num_gpus"] == 0.25
    assert classifier["ray_actor_options"]["label_selector"] == {"mnist-serve/pool": "gpu"}
    assert classifier["autoscaling_config"]["min_replicas"] == 4
    assert groups(rayservice(rendered["gpu-fractional"]))["gpu"]["labels"] == {"mnist-serve/pool": "gpu"}


def test_mixed_pools_keep_cpu_work_off_gpu_nodes(rendered):
    objects = rendered["mixed"]
    pools = groups(rayservice(objects))
    cpu, gpu = pools["cpu"], pools["gpu"]
    assert GPU not in container(cpu)["resources"]["limits"]
    assert "tolerations" not in cpu["template"]["spec"]
    assert container(cpu)["image"].endswith("-cpu") and container(gpu)["image"].endswith("-gpu")
    assert gpu["labels"] == {"mnist-serve/pool": "gpu", "accelerator": "nvidia-l4"}
    assert (gpu["minReplicas"], gpu["replicas"], gpu["maxReplicas"]) == (0, 0, 4)
    placed = {name: d["ray_actor_options"].get("label_selector") for name, d in deployments(objects).items()}
    assert placed == {
        "Ingress": {"mnist-serve/pool": "cpu"},
        "Preprocessor": {"mnist-serve/pool": "cpu"},
        "Classifier": {"mnist-serve/pool": "gpu"},
    }
    assert deployments(objects)["Classifier"]["ray_actor_options"]["num_gpus"] == 0.5


def test_cpu_only_scenarios_ask_for_no_gpu(rendered):
    for scenario in ("default", "kind"):
        for group in groups(rayservice(rendered[scenario])).values():
            assert GPU not in container(group)["resources"].get("limits", {})
            assert container(group)["image"].endswith("-cpu")
        assert all(
            d["ray_actor_options"].get("num_gpus", 0) == 0 for d in deployments(rendered[scenario]).values()
        )


def test_autoscaling_bounds(rendered):
    spec = rayservice(rendered["default"])["spec"]["rayClusterConfig"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    worker = spec["workerGroupSpecs"][0]
    assert (worker["minReplicas"], worker["replicas"], worker["maxReplicas"]) == (1, 1, 4)
    autoscaling = deployments(rendered["default"])["Classifier"]["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (1, 4)
    # Serve refuses num_replicas beside autoscaling_config: the chart drops the app's fixed count.
    assert "num_replicas" not in deployments(rendered["default"])["Classifier"]
    kind = rayservice(rendered["kind"])["spec"]["rayClusterConfig"]
    assert kind["enableInTreeAutoscaling"] is False and "autoscalerOptions" not in kind


def test_head_runs_no_replicas_and_ray_cpus_come_from_limits(rendered):
    head = groups(rayservice(rendered["kind"]))["head"]
    assert head["rayStartParams"] == {"num-cpus": "0"}
    worker = groups(rayservice(rendered["kind"]))["cpu"]
    assert worker["rayStartParams"] == {}
    assert container(worker)["resources"]["limits"]["cpu"] == "2"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_nothing_exposes_the_dashboard(rendered, scenario):
    objects = rendered[scenario]
    for ingress in by_kind(objects, "Ingress"):
        ports = {
            p["backend"]["service"]["port"]["number"]
            for r in ingress["spec"]["rules"]
            for p in r["http"]["paths"]
        }
        assert ports == {8000}
    for route in by_kind(objects, "HTTPRoute"):
        assert {ref["port"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]} == {8000}
    for service in by_kind(objects, "Service"):
        assert 8265 not in {port["port"] for port in service["spec"]["ports"]}
    assert (
        rayservice(objects)["spec"]["rayClusterConfig"]["headGroupSpec"].get("serviceType", "ClusterIP")
        == "ClusterIP"
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_network_policy_admits_the_operator_to_dashboard_and_serve_and_nobody_to_gcs(rendered, scenario):
    """The operator PUTs the serve config on 8265 and checks the head's proxy at podIP:8000/-/healthz
    (CheckProxyActorHealth, ray-operator/controllers/ray/rayservice_controller.go); it never
    connects to GCS, so 6379 is open only to the release's own Ray pods."""
    (policy,) = by_kind(rendered[scenario], "NetworkPolicy")
    rules = policy["spec"]["ingress"]
    by_port = {}
    for rule in rules:
        for port in rule.get("ports", [{"port": "any"}]):
            by_port.setdefault(port["port"], []).append(rule.get("from"))
    namespace = "ray-system" if scenario == "exposed" else "kuberay-system"
    operator = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}]
    assert by_port[8265] == [operator]
    assert operator in by_port[8000]
    # Every other rule either names its ports (serve, metrics) or admits only this release's Ray pods.
    (peers,) = by_port["any"]
    assert peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "mnist-serve"
    grpc = {9000} if scenario == "exposed" else set()  # Serve's gRPC ingress, on where enabled
    assert set(by_port) == {8265, 8000, 8080, "any"} | grpc


def test_network_policy_restricts_serve_clients_when_asked(rendered):
    """With serveFrom set: those peers, the Gateway's namespace (the HTTPRoute's data plane), the
    helm test pod, and the operator's health check (its own rule)."""
    (policy,) = by_kind(rendered["exposed"], "NetworkPolicy")
    (serve,) = [
        r for r in policy["spec"]["ingress"] if r.get("ports", [None])[0] == {"port": 8000, "protocol": "TCP"}
    ]
    test_pod = {"app.kubernetes.io/instance": "mnist-serve", "app.kubernetes.io/component": "test"}
    assert serve["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}},
        {"podSelector": {"matchLabels": test_pod}},  # the helm test pod still gets through
    ]
    (pod,) = by_kind(rendered["exposed"], "Pod")
    assert pod["metadata"]["labels"].items() >= test_pod.items()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_runs_restricted(rendered, scenario):
    objects = rendered[scenario]
    pods = [g["template"]["spec"] for g in groups(rayservice(objects)).values()]
    pods += [pod["spec"] for pod in by_kind(objects, "Pod")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    autoscaler = rayservice(objects)["spec"]["rayClusterConfig"].get("autoscalerOptions")
    if autoscaler:
        assert autoscaler["securityContext"]["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_standard_labels_everywhere(rendered, scenario):
    for obj in rendered[scenario]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "mnist-serve", obj["kind"]
        if obj["kind"] != "Pod":  # the test pod stays out of the Ray pods' selectors
            assert labels["app.kubernetes.io/name"] == "mnist-serve"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
    for group in groups(rayservice(rendered[scenario])).values():
        assert group["template"]["metadata"]["labels"]["app.kubernetes.io/component"] in (
            "ray-head",
            "ray-worker",
        )
    if scenario == "exposed":
        assert all(
            obj["metadata"]["labels"]["team"] == "ml-platform"
            for obj in rendered[scenario]
            if obj["kind"] != "Pod"
        )


def test_ray_env_and_model_reach_every_node(rendered):
    service = rayservice(rendered["exposed"])
    for group in groups(service).values():
        env = {e["name"]: e["value"] for e in container(group)["env"]}
        assert env == {
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "30",
        }
        assert container(group)["image"] == "ghcr.io/mnist-serve/mnist-serve:0.1.0-ray2.60.0-cpu"
    assert service["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token"}
    (app,) = serve_config(service)["applications"]
    assert app["args"]["model"] == {"uri": "/home/ray/model/mnist_cnn.pt", "version": "1"}


def test_a_model_rollout_changes_only_the_serve_config():
    """A new model version touches serveConfigV2 alone: KubeRay applies it in place, no new cluster."""
    before = rayservice(render())
    after = rayservice(render(sets={"model.uri": '"file:///models/v2/mnist_cnn.pt"', "model.version": '"2"'}))
    (app,) = serve_config(after)["applications"]
    assert app["args"]["model"] == {"uri": "file:///models/v2/mnist_cnn.pt", "version": "2"}
    assert before["spec"]["rayClusterConfig"] == after["spec"]["rayClusterConfig"]
    assert before["spec"]["serveConfigV2"] != after["spec"]["serveConfigV2"]


def test_long_release_names_leave_room_for_kuberays_suffixes():
    service = rayservice(render(release="a-very-long-release-name-for-the-mnist-serving-team"))
    name = service["metadata"]["name"]
    assert len(name) <= 40 and not name.endswith("-")


def test_helm_test_hook_sends_a_digit_to_the_serve_service(rendered):
    (pod,) = by_kind(rendered["default"], "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (test,) = pod["spec"]["containers"]
    assert {"name": "URL", "value": "http://mnist-serve-serve-svc:8000/predict"} in test["env"]
    (digit,) = by_kind(rendered["default"], "ConfigMap")
    assert digit["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert set(digit["binaryData"]) == {"digit.raw"} and digit["data"] == {"label": "7"}


def test_helm_test_pod_is_as_hardened_as_the_ray_pods(rendered):
    """No Kubernetes API token and a read-only root filesystem: it only sends one HTTP request."""
    (pod,) = by_kind(rendered["default"], "Pod")
    assert pod["spec"]["automountServiceAccountToken"] is False
    (test,) = pod["spec"]["containers"]
    assert test["securityContext"]["readOnlyRootFilesystem"] is True
    assert test["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert test["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_image_push_publishes_what_the_charts_default_image_points_at(rendered, make_plan):
    """The default image.repository (ghcr.io/mnist-serve/mnist-serve) is what the release workflow's
    `make image-push REGISTRY=ghcr.io/<owner>` publishes for this repository (owner mnist-serve)."""
    plan = make_plan("image-push", "REGISTRY=ghcr.io/mnist-serve", "ARCH=amd64")
    images = {container(group)["image"] for group in groups(rayservice(rendered["mixed"])).values()}
    assert images == {
        "ghcr.io/mnist-serve/mnist-serve:0.1.0-ray2.60.0-cpu",
        "ghcr.io/mnist-serve/mnist-serve:0.1.0-ray2.60.0-gpu",
    }
    for image in images:
        assert f"-t {image} " in plan and f"docker push {image}" in plan
    assert "rayproject/ray:2.60.0-py311-gpu" in plan
    chart = make_plan("chart-push", "REGISTRY=ghcr.io/mnist-serve")
    assert "push artifacts/chart/mnist-serve-0.1.0.tgz oci://ghcr.io/mnist-serve/charts" in chart
