"""A replica that dies under requests (its process killed, as when its node is lost) costs the
requests in flight a retryable 503 with Retry-After, never a 500; Serve replaces it."""

from __future__ import annotations

import time

import psutil

from clusterkit.load import Load, failed
from mnist_serve.config import MODEL_DEPLOYMENT


def stood_in(alive: list[dict], victim: dict, count: int) -> bool:
    """A new replica stands in for the victim: it is gone and the count is whole again."""
    return victim["actor_id"] not in {a["actor_id"] for a in alive} and len(alive) == count


def test_a_model_replica_lost_mid_request_answers_503_and_is_replaced(cluster, mnist_test, topology):
    replicas = f"ServeReplica:mnist:{MODEL_DEPLOYMENT[topology]}"
    alive = cluster.actors(replicas)
    victim = alive[0]
    with Load(cluster.serve_url, mnist_test.images, mnist_test.labels, clients=16, batch=32) as load:
        load.wait_for(50)
        killed = time.monotonic()
        psutil.Process(victim["pid"]).kill()
        deadline = killed + 120
        while not stood_in(cluster.actors(replicas), victim, len(alive)):
            assert time.monotonic() < deadline, f"{replicas} was not replaced within 120 s"
            time.sleep(0.5)
        cluster.wait_running()
        replaced = time.monotonic()
        load.wait_for(100)
    lost = failed(load.between(killed - 5, replaced))
    assert lost, "the kill should have hit requests in flight"
    assert {o.status for o in lost} == {503}, {o.error for o in lost}
    assert all("replica was lost" in o.error for o in lost)
    assert failed(load.between(replaced + 1)) == []
