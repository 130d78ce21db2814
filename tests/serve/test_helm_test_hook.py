"""The chart's `helm test` pod, run here: its script against the local service, its digit from the
rendered ConfigMap. A cluster runs the same script with the same files mounted at /digit."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from clusterkit.helmchart import by_kind, render


@pytest.fixture(scope="module")
def hook() -> tuple[str, dict[str, str], dict]:
    objects = render()
    (pod,) = by_kind(objects, "Pod")
    (configmap,) = by_kind(objects, "ConfigMap")
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python3", "-c"]
    return container["args"][0], {e["name"]: e["value"] for e in container["env"]}, configmap


def run_hook(script: str, digit_dir, base_url: str) -> subprocess.CompletedProcess:
    env = {"URL": f"{base_url}/predict", "DIGIT_DIR": str(digit_dir)}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


def mount(configmap: dict, into, label: str | None = None) -> None:
    (into / "digit.raw").write_bytes(base64.b64decode(configmap["binaryData"]["digit.raw"]))
    (into / "label").write_text(label or configmap["data"]["label"])


def test_the_hook_passes_against_the_running_service(hook, base_url, tmp_path):
    script, env, configmap = hook
    assert env["DIGIT_DIR"] == "/digit"
    mount(configmap, tmp_path)
    result = run_hook(script, tmp_path, base_url)
    assert result.returncode == 0, result.stderr
    assert "predicted [7], expected [7]" in result.stdout


def test_the_hook_fails_on_a_wrong_answer(hook, base_url, tmp_path):
    script, _, configmap = hook
    mount(configmap, tmp_path, label="3")
    result = run_hook(script, tmp_path, base_url)
    assert result.returncode != 0
    assert "AssertionError" in result.stderr
