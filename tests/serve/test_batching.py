"""Dynamic batching forms under load, and its settings change at run time."""

import asyncio
import collections

import aiohttp

from mnist_serve import client


def batch_sizes_under_load(base_url, image, concurrency=64, total=640) -> collections.Counter:
    request = client.encode("raw", image)

    async def run():
        sizes = collections.Counter()
        limit = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as session:

            async def one():
                async with (
                    limit,
                    session.post(
                        base_url + request.path, data=request.body, headers=request.headers
                    ) as reply,
                ):
                    assert reply.status == 200, await reply.text()
                    sizes[int(reply.headers["x-batch-size"])] += 1

            await asyncio.gather(*(one() for _ in range(total)))
        return sizes

    return asyncio.run(run())


def test_batches_form_under_concurrent_load(base_url, mnist_test):
    sizes = batch_sizes_under_load(base_url, mnist_test.images[:1])
    print("forward-pass sizes seen by single-image requests:", dict(sorted(sizes.items())))
    assert max(sizes) > 1
    assert sum(n for size, n in sizes.items() if size > 1) > sum(sizes.values()) / 2


def test_batch_size_changes_at_run_time_without_restarting_replicas(cluster, redeploy, mnist_test):
    before = cluster.replicas()

    def batch_of_one(config):
        for deployment in config["applications"][0]["deployments"]:
            if "user_config" in deployment:
                deployment["user_config"]["max_batch_size"] = 1

    redeploy(batch_of_one)
    sizes = batch_sizes_under_load(cluster.serve_url, mnist_test.images[:1])
    assert set(sizes) == {1}
    assert cluster.replicas() == before
