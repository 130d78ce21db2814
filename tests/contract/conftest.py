"""The chart's RayService brought up as KubeRay would, on a local multi-node Ray (one per module)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from clusterkit import kuberay
from clusterkit.helmchart import CI_VALUES
from clusterkit.load import Load, Outcome
from clusterkit.localray import Ports, RayServiceRun, start_rayservice

# After RUNNING, requests already routed may still finish on the replicas being replaced.
SETTLED_S = 1.0
# Apart from the serve tests' cluster, so both layers can run in one session.
PORTS = Ports(
    gcs=27379,
    dashboard=29265,
    client=20011,
    serve=29000,
    grpc=29100,
    nodes=22000,
    direct_ingress_http=23500,
    direct_ingress_grpc=24500,
)


@pytest.fixture(scope="session")
def bring_up(report, topology):
    """`with bring_up(values...) as run:` render (in the topology under test), start every node,
    deploy; stop it whatever happens."""
    overlay = [] if topology == "composed" else [CI_VALUES / f"{topology}-values.yaml"]

    @contextmanager
    def bring_up(*values: Path, env: dict[str, str] | None = None, secrets: dict | None = None):
        values = (*values, *overlay)
        run = start_rayservice(list(values), ports=PORTS, env=env, secrets=secrets)
        try:
            nodes = ", ".join(f"{n.name} {n.params.get('num-cpus')} CPU" for n in run.cluster.nodes.values())
            scenario = "+".join(v.stem for v in values)
            report(f"{scenario}: RUNNING {run.seconds_to_running:.1f} s after start ({nodes})")
            yield run
        finally:
            run.cluster.stop()

    return bring_up


@pytest.fixture
def rollout_under_load(mnist_test):
    """`load, started, rolled, late = rollout_under_load(run, rayservice)`: the in-place update
    KubeRay makes for a new serveConfigV2 (one PUT, then RUNNING), while 8 clients send real digits.
    `late`: the requests sent SETTLED_S after RUNNING, at least 300 served, by which the tests judge
    the new config (the load runs until then: fused serves 300 in well under a second)."""

    def rollout(run: RayServiceRun, rayservice: dict) -> tuple[Load, float, float, list[Outcome]]:
        with Load(run.cluster.serve_url, mnist_test.images, mnist_test.labels, clients=8) as load:
            load.wait_for(100)
            started = time.monotonic()
            run.deploy(kuberay.serve_config(rayservice))
            rolled = time.monotonic()
            load.wait_for(300, since=rolled + SETTLED_S)
        return load, started, rolled, load.between(rolled + SETTLED_S)

    return rollout
