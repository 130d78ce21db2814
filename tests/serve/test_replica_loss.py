"""A model replica that dies under requests (its process killed, as when its node is lost): Serve
replaces it and nothing fails after. Composed, the Ingress answers for its lost Classifier with a
retryable 503 + Retry-After, never a 500. Fused, the lost replica is the ingress itself: its
requests in flight end as Ray's HAProxy ends them, a reset or "500 Internal Server Error" (its 502
rewritten by `errorfile`; its `retry-on` defaults to conn-failure, which cannot replay a request
already sent: ray 2.60.0, ray/serve/_private/haproxy_templates.py), which the README states."""

from __future__ import annotations

import time

import psutil

from clusterkit.load import Load, failed
from clusterkit.poll import wait_for
from mnist_serve.config import MODEL_DEPLOYMENT

CLIENTS = 16


def stood_in(alive: list[dict], victim: dict, count: int) -> bool:
    """A new replica stands in for the victim: it is gone and the count is whole again."""
    return victim["actor_id"] not in {a["actor_id"] for a in alive} and len(alive) == count


def test_a_model_replica_lost_mid_request_is_replaced(cluster, mnist_test, topology, report):
    replicas = f"ServeReplica:mnist:{MODEL_DEPLOYMENT[topology]}"
    alive = cluster.actors(replicas)
    victim = alive[0]
    with Load(cluster.serve_url, mnist_test.images, mnist_test.labels, clients=CLIENTS, batch=32) as load:
        load.wait_for(50)
        killed = time.monotonic()
        psutil.Process(victim["pid"]).kill()
        wait_for(
            f"{replicas} replaced", lambda: stood_in(cluster.actors(replicas), victim, len(alive)), 120, 0.5
        )
        cluster.wait_running()
        replaced = time.monotonic()
        load.wait_for(100)
    lost = failed(load.between())  # the kill is the only fault: every failure is the kill's
    statuses = sorted({o.status for o in lost})
    report(
        f"{topology}: {MODEL_DEPLOYMENT[topology]} replica killed, replaced in {replaced - killed:.1f} s, "
        f"{len(lost)} requests lost: {statuses}"
    )
    assert lost, "the kill should have hit requests in flight"
    if topology == "composed":
        assert statuses == [503], {o.error for o in lost}
        assert all("replica was lost" in o.error for o in lost)
    else:
        assert set(statuses) <= {0, 500}, {o.error for o in lost}  # 0: the connection was reset
    # None after the replacement; at most the requests in flight when the replica died, one per client.
    assert failed(load.between(replaced)) == []
    assert len(lost) <= CLIENTS
