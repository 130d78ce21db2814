"""The harness starts Ray nodes with the flags KubeRay would derive from a pod (pod.go)."""

import pytest

from clusterkit.kuberay import ceil_quantity, nodes, quantity, ray_start_params
from clusterkit.localray import flags


@pytest.mark.parametrize(
    ("value", "expected"),
    [("500m", 0.5), ("2", 2), (2, 2), ("1.5", 1.5), ("4Gi", 4 * 2**30), ("512Mi", 512 * 2**20), ("1G", 1e9)],
)
def test_quantities(value, expected):
    assert quantity(value) == expected


@pytest.mark.parametrize(("value", "expected"), [("500m", 1), ("1", 1), ("1500m", 2), ("2", 2), ("100m", 1)])
def test_cpu_counts_round_up_like_resource_quantity_value(value, expected):
    assert ceil_quantity(value) == expected


def group(limits=None, requests=None, params=None, **extra) -> dict:
    resources = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    container = {"name": "ray-worker", "resources": resources}
    return {"rayStartParams": params or {}, "template": {"spec": {"containers": [container]}}, **extra}


def test_cpus_memory_and_gpus_come_from_the_limits():
    params = ray_start_params(group({"cpu": "1500m", "memory": "4Gi", "nvidia.com/gpu": 1}), head=False)
    assert params["num-cpus"] == "2"
    assert params["memory"] == str(4 * 2**30)
    assert params["num-gpus"] == "1"
    assert params["block"] == "true" and "dashboard-host" not in params


def test_requests_stand_in_for_a_missing_cpu_limit_but_not_for_memory():
    params = ray_start_params(group({"memory": "2Gi"}, {"cpu": "3", "memory": "1Gi"}), head=False)
    assert params["num-cpus"] == "3" and params["memory"] == str(2 * 2**30)
    assert "num-cpus" not in ray_start_params(group(), head=False)


def test_explicit_params_win_and_the_head_listens_for_the_operator():
    params = ray_start_params(group({"cpu": "2", "memory": "2Gi"}, params={"num-cpus": "0"}), head=True)
    assert params["num-cpus"] == "0"
    assert params["dashboard-host"] == "0.0.0.0" and params["metrics-export-port"] == "8080"


def test_group_labels_and_resources_become_flags():
    params = ray_start_params(
        group({"cpu": "1", "memory": "1Gi"}, labels={"mnist-serve/pool": "gpu"}, resources={"TPU": "2"}),
        head=False,
    )
    assert params["labels"] == "mnist-serve/pool=gpu"
    assert params["resources"] == '{"TPU": 2.0}'


def test_one_node_per_worker_replica_head_first():
    service = {
        "spec": {
            "rayClusterConfig": {
                "headGroupSpec": group({"cpu": "1", "memory": "1Gi"}, params={"num-cpus": "0"}),
                "workerGroupSpecs": [
                    group({"cpu": "2", "memory": "1Gi"}, groupName="cpu", replicas=2),
                    group({"cpu": "2", "memory": "1Gi"}, groupName="gpu", replicas=0),
                ],
            }
        }
    }
    assert [(n.name, n.group) for n in nodes(service)] == [
        ("head", "head"),
        ("cpu-0", "cpu"),
        ("cpu-1", "cpu"),
    ]


@pytest.mark.parametrize(
    ("options", "namespace", "password"),
    [
        ({"redisAddress": "redis:6379"}, "uid-1234", None),
        (
            {
                "redisAddress": "redis:6379",
                "externalStorageNamespace": "mnist",
                "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}}},
            },
            "mnist",
            "s3cret",
        ),
    ],
    ids=["no password, UID namespace", "password from a Secret, own namespace"],
)
def test_gcs_fault_tolerance_environment_as_kuberay_sets_it(options, namespace, password):
    """common/pod.go configureRedisFT: the head gets the Redis address, namespace and password
    (as --redis-password=$REDIS_PASSWORD); workers wait 600 s for a new GCS."""
    service = {
        "spec": {
            "rayClusterConfig": {
                "gcsFaultToleranceOptions": options,
                "headGroupSpec": group({"cpu": "1", "memory": "1Gi"}, params={"num-cpus": "0"}),
                "workerGroupSpecs": [group({"cpu": "2", "memory": "1Gi"}, groupName="cpu", replicas=1)],
            }
        }
    }
    head, worker = nodes(service, secrets={("redis", "password"): "s3cret"}, cluster_uid="uid-1234")
    assert head.env["RAY_REDIS_ADDRESS"] == "redis:6379"
    assert head.env["RAY_external_storage_namespace"] == namespace
    assert head.env.get("REDIS_PASSWORD") == password
    assert head.params.get("redis-password") == password
    assert worker.env["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"
    assert "RAY_REDIS_ADDRESS" not in worker.env


def test_flags_are_written_as_kuberay_writes_them():
    params = {"block": "true", "num-cpus": "2", "disable-usage-stats": "false", "include-dashboard": "false"}
    assert flags(params) == ["--block", "--include-dashboard=false", "--num-cpus=2"]
