"""The imitation meets the original: the pods the real operator made for the chart's RayService
against what `clusterkit.kuberay` derives for the same render (the fast layer's `ray start` lines).
The kind values here; the HA values' pods in test_head_pod_loss.py, where they are installed."""

from __future__ import annotations


def test_ray_start_and_env_match_the_imitation(pods_against_imitation, report):
    # The kind values refer to no Secret.
    lines = pods_against_imitation({})
    report("kube: the operator's pods against clusterkit.kuberay:\n  " + "\n  ".join(lines))
