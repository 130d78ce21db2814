"""Scenario 4, node loss: a worker node dies under load. Serve replaces its replicas on the
surviving node; the requests that fail meanwhile are counted; once Serve has recovered (and
KubeRay has recreated the pod) nothing fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clusterkit.helmchart import CI_VALUES
from clusterkit.load import Load, failed, summary
from clusterkit.poll import wait_for
from mnist_serve.config import MODEL_DEPLOYMENT

VALUES = [CI_VALUES / "kind-values.yaml", Path(__file__).parent / "values" / "two-workers-values.yaml"]
CLIENTS = 8
# Each client has one request in flight: the kill can fail it, and the next one too if it reaches
# the lost replica before Serve's routers drop it. More than two per client is a retry storm.
MAX_LOST = 2 * CLIENTS


@pytest.fixture(scope="module")
def run(bring_up):
    with bring_up(*VALUES) as run:
        yield run


def recovered(run, lost: str) -> bool:
    """Every deployment back at its size, all replicas running, none on the lost node."""
    app = run.cluster.details()["applications"]["mnist"]
    if app["status"] != "RUNNING":
        return False
    for deployment in app["deployments"].values():
        replicas = deployment["replicas"]
        target = deployment["target_num_replicas"]
        if len(replicas) != target or any(r["state"] != "RUNNING" or r["node_id"] == lost for r in replicas):
            return False
    return True


def test_losing_a_worker_under_load(run, mnist_test, report, topology):
    # The victim: a worker that runs the model, so the whole pipeline is hit.
    model_node = min(run.placement()[MODEL_DEPLOYMENT[topology]])
    victim = next(name for name in ("cpu-0", "cpu-1") if run.cluster.node_id(name) == model_node)
    with Load(run.cluster.serve_url, mnist_test.images, mnist_test.labels, clients=CLIENTS) as load:
        load.wait_for(200)
        lost = time.monotonic()
        run.cluster.kill_node(victim)
        wait_for(f"recovery from losing {victim}", lambda: recovered(run, model_node), 180, 0.5)
        back = time.monotonic()
        # KubeRay recreates the lost pod (worker group replicas: 2).
        run.cluster.start_node(victim)
        run.cluster.wait_nodes(3)
        load.wait_for(100)
        settled = time.monotonic()
        load.wait_for(500)
    # By when each request ended: one in flight at the kill belongs to the outage.
    before = [o for o in load.between(0, lost) if o.start + o.latency_s < lost]
    during = [o for o in load.between(0, back) if o.start + o.latency_s >= lost]
    rejoin, after = load.between(back, settled), load.between(settled)
    report(
        f"node loss ({victim}, with the {MODEL_DEPLOYMENT[topology]}): "
        f"Serve recovered in {back - lost:.1f} s; before: {summary(before)}; during: {summary(during)}; "
        f"while the node rejoined: {summary(rejoin)}; after: {summary(after)}"
    )
    assert failed(before) == failed(rejoin) == failed(after) == []
    assert len(after) >= 500
    assert len(failed(during)) <= MAX_LOST, summary(during)
    # Requests in flight on the lost node fail: reset connections, or Ray's HAProxy answering
    # "500 Internal Server Error" (it rewrites its 502/504 so). The app's own answer is a 503.
    assert {o.status for o in failed(during)} <= {0, 500, 503}, {o.error for o in failed(during)}
