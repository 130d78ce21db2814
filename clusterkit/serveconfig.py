"""What makes a serve config deployable, checked before any cluster sees it; and the config
`make run` serves: in a topology (TOPOLOGY), pointed at another model (MODEL_URI, MODEL_VERSION)."""

from __future__ import annotations

import argparse
import copy
import functools
import subprocess
import sys
from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from mnist_serve.config import DEPLOYMENTS, AppArgs, Batching, ModelSource


def with_topology(config: dict, topology: str) -> dict:
    """`config` with every application in `topology`, configuring only the deployments it has."""
    config = copy.deepcopy(config)
    for app in config["applications"]:
        app["args"]["topology"] = topology
        app["deployments"] = [d for d in app["deployments"] if d["name"] in DEPLOYMENTS[topology]]
    return config


@functools.cache
def _check_import_path(import_path: str) -> None:
    """The import path names a callable, imported as Serve imports it: in a fresh interpreter.

    Not in this process: the app's OIP gRPC code registers the `inference` protobuf package,
    which Triton's client (imported by the tests) registers too, and one process can hold only
    one of them (protobuf's descriptor pool refuses duplicate symbols).
    """
    module, _, name = import_path.partition(":")
    probe = f"import importlib; assert callable(getattr(importlib.import_module({module!r}), {name!r}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, f"{import_path}: {result.stderr.strip().splitlines()[-1:]}"


def check(config: dict) -> None:
    """Raise unless Ray Serve, the import paths and the app's own types all accept `config`."""
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        _check_import_path(app["import_path"])
        args = AppArgs.model_validate(app["args"])
        extra = {d["name"] for d in app["deployments"]} - set(DEPLOYMENTS[args.topology])
        assert not extra, f"a {args.topology} app has no deployments {sorted(extra)}"
        for deployment in app["deployments"]:
            if "user_config" in deployment:
                Batching.model_validate(deployment["user_config"])


def with_model(config: dict, model: ModelSource) -> dict:
    """`config` serving another model: every application's args.model replaced."""
    config = copy.deepcopy(config)
    for app in config["applications"]:
        app["args"]["model"] = model.model_dump(exclude_none=True)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a serve config in a topology, serving another model.")
    parser.add_argument("config", type=Path)
    parser.add_argument("--topology", choices=sorted(DEPLOYMENTS), help="every application's topology")
    parser.add_argument("--model-uri", help="path, file://, s3://, gs:// or https:// URI")
    parser.add_argument("--model-version", help="required with --model-uri")
    parser.add_argument("--model-sha256", default=None, help="pin (recommended for remote URIs)")
    parser.add_argument("--out", "-o", type=Path, required=True)
    args = parser.parse_args()
    if args.model_uri and not args.model_version:
        parser.error("--model-version is required with --model-uri")
    config = yaml.safe_load(args.config.read_text())
    if args.topology:
        config = with_topology(config, args.topology)
    if args.model_uri:
        model = ModelSource(uri=args.model_uri, version=args.model_version, sha256=args.model_sha256 or None)
        config = with_model(config, model)
    check(config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(config, sort_keys=False))
    for app in config["applications"]:
        served = AppArgs.model_validate(app["args"])
        model = served.model
        print(f"{args.out}: {app['name']} {served.topology}, model {model.uri} version {model.version}")


if __name__ == "__main__":
    main()
