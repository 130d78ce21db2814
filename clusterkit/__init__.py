"""Tooling that runs the chart the way KubeRay does, for `make` targets and the tests.

- `helmchart`: the chart rendered by the pinned helm binaries.
- `kuberay`: the `ray start` line of each pod KubeRay builds from a RayService (the imitation).
- `localray`: those pods as a local multi-node Ray (`make cluster-up`), config PUT as the operator does.
- `rollout_plan`: what the operator does with a values change (`make rollout-plan`).
- `load`: a threaded HTTP load that checks every answer.
- `podman`: the podman calls the image layer uses.
- `serveconfig`: a serve config checked against Ray Serve's schema and the app's typed args,
  or pointed at another model (`make run MODEL_URI=...`).
"""
