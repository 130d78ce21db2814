"""Both topologies from the one serve config answer alike: `composed` (Ingress → Preprocessor →
Classifier) and `fused` (the model inside each Ingress replica), whichever the suite runs
(`--topology`; each runs the whole serve and contract suites on its own)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from test_accuracy import classify_all
from test_batching import batch_sizes_under_load

from clusterkit.localray import serve_config
from clusterkit.serveconfig import with_topology
from mnist_serve import client
from mnist_serve.config import DEPLOYMENTS, MODEL_DEPLOYMENT


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def each_topology(request, cluster, app_config) -> str:
    started = time.time()
    cluster.deploy(with_topology(serve_config(cluster.ports), request.param))
    cluster.wait_running(since=started)
    yield request.param
    started = time.time()
    cluster.deploy(app_config(cluster.ports))
    cluster.wait_running(since=started)


def test_only_the_topologys_deployments_run(cluster, each_topology):
    assert set(cluster.replicas()) == set(DEPLOYMENTS[each_topology])


@pytest.mark.parametrize("fmt", client.FORMATS)
def test_every_format_classifies(cluster, each_topology, mnist_test, fmt):
    predicted = classify_all(cluster.serve_url, fmt, mnist_test.images[:1000])
    assert (predicted == mnist_test.labels[:1000]).mean() >= 0.98


def test_a_request_larger_than_a_batch_goes_as_several_forward_passes(cluster, each_topology, mnist_test):
    """max_batch_size counts images: a request of more is split, never refused or overrun."""
    config = with_topology(serve_config(cluster.ports), each_topology)
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    forward_max = deployments[MODEL_DEPLOYMENT[each_topology]]["user_config"]["max_batch_size"]
    request = client.encode("raw", mnist_test.images[:256])
    url = cluster.serve_url + request.path
    reply = requests.post(url, data=request.body, headers=request.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    assert (np.array(reply.json()["labels"]) == mnist_test.labels[:256]).mean() >= 0.98
    assert int(reply.headers["x-batch-size"]) <= forward_max < 256


def test_concurrent_requests_share_forward_passes(cluster, each_topology, mnist_test):
    sizes = batch_sizes_under_load(cluster.serve_url, mnist_test.images[:1])
    assert max(sizes) > 1
