"""The imitation meets the original: the pods the real operator made for the chart's RayService
against what `clusterkit.kuberay` derives for the same render (the fast layer's `ray start` lines)."""

from __future__ import annotations

import shlex

from clusterkit import kuberay
from clusterkit.kube import release


def ray_start(container) -> dict[str, str]:
    """A Ray container's `ray start` flags (KubeRay runs `bash -c "ulimit ...; ray start ..."`)."""
    line = " ".join([*(container.command or []), *(container.args or [])])
    words = shlex.split(line.split("ray start", 1)[1].split(";")[0].split("&&")[0])
    params: dict[str, str] = {}
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        key, sep, value = word[2:].partition("=")
        if not sep:
            following = words[i + 1] if i + 1 < len(words) else "--"
            value = "true" if following.startswith("--") else following
        params[key] = value
    return params


def operator_pods(core, cluster_name: str) -> dict[str, object]:
    pods = core.list_namespaced_pod(release.NAMESPACE, label_selector=f"ray.io/cluster={cluster_name}").items
    # The imitation calls the head's group "head"; KubeRay labels it "headgroup".
    return {
        "head"
        if pod.metadata.labels["ray.io/node-type"] == "head"
        else pod.metadata.labels["ray.io/group"]: pod
        for pod in pods
    }


def test_ray_start_and_env_match_the_imitation(core, report):
    derived = {node.group: node for node in kuberay.nodes(release.rendered())}
    cluster_name = release.rayservice()["status"]["activeServiceStatus"]["rayClusterName"]
    pods = operator_pods(core, cluster_name)
    assert set(pods) == set(derived), (sorted(pods), sorted(derived))
    lines = []
    for group, pod in sorted(pods.items()):
        (container,) = [c for c in pod.spec.containers if c.name.startswith("ray-")]
        real = ray_start(container)
        node = derived[group]
        if node.is_head:
            assert real.pop("head") == "true"  # the imitation's Node.is_head
        else:
            # The one flag the fast layer sets itself: the head's address (here a headless Service).
            assert real.pop("address").startswith(f"{cluster_name}-head-svc."), real
        assert real == node.params, {"operator": real, "imitation": node.params}
        env = {e.name: e.value for e in container.env or [] if e.value is not None}
        assert {k: env.get(k) for k in node.env} == node.env
        extra = sorted(set(env) - set(node.env))
        lines.append(f"{group}: ray start flags equal; env the operator adds: {', '.join(extra)}")
    report("kube: the operator's pods against clusterkit.kuberay:\n  " + "\n  ".join(lines))
