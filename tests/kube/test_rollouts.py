"""What the real operator does under load: a change it answers with a new cluster, a serve config
that cannot deploy, a worker pod deleted. Each runs after the in-place rollout (test_rayservice)."""

from __future__ import annotations

import time

from kubernetes import client

from clusterkit.kube import release
from clusterkit.load import Load, accuracy, failed, summary


def wait(what: str, check, timeout_s: float = 600) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"{what}: not after {timeout_s:.0f} s"
        time.sleep(2)
    return time.monotonic() - started


def statuses() -> tuple[str, str]:
    status = release.rayservice()["status"]
    active = status.get("activeServiceStatus", {}).get("rayClusterName", "")
    pending = status.get("pendingServiceStatus", {}).get("rayClusterName", "")
    return active, pending


def app_status() -> str:
    apps = release.rayservice()["status"]["activeServiceStatus"].get("applicationStatuses", {})
    return apps.get("mnist", {}).get("status", "")


def ray_clusters(api) -> list[str]:
    objs = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "ray.io", "v1", release.NAMESPACE, "rayclusters"
    )
    return [obj["metadata"]["name"] for obj in objs["items"]]


def test_a_new_cluster_takes_the_traffic_when_its_apps_run(api, serve_url, mnist_test, report):
    old, _ = statuses()
    # The head's memory limit is in KubeRay's cluster hash: a new cluster, then the switch.
    change = {"model.version": '"2"', "head.resources.limits.memory": '"3Gi"'}
    with Load(serve_url, mnist_test.images, mnist_test.labels, clients=4) as load:
        load.wait_for(100, timeout_s=120)
        release.install(change)
        pending = wait("a pending cluster", lambda: statuses()[1] != "", 120)
        switched = wait("the switch", lambda: statuses()[0] not in ("", old), 900)
        load.wait_for(200, timeout_s=120)
        deleted = wait("the old cluster deleted", lambda: old not in ray_clusters(api), 300)
    new, _ = statuses()
    report(
        f"kube: new-cluster rollout ({old} -> {new}): pending after {pending:.0f} s, traffic switched "
        f"{switched:.0f} s later, old cluster deleted {deleted:.0f} s after that; {summary(load.outcomes)}"
    )
    assert failed(load.outcomes) == [], {(o.status, o.error) for o in failed(load.outcomes)}
    assert accuracy(load.outcomes) >= 0.98


def test_a_serve_config_that_cannot_deploy_leaves_the_running_version_answering(
    serve_url, mnist_test, report
):
    active, _ = statuses()
    broken = {
        "model.version": '"3"',
        "head.resources.limits.memory": '"3Gi"',
        "model.uri": '"file:///home/ray/model/missing.pt"',
    }
    with Load(serve_url, mnist_test.images, mnist_test.labels, clients=4) as load:
        load.wait_for(100, timeout_s=120)
        release.install(broken)

        took = wait("the app marked failed", lambda: app_status() in ("DEPLOY_FAILED", "UNHEALTHY"), 300)
        load.wait_for(200, timeout_s=120)
    versions = {o.model_version for o in load.outcomes if o.status == 200}
    report(
        f"kube: a missing model file: app failed after {took:.0f} s; {summary(load.outcomes)}, {versions=}"
    )
    assert failed(load.outcomes) == [], {(o.status, o.error) for o in failed(load.outcomes)}
    assert versions == {"2"}
    assert statuses()[0] == active, "a broken serve config started a new cluster"
    release.install({"model.version": '"2"', "head.resources.limits.memory": '"3Gi"'})
    wait("version 2 RUNNING again", lambda: app_status() == "RUNNING")


def test_a_worker_pod_deleted_under_load(core, serve_url, mnist_test, report):
    active, _ = statuses()
    selector = f"ray.io/cluster={active},ray.io/node-type=worker"
    (worker,) = core.list_namespaced_pod(release.NAMESPACE, label_selector=selector).items
    with Load(serve_url, mnist_test.images, mnist_test.labels, clients=4) as load:
        load.wait_for(100, timeout_s=120)
        lost = time.monotonic()
        core.delete_namespaced_pod(worker.metadata.name, release.NAMESPACE, grace_period_seconds=0)

        def answering_again() -> bool:
            recent = load.between(time.monotonic() - 5)
            return len(recent) > 10 and not failed(recent)

        back = wait("answering again", answering_again, 600)
        after = time.monotonic()
        load.wait_for(200, timeout_s=120)
    during, settled = load.between(lost, after), load.between(after)
    report(
        f"kube: worker pod deleted (the only worker: every replica with it): answering again after "
        f"{back:.0f} s; during: {summary(during)}; after: {summary(settled)}"
    )
    assert failed(settled) == []
    assert active == statuses()[0], "a lost worker pod started a new cluster"
