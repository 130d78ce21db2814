"""Bad values fail at `helm template`/`install` time, each with a message naming the problem.
The schema catches types, ranges and unknown keys; the chart's guard rails the combinations."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import yaml

from clusterkit.helmchart import HELMS, RenderError, render

CPU_WORKER = {
    "name": "cpu",
    "replicas": 1,
    "minReplicas": 1,
    "maxReplicas": 2,
    "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
}
GPU_WORKER = CPU_WORKER | {"name": "gpu", "gpus": 1}


def workers(*groups: dict) -> str:
    return json.dumps(list(groups))


@dataclass(frozen=True)
class Schema:
    """A values.schema.json refusal: it names the value's path and the offending word. Helm 3
    writes paths dotted (serve.deployments.Classifier), Helm 4 as JSON pointers."""

    path: str
    word: str

    def found_in(self, message: str) -> bool:
        pointer = "'/" + self.path.replace(".", "/") + "'"
        return (self.path in message or pointer in message) and self.word.lower() in message.lower()


INCREMENTAL = {
    "upgrade.strategy": '"NewClusterWithIncrementalUpgrade"',
    "upgrade.incremental.gatewayClassName": '"traefik"',
}
ENTER_THROUGH_GATEWAY = (
    "with upgrade.strategy NewClusterWithIncrementalUpgrade clients must enter through KubeRay's Gateway"
)
ONE_HOST = '[{"host": "a.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]'

# (id, values as --set-json would give them, what the message must say)
CASES = [
    ("unknown top-level key", {"replicas": "3"}, Schema("", "replicas")),
    (
        "unknown deployment option",
        {"serve.deployments.Classifier.num_replica": "2"},
        Schema("serve.deployments.Classifier", "num_replica"),
    ),
    (
        "unknown deployment name",
        {"serve.deployments.Clasifier": "{}"},
        Schema("serve.deployments", "Clasifier"),
    ),
    (
        "negative gpus",
        {"workerGroups": workers(CPU_WORKER | {"gpus": -1})},
        Schema("workerGroups.0.gpus", "0"),
    ),
    ("bad upgrade strategy", {"upgrade.strategy": '"BlueGreen"'}, Schema("upgrade.strategy", "NewCluster")),
    ("bad auth mode", {"auth.mode": '"password"'}, Schema("auth.mode", "token")),
    (
        "worker without limits",
        {"workerGroups": workers(CPU_WORKER | {"resources": {"requests": {"cpu": "1"}}})},
        Schema("workerGroups.0.resources", "limits"),
    ),
    (
        "bad cpu quantity",
        {"workerGroups": workers(CPU_WORKER | {"resources": {"limits": {"cpu": "two", "memory": "4Gi"}}})},
        Schema("workerGroups.0.resources.limits.cpu", "pattern"),
    ),
    ("relative model path", {"model.uri": '"artifacts/model.pt"'}, Schema("model.uri", "pattern")),
    ("bad sha256", {"model.sha256": '"abc"'}, Schema("model.sha256", "pattern")),
    ("ingress without hosts", {"ingress.enabled": "true"}, Schema("ingress.hosts", "1")),
    (
        "address set by hand",
        {"head.rayStartParams": '{"num-cpus": "0", "address": "x"}'},
        Schema("head.rayStartParams.address", "not"),
    ),
    ("no worker groups", {"workerGroups": "[]"}, Schema("workerGroups", "1")),
    (
        "image tag of another Ray",
        {"image.tag": '"0.1.0-ray2.59.0-cpu"'},
        'image.tag "0.1.0-ray2.59.0-cpu" does not match rayVersion "2.60.0"',
    ),
    (
        "image tag that only looks close",
        {"image.tag": '"0.1.0-ray2.60.01-cpu"'},
        "does not match rayVersion",
    ),
    (
        "inverted worker bounds",
        {"workerGroups": workers(CPU_WORKER | {"minReplicas": 3, "replicas": 3, "maxReplicas": 2})},
        "workerGroups[cpu]: minReplicas (3) is greater than maxReplicas (2)",
    ),
    (
        "replicas outside the bounds",
        {"workerGroups": workers(CPU_WORKER | {"replicas": 5})},
        "workerGroups[cpu]: replicas (5) must lie between minReplicas (1) and maxReplicas (2)",
    ),
    (
        "duplicate group names",
        {"workerGroups": workers(CPU_WORKER, CPU_WORKER)},
        'the name "cpu" is used twice',
    ),
    (
        "num-gpus in rayStartParams",
        {"workerGroups": workers(GPU_WORKER | {"rayStartParams": {"num-gpus": "1"}})},
        "workerGroups[gpu].rayStartParams.num-gpus: set workerGroups[gpu].gpus instead",
    ),
    (
        "GPU replicas with no GPU pool",
        {"serve.deployments.Classifier.ray_actor_options": '{"num_gpus": 0.5}'},
        "serve.deployments.Classifier: replicas ask for num_gpus 0.5 but any worker group has no GPUs",
    ),
    (
        "fractional GPUs that cannot pack",
        {
            "workerGroups": workers(CPU_WORKER, GPU_WORKER),
            "serve.deployments.Classifier.ray_actor_options": '{"num_gpus": 2}',
        },
        "a replica asks for num_gpus 2 but the nodes of any worker group have at most 1 GPUs",
    ),
    (
        "GPU replicas pinned to a CPU pool",
        {
            "workerGroups": workers(CPU_WORKER, GPU_WORKER),
            "serve.deployments.Classifier": '{"workerGroup": "cpu", "ray_actor_options": {"num_gpus": 0.25}}',
        },
        'replicas ask for num_gpus 0.25 but worker group "cpu" has no GPUs',
    ),
    (
        "more than one GPU, not whole",
        {
            "workerGroups": workers(GPU_WORKER | {"gpus": 4}),
            "serve.deployments.Classifier.ray_actor_options": '{"num_gpus": 1.5}',
        },
        "num_gpus: 1.5 is not allowed",
    ),
    (
        "GPU demand beyond the largest cluster",
        {
            "workerGroups": workers(
                CPU_WORKER, GPU_WORKER | {"resources": {"limits": {"cpu": "8", "memory": "16Gi"}}}
            ),
            "serve.deployments.Classifier": json.dumps(
                {"ray_actor_options": {"num_gpus": 0.5}, "autoscaling_config": {"max_replicas": 8}}
            ),
        },
        "the replicas need 4 GPU but the cluster at its largest (maxReplicas of every group) has 2",
    ),
    (
        "a replica bigger than any node",
        {"serve.deployments.Classifier.ray_actor_options": '{"num_cpus": 4}'},
        "a replica asks for num_cpus 4 but the nodes of any worker group have at most 2 CPUs",
    ),
    (
        "unknown worker group",
        {"serve.deployments.Preprocessor.workerGroup": '"gpu"'},
        'serve.deployments.Preprocessor.workerGroup: there is no worker group "gpu"',
    ),
    (
        "num_replicas beside autoscaling",
        {"serve.deployments.Classifier.num_replicas": "2"},
        "serve.deployments.Classifier: set num_replicas or autoscaling_config, not both",
    ),
    (
        "inverted serve autoscaling",
        {
            "serve.deployments.Classifier.autoscaling_config": json.dumps(
                {"min_replicas": 3, "max_replicas": 2, "initial_replicas": 3}
            )
        },
        "autoscaling_config: min_replicas (3) is greater than max_replicas (2)",
    ),
    (
        "initial replicas outside the bounds",
        {
            "serve.deployments.Classifier.autoscaling_config": json.dumps(
                {"min_replicas": 1, "max_replicas": 2, "initial_replicas": 3}
            )
        },
        "initial_replicas (3) must lie between min_replicas (1) and max_replicas (2)",
    ),
    (
        "CPU demand beyond the largest cluster",
        {"serve.deployments.Classifier.autoscaling_config.max_replicas": "16"},
        "the replicas need 16.75 CPU but the cluster at its largest (maxReplicas of every group) has 8",
    ),
    ("HTTPRoute with no gateway", {"httpRoute.enabled": "true"}, "httpRoute.parentRefs"),
    (
        "incremental upgrade without a GatewayClass",
        {"upgrade.strategy": '"NewClusterWithIncrementalUpgrade"'},
        "upgrade.incremental.gatewayClassName: NewClusterWithIncrementalUpgrade needs the GatewayClass",
    ),
    (
        "incremental upgrade without the Ray autoscaler",
        INCREMENTAL | {"autoscaler.enabled": "false"},
        "upgrade.strategy NewClusterWithIncrementalUpgrade needs the Ray autoscaler",
    ),
    (
        "incremental step larger than the surge",
        INCREMENTAL
        | {"upgrade.incremental.stepSizePercent": "50", "upgrade.incremental.maxSurgePercent": "20"},
        "upgrade.incremental.stepSizePercent (50) must not exceed maxSurgePercent (20)",
    ),
    (
        "incremental step of 0",
        INCREMENTAL | {"upgrade.incremental.stepSizePercent": "0"},
        "upgrade.incremental.stepSizePercent 0 would never move traffic",
    ),
    (
        "incremental surge over 100",
        INCREMENTAL | {"upgrade.incremental.maxSurgePercent": "150"},
        Schema("upgrade.incremental.maxSurgePercent", "100"),
    ),
    (
        "incremental interval of 0",
        INCREMENTAL | {"upgrade.incremental.intervalSeconds": "0"},
        Schema("upgrade.incremental.intervalSeconds", "1"),
    ),
    (
        "incremental upgrade with the chart's HTTPRoute",
        INCREMENTAL | {"httpRoute.enabled": "true", "httpRoute.parentRefs": '[{"name": "public"}]'},
        f"httpRoute.enabled: {ENTER_THROUGH_GATEWAY}",
    ),
    (
        "incremental upgrade with the chart's Ingress",
        INCREMENTAL | {"ingress.enabled": "true", "ingress.hosts": ONE_HOST},
        f"ingress.enabled: {ENTER_THROUGH_GATEWAY}",
    ),
    (
        "unknown incremental option",
        INCREMENTAL | {"upgrade.incremental.stepSize": "10"},
        Schema("upgrade.incremental", "stepSize"),
    ),
    (
        "custom worker readiness probe",
        {"workerGroups": workers(CPU_WORKER | {"readinessProbe": {"tcpSocket": {"port": 8000}}})},
        "workerGroups[cpu].readinessProbe: a custom readiness probe replaces KubeRay's serve-aware one",
    ),
    (
        "worker disruption budget by maxUnavailable (RayCluster has no scale subresource)",
        {"podDisruptionBudget.maxUnavailable": "1"},
        "podDisruptionBudget.maxUnavailable: Kubernetes reads it against the scale subresource",
    ),
    (
        "a grace period that cuts Ray's drain short",
        {"shutdown.terminationGracePeriodSeconds": "35"},
        "shutdown.terminationGracePeriodSeconds (35) must exceed shutdown.proxyDrainSeconds + "
        "shutdown.drainTimeoutSeconds (5 + 30)",
    ),
    (
        "the drain timeout set through env, past shutdown.drainTimeoutSeconds",
        {"env": '[{"name": "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "value": "5"}]'},
        "env: RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S is set by the chart from shutdown.drainTimeoutSeconds",
    ),
    (
        "a negative drain timeout",
        {"shutdown.drainTimeoutSeconds": "-1"},
        Schema("shutdown.drainTimeoutSeconds", "0"),
    ),
    (
        "worker disruption budget by a percentage",
        {"podDisruptionBudget.minAvailable": '"50%"'},
        Schema("podDisruptionBudget.minAvailable", "integer"),
    ),
]

# What the KubeRay operator's validation refuses (ray-operator/controllers/ray/utils/validation.go,
# v1.5.0 and v1.7.0), one case per rule that values can produce; the chart refuses each first.
OPERATOR_CASES = [
    (
        "RayService name not DNS-1035 (ValidateRayServiceMetadata)",
        {"fullnameOverride": '"Bad_Name"'},
        'the RayService name "Bad_Name" (from the release name, nameOverride or fullnameOverride) '
        "is not a DNS-1035 label",
    ),
    (
        "nameOverride not a label value (ValidateRayServiceMetadata)",
        {"nameOverride": '"BAD_NAME_"'},
        'nameOverride "BAD_NAME_" is not a DNS-1035 label',
    ),
    (
        "labels in the head's rayStartParams (validateRayGroupLabels)",
        {"head.rayStartParams": '{"num-cpus": "0", "labels": "{}"}'},
        "head.rayStartParams.labels: KubeRay refuses rayStartParams['labels']",
    ),
    (
        "labels in a worker's rayStartParams (validateRayGroupLabels)",
        {"workerGroups": workers(CPU_WORKER | {"rayStartParams": {"labels": "{}"}})},
        "workerGroups[cpu].rayStartParams.labels: KubeRay refuses rayStartParams['labels']; "
        "set workerGroups[cpu].rayLabels instead",
    ),
    (
        "bad Ray label key (validateRayGroupLabels)",
        {"workerGroups": workers(CPU_WORKER | {"rayLabels": {"bad key": "x"}})},
        'workerGroups[cpu].rayLabels: "bad key" is not a valid label key',
    ),
    (
        "bad Ray label value (validateRayGroupLabels)",
        {"workerGroups": workers(CPU_WORKER | {"rayLabels": {"zone": "-us-"}})},
        'workerGroups[cpu].rayLabels.zone: "-us-" is not a valid label value',
    ),
    (
        "idleTimeoutSeconds without autoscaler v2 (validateWorkerGroupIdleTimeout)",
        {"autoscaler.enabled": "false", "workerGroups": workers(CPU_WORKER | {"idleTimeoutSeconds": 60})},
        "workerGroups[cpu].idleTimeoutSeconds needs the autoscaler (v2)",
    ),
    (
        "zero initializing timeout (validateInitializingTimeout)",
        {"upgrade.initializingTimeout": '"0s"'},
        'upgrade.initializingTimeout "0s": KubeRay requires a positive duration',
    ),
    (
        "RAY_enable_autoscaler_v2 in the head's env (ValidateRayClusterSpec)",
        {"env": '[{"name": "RAY_enable_autoscaler_v2", "value": "1"}]'},
        "env: RAY_enable_autoscaler_v2 is set by the chart",
    ),
    (
        "token auth on Ray < 2.52 (ValidateRayClusterSpec)",
        {"auth.mode": '"token"', "rayVersion": '"2.51.0"', "image.tag": '"0.1.0-ray2.51.0-cpu"'},
        'auth.mode token needs Ray 2.52.0 or later (KubeRay refuses it), rayVersion is "2.51.0"',
    ),
    (
        "token auth on KubeRay 1.5 (no authOptions in its CRD)",
        {"auth.mode": '"token"', "kuberay.operatorVersion": '"1.5.0"'},
        "auth.mode token needs KubeRay 1.6.0 or later",
    ),
    (
        "negative cluster deletion delay (ValidateRayServiceSpec)",
        {"upgrade.clusterDeletionDelaySeconds": "-1"},
        Schema("upgrade.clusterDeletionDelaySeconds", "0"),
    ),
    (
        "negative worker idle timeout (validateWorkerGroupIdleTimeout)",
        {"workerGroups": workers(CPU_WORKER | {"idleTimeoutSeconds": -1})},
        Schema("workerGroups.0.idleTimeoutSeconds", "0"),
    ),
    (
        "negative minReplicas (ValidateRayClusterSpec)",
        {"workerGroups": workers(CPU_WORKER | {"minReplicas": -1})},
        Schema("workerGroups.0.minReplicas", "0"),
    ),
    (
        "unsupported operator version",
        {"kuberay.operatorVersion": '"1.4.0"'},
        Schema("kuberay.operatorVersion", "pattern"),
    ),
    ("model from an unsupported store", {"model.uri": '"ftp://host/m.pt"'}, Schema("model.uri", "pattern")),
    ("s3 uri without a key", {"model.uri": '"s3://bucket"'}, Schema("model.uri", "pattern")),
    # Head HA (GCS fault tolerance): what KubeRay's utils/validation.go would reject, and worse.
    ("HA without Redis", {"ha.enabled": "true"}, "ha.redis.address: GCS fault tolerance (ha.enabled) needs"),
    (
        "Redis address without a port",
        {"ha.enabled": "true", "ha.redis.address": '"redis.example"'},
        Schema("ha.redis.address", "pattern"),
    ),
    ("Redis settings with HA off", {"ha.redis.address": '"redis:6379"'}, "but ha.enabled is false"),
    (
        "one GCS namespace shared by blue/green clusters",
        {"ha.enabled": "true", "ha.redis.address": '"redis:6379"', "ha.externalStorageNamespace": '"mnist"'},
        "would share one GCS state in Redis",
    ),
    (
        "Redis address by hand in env",
        {"env": '[{"name": "RAY_REDIS_ADDRESS", "value": "redis:6379"}]'},
        "env: RAY_REDIS_ADDRESS is managed by KubeRay",
    ),
    (
        "Redis password in rayStartParams",
        {"head.rayStartParams": '{"num-cpus": "0", "redis-password": "hunter2"}'},
        "head.rayStartParams.redis-password: KubeRay refuses it",
    ),
    (
        "head out of the serve Service with no worker guaranteed",
        {
            "ha.excludeHeadFromServeService": "true",
            "workerGroups": workers(CPU_WORKER | {"minReplicas": 0, "replicas": 0}),
        },
        "the serve Service could be left with no endpoints",
    ),
]


@pytest.mark.parametrize("binary", HELMS.values(), ids=HELMS.keys())
@pytest.mark.parametrize(
    ("sets", "message"), [c[1:] for c in CASES + OPERATOR_CASES], ids=[c[0] for c in CASES + OPERATOR_CASES]
)
def test_bad_values_are_refused_with_a_clear_message(binary, sets, message, tmp_path):
    """Each case as a values file, the way users pass values (`helm install -f`)."""
    values = {}
    for dotted, value in sets.items():
        *parents, leaf = dotted.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = json.loads(value)
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(RenderError) as refused:
        render(path, binary=binary)
    if isinstance(message, Schema):
        assert message.found_in(str(refused.value)), str(refused.value)
    else:
        assert message in str(refused.value)


def test_the_table_is_at_least_fifteen_cases():
    assert len(CASES) >= 15


# Helm itself refuses upper case and '_' in release names; these pass Helm's check, not KubeRay's.
@pytest.mark.parametrize("release", ["1serve", "serve.v2"])
def test_a_release_name_kuberay_refuses_is_refused(release):
    """The RayService is named after the release: it must be a DNS-1035 label (validation.go)."""
    with pytest.raises(RenderError, match="is not a DNS-1035 label"):
        render(release=release)
