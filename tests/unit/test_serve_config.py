"""The checked-in serve config is valid before any cluster sees it."""

import yaml

from clusterkit import serveconfig
from clusterkit.localray import SERVE_CONFIG, ray_env

CONFIG = yaml.safe_load(SERVE_CONFIG.read_text())


def test_validates_against_ray_serve_schema_import_paths_and_app_types():
    serveconfig.check(CONFIG)


def test_every_deployment_is_configured():
    (app,) = CONFIG["applications"]
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == {"Ingress", "Preprocessor", "Classifier"}
    for deployment in deployments.values():
        # Bounded queues everywhere: overload is refused, not buffered without limit.
        assert deployment["max_queued_requests"] > 0
    # The reservations fit a 2-CPU machine (the tutorial's three whole CPUs did not).
    assert sum(d["num_replicas"] * d["ray_actor_options"]["num_cpus"] for d in deployments.values()) <= 2


def test_ray_env_file_parses():
    env = ray_env()
    assert env == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
