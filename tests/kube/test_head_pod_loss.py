"""Head loss on the real cluster: ci/ha-values.yaml's GCS fault tolerance with a real Redis on this
machine (the kube-up node; kind's pods reach it over the `kind` network), the head pod deleted
under load. The serve Service leaves the head out, so the workers' proxies keep answering;
KubeRay recreates the head, whose Serve controller recovers the applications from Redis without a
redeploy. The local-Ray version is tests/contract/test_head_loss.py."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from clusterkit.helmchart import CI_VALUES
from clusterkit.kube import release, target
from clusterkit.load import Load, failed, summary
from clusterkit.poll import Sampler, wait_for

HA = yaml.safe_load((CI_VALUES / "ha-values.yaml").read_text())
GROUP = yaml.safe_load(release.VALUES.read_text())["workerGroups"][0]
# The Secret (name, key) that holds the Redis password: created beside the release, as the values say.
PASSWORD_SECRET = tuple(HA["ha"]["redis"]["passwordSecret"][field] for field in ("name", "key"))


def ha_values(redis_address: str) -> dict[str, str]:
    """ci/ha-values.yaml, with this Redis and worker requests small enough for the old and the
    new cluster to fit on the node's 2 CPUs at the switch (Ray still sees each limit's 2 CPUs)."""
    ha = copy.deepcopy(HA["ha"])
    ha["redis"]["address"] = redis_address
    (workers,) = copy.deepcopy(HA["workerGroups"])
    workers["resources"]["requests"] = GROUP["resources"]["requests"] | {"cpu": "250m"}
    return {"ha": json.dumps(ha), "workerGroups": json.dumps([workers])}


@dataclass(frozen=True)
class HACluster:
    redis: Any  # tests/conftest.py's Redis on the node: address, password, cli()
    served_s: float  # from the switch seen to the serve Service's first ready pod


def applications() -> dict:
    url = f"http://{release.head_ip()}:8265/api/serve/applications/"
    return requests.get(url, timeout=10).json()["applications"]


def app_running() -> bool:
    """Whether the (new) head's dashboard reports the app RUNNING; a head that is recovering
    its state may not answer yet."""
    try:
        return applications()["mnist"]["status"] == "RUNNING"
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def ha(core, redis_at, report):
    """The release switched to head HA (a new cluster: GCS FT is in KubeRay's cluster hash),
    and back to the CI values after.

    KubeRay moves the serve Service to the new cluster when its head is Ready and its apps RUNNING
    (v1.7.0 rayservice_controller.go reconcileServe), not when the Service would have a pod: with
    the head left out (excludeHeadPodFromServeSvc), only workers whose readiness probe has passed
    the proxy's /-/healthz count, and Ray's HAProxy fails that check on a worker until a backend
    server of the app is UP (serve/_private/haproxy_templates.py HAPROXY_HEALTHZ_RULES_TEMPLATE).
    The fixture measures that gap (the charts README reports it) and waits it out."""
    with redis_at(target.current().host_ip()) as redis:
        name, key = PASSWORD_SECRET
        secret = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={key: redis.password})
        core.create_namespaced_secret(release.NAMESPACE, secret)
        try:
            old, _ = release.clusters()
            release.install(ha_values(redis.address))
            with Sampler(release.serve_endpoints, interval=0.25) as endpoints:
                wait_for(
                    "the HA cluster taking the traffic",
                    lambda: release.clusters()[0] not in ("", old),
                    900,
                    interval=0.25,
                )
                switched = time.monotonic()
                served = wait_for("a ready serve endpoint", release.serve_endpoints, 300, interval=0.25)
            wait_for("no pending cluster", lambda: not release.clusters()[1], 300)
            report(
                f"kube: switch to the HA cluster (head out of the serve Service): a ready serve "
                f"endpoint {served:.1f} s after the switch was seen; "
                f"{release.unserved(endpoints.samples, switched) or 'never without one'}"
            )
            yield HACluster(redis, served)
        finally:
            ha_cluster, _ = release.clusters()
            release.install({})
            wait_for("the CI values' cluster back", lambda: release.clusters()[0] != ha_cluster, 900)
            # Redis stays up until the operator has deleted the HA cluster and cleaned its keys.
            wait_for("the HA cluster deleted", lambda: ha_cluster not in release.ray_clusters(), 600)
            core.delete_namespaced_secret(name, release.NAMESPACE)


def test_the_ha_pods_match_the_imitation(ha, pods_against_imitation, report):
    """What the operator adds for GCS fault tolerance (RAY_REDIS_ADDRESS, the password from the
    Secret, the storage namespace, the workers' reconnect timeout, the head's annotations) against
    clusterkit.kuberay.gcs_fault_tolerance, which the local layer runs."""
    lines = pods_against_imitation({PASSWORD_SECRET: ha.redis.password})
    report(
        "kube: the operator's HA pods (ci/ha-values.yaml) against clusterkit.kuberay:\n  "
        + "\n  ".join(lines)
    )


def test_the_head_keeps_gcs_state_in_redis(ha, core):
    active, _ = release.clusters()
    raycluster = client.CustomObjectsApi(core.api_client).get_namespaced_custom_object(
        "ray.io", "v1", release.NAMESPACE, "rayclusters", active
    )
    # Without an external storage namespace, the operator uses the RayCluster's UID.
    assert raycluster["metadata"]["uid"] in ha.redis.cli("--scan")


def test_the_switch_leaves_the_serve_service_without_a_pod_at_most_one_probe_period(ha):
    """KubeRay's worker readiness probe runs every 5 s with a 2 s timeout (v1.7.0 and v1.5.0
    utils/constant.go DefaultReadinessProbePeriodSeconds, DefaultReadinessProbeTimeoutSeconds):
    the Service gets its first pod within one probe after the proxies can route."""
    assert ha.served_s <= 5 + 2


def test_losing_the_head_pod_under_load(ha, core, serve_url, mnist_test, report):
    active, _ = release.clusters()
    (head,) = release.ready_pods("head")
    deployed = applications()["mnist"]["last_deployed_time_s"]
    with (
        Load(serve_url, mnist_test.images, mnist_test.labels, clients=4) as load,
        Sampler(release.serve_endpoints, interval=0.5) as endpoints,
    ):
        load.wait_for(200, timeout_s=120)
        lost = time.monotonic()
        core.delete_namespaced_pod(head, release.NAMESPACE)
        wait_for("the head pod gone", lambda: head not in release.ready_pods("head"), 300)
        headless = time.monotonic()
        replaced = wait_for("a new head pod Ready", lambda: release.ready_pods("head") - {head}, 600)
        running = replaced + wait_for("the app RUNNING on the new head", app_running, 300)
        back = time.monotonic()
        load.wait_for(500, timeout_s=300)
    during, after = load.between(lost, back), load.between(back)
    report(
        f"kube: head pod deleted (GCS FT, Redis on the node): {summary(load.between(lost, headless))} "
        f"while it stopped; new head Ready {replaced:.0f} s after the delete, app RUNNING at "
        f"{running:.0f} s; during: {summary(during)}; after: {summary(after)}"
    )
    # The workers' proxies keep serving, as the chart README says: not one failure, at any time.
    assert failed(load.between()) == [], (
        f"{summary(load.between())}; {release.unserved(endpoints.samples, lost)}"
    )
    assert release.clusters() == (active, ""), "the head's loss started a new cluster"
    assert applications()["mnist"]["last_deployed_time_s"] == deployed, "redeployed, not recovered"
