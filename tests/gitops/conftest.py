"""GitOps through a real Argo CD (`make gitops-test`): the cluster of `make kube-up` without the
Helm release, Argo CD and a git server on it (clusterkit.kube.argocd). The repository Argo CD
follows is made here from this checkout's chart and k8s/, as a fork would hold them, and each test
changes it by a commit and a push."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from clusterkit import standin
from clusterkit.kube import argocd, release
from clusterkit.kube.layout import REPO

STAGING = "k8s/envs/staging/values.yaml"
GIT_ENV = os.environ | {
    "GIT_AUTHOR_NAME": "mnist-serve gitops-test",
    "GIT_AUTHOR_EMAIL": "gitops-test@mnist-serve.invalid",
    "GIT_COMMITTER_NAME": "mnist-serve gitops-test",
    "GIT_COMMITTER_EMAIL": "gitops-test@mnist-serve.invalid",
}


@dataclass
class Repository:
    """The repository Argo CD follows: a clone here, pushed to the git server on the cluster."""

    path: Path
    remote: str

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, text=True, env=GIT_ENV, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def push(self) -> float:
        """Push main; the time.monotonic() of the push."""
        self.git("push", "--quiet", self.remote, "HEAD:main")
        return time.monotonic()

    def commit(self, message: str, change: Callable[[dict], None]) -> str:
        """Edit staging's values with `change`, commit; the new commit."""
        path = self.path / STAGING
        values = yaml.safe_load(path.read_text())
        change(values)
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        self.git("commit", "--quiet", "--all", "--message", message)
        return self.head()

    def revert_to(self, commit: str) -> str:
        """One commit reverting every commit after `commit`; the new commit."""
        self.git("revert", "--no-edit", "--no-commit", f"{commit}..HEAD")
        self.git("commit", "--quiet", "--message", f"Revert to {commit[:7]}")
        return self.head()

    def plan(self, old: str, new: str) -> str:
        """`make rollout-plan FROM=old TO=new VALUES=<staging>` on this repository: what it prints
        below its `Rollout plan: old -> new` line."""
        command = [str(REPO / ".venv" / "bin" / "python"), "-m", "clusterkit.rollout_plan", old, new]
        command += ["--values", STAGING, "--operator", release.operator_version(), "--repo", str(self.path)]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
        return result.stdout.split("\n", 1)[1]


def on_this_cluster(values: dict) -> None:
    """What a fork changes in staging's values for this one-node, 2-core cluster: the image built
    and loaded here, the operator it runs, and requests small enough for two clusters side by side
    during a new-cluster rollout (limits as staging's: Ray sees 2 CPUs per worker)."""
    repository, tag = standin.IMAGE.rsplit(":", 1)
    values["image"] = {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}
    values["kuberay"] = {"operatorVersion": release.operator_version()}
    values["head"] = {
        "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    }
    (group,) = values["workerGroups"]
    group["resources"] = {
        "requests": {"cpu": "250m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }


@pytest.fixture(scope="session")
def api() -> client.ApiClient:
    if not release.target.current().kubeconfig.is_file():
        pytest.fail("no cluster: `make gitops-test` brings one up with Argo CD")
    return release.api()


@pytest.fixture(scope="session")
def repository(api, tmp_path_factory) -> Repository:
    """This checkout's chart and k8s/ in a new repository, pushed; then staging fitted to this cluster."""
    path = tmp_path_factory.mktemp("gitops") / "mnist-serve"
    path.mkdir()
    for folder in ("charts", "k8s"):
        shutil.copytree(REPO / folder, path / folder)
    repo = Repository(path, argocd.push_url())
    repo.git("init", "--quiet", "--initial-branch=main")
    repo.git("add", ".")
    checkout = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    repo.git("commit", "--quiet", "--message", f"mnist-serve at {checkout.stdout.strip()}")
    repo.commit(
        "staging: the image built here, the operator it runs, requests that fit one node", on_this_cluster
    )
    repo.push()
    return repo
