"""Request limits come from the serve config's args and are enforced as configured."""

import pytest
import requests


def test_configured_limits_are_enforced(cluster, redeploy, mnist_test):
    def small_limits(config):
        config["applications"][0]["args"]["limits"] = {"max_images": 2, "max_body_bytes": 4096}

    redeploy(small_limits)
    url = f"{cluster.serve_url}/predict"
    raw = {"content-type": "application/octet-stream"}
    assert requests.post(url, data=mnist_test.images[:2].tobytes(), headers=raw).status_code == 200

    too_many = requests.post(url, data=mnist_test.images[:3].tobytes(), headers=raw)
    assert too_many.status_code == 413 and "at most 2" in too_many.text

    too_big = requests.post(url, data=b"\0" * 5000, headers=raw)
    assert too_big.status_code == 413 and "exceeds 4096 bytes" in too_big.text


def test_bad_args_fail_the_deploy_with_a_clear_message(cluster, redeploy, mnist_test):
    def invalid(config):
        config["applications"][0]["args"]["limits"] = {"max_images": 0}

    # The typed builder validates args before any replica is touched...
    with pytest.raises(RuntimeError, match=r"max_images[\s\S]*greater than or equal to 1"):
        redeploy(invalid)
    # ...so the running version keeps serving.
    reply = requests.post(f"{cluster.serve_url}/predict", json={"image": mnist_test.images[0].tolist()})
    assert reply.status_code == 200 and reply.json()["labels"] == [mnist_test.labels[0]]
