"""The distributed load generator's pieces: image pins agree with the project's, manifests are
valid Kubernetes objects."""

from __future__ import annotations

import tomllib

import kubernetes_validate
import pytest
import yaml

from clusterkit.localray import REPO

LOCUST_MANIFESTS = sorted((REPO / "k8s" / "locust").glob("*.yaml"))


def pins(lines) -> dict[str, str]:
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_image_requirements_pin_what_the_project_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    image = pins((REPO / "loadtest" / "requirements.txt").read_text().splitlines())
    assert {name: pinned.get(name) for name in image} == image


@pytest.mark.parametrize("path", LOCUST_MANIFESTS, ids=[p.name for p in LOCUST_MANIFESTS])
def test_locust_manifests_validate_strictly(path):
    for obj in yaml.safe_load_all(path.read_text()):
        if obj["kind"] != "Kustomization":
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
