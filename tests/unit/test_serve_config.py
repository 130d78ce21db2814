"""The checked-in serve config is valid before any cluster sees it."""

import importlib

import yaml
from ray.serve.schema import ServeDeploySchema

from localray import SERVE_CONFIG, ray_env
from mnist_serve.config import AppArgs, Batching

CONFIG = yaml.safe_load(SERVE_CONFIG.read_text())


def test_validates_against_ray_serves_own_schema():
    ServeDeploySchema.model_validate(CONFIG)


def test_import_paths_import_and_args_validate():
    for app in CONFIG["applications"]:
        module, _, name = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), name))
        AppArgs.model_validate(app["args"])


def test_every_deployment_is_configured_and_user_configs_validate():
    (app,) = CONFIG["applications"]
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == {"Ingress", "Preprocessor", "Classifier"}
    for deployment in deployments.values():
        # Bounded queues everywhere: overload is refused, not buffered without limit.
        assert deployment["max_queued_requests"] > 0
        if "user_config" in deployment:
            Batching.model_validate(deployment["user_config"])
    # The reservations fit a 2-CPU machine (the tutorial's three whole CPUs did not).
    assert sum(d["num_replicas"] * d["ray_actor_options"]["num_cpus"] for d in deployments.values()) <= 2


def test_ray_env_file_parses():
    env = ray_env()
    assert env == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
