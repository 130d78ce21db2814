"""Load beyond capacity gets a prompt 503 with Retry-After, not unbounded queueing."""

import asyncio
import collections

import aiohttp
import numpy as np
import requests

from mnist_serve import client


def test_overload_is_refused_with_retry_after_and_the_service_recovers(cluster, redeploy, mnist_test):
    def tiny_queues(config):
        for deployment in config["applications"][0]["deployments"]:
            deployment["max_ongoing_requests"] = 2
            deployment["max_queued_requests"] = 2

    redeploy(tiny_queues)
    request = client.encode("raw", mnist_test.images[:256])  # the largest request allowed

    async def flood(n=64):
        statuses, retry_after = collections.Counter(), set()
        async with aiohttp.ClientSession() as session:

            async def one():
                async with session.post(
                    cluster.serve_url + request.path, data=request.body, headers=request.headers
                ) as reply:
                    await reply.read()
                    statuses[reply.status] += 1
                    if reply.status == 503:
                        retry_after.add(reply.headers.get("Retry-After"))

            await asyncio.gather(*(one() for _ in range(n)))
        return statuses, retry_after

    statuses, retry_after = asyncio.run(flood())
    print("statuses under overload:", dict(statuses))
    assert set(statuses) <= {200, 503}
    assert statuses[503] > 0 and statuses[200] > 0
    assert retry_after == {"1"}

    reply = requests.post(cluster.serve_url + request.path, data=request.body, headers=request.headers)
    assert reply.status_code == 200
    assert (np.array(reply.json()["labels"]) == mnist_test.labels[:256]).mean() >= 0.98
