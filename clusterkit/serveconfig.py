"""What makes a serve config deployable, checked before any cluster sees it."""

from __future__ import annotations

import copy
import importlib

from ray.serve.schema import ServeDeploySchema

from mnist_serve.builders import DEPLOYMENTS
from mnist_serve.config import AppArgs, Batching


def with_topology(config: dict, topology: str) -> dict:
    """`config` with every application in `topology`, configuring only the deployments it has."""
    config = copy.deepcopy(config)
    for app in config["applications"]:
        app["args"]["topology"] = topology
        app["deployments"] = [d for d in app["deployments"] if d["name"] in DEPLOYMENTS[topology]]
    return config


def check(config: dict) -> None:
    """Raise unless Ray Serve, the import paths and the app's own types all accept `config`."""
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        module, _, name = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), name)), app["import_path"]
        args = AppArgs.model_validate(app["args"])
        extra = {d["name"] for d in app["deployments"]} - set(DEPLOYMENTS[args.topology])
        assert not extra, f"a {args.topology} app has no deployments {sorted(extra)}"
        for deployment in app["deployments"]:
            if "user_config" in deployment:
                Batching.model_validate(deployment["user_config"])
