"""Ray token authentication (`auth.mode: token`) on the real operator. KubeRay (1.6 and later)
generates the token's Secret and hands it to every Ray container (RAY_AUTH_MODE, RAY_AUTH_TOKEN:
ray-operator/controllers/ray/common/pod.go); the dashboard then refuses a request without it,
while the operator, which sends it with each serve config, still makes the release Ready, and
Serve's HTTP traffic is not affected. KubeRay 1.5's CRD has no authOptions, so there the chart
refuses the value rather than letting the API server drop it."""

from __future__ import annotations

import base64

import requests

from clusterkit.kube import release
from clusterkit.load import Load, failed, summary
from clusterkit.rollout_plan import at_least

TOKEN = {"auth.mode": '"token"'}


def test_token_auth_guards_the_dashboard_and_not_serve(core, serve_url, mnist_test, report):
    operator = release.operator_version()
    if not at_least(operator, "1.6.0"):
        try:
            release.install(TOKEN)
        except RuntimeError as refused:
            assert "auth.mode token needs KubeRay 1.6.0 or later" in str(refused)
            report(f"kube: auth.mode token refused by the chart on KubeRay {operator}, as it must be")
            return
        raise AssertionError(f"the chart accepted auth.mode token for KubeRay {operator}")

    release.install(TOKEN)
    took = release.wait_settled()
    release.wait_ready()
    (head,) = [p for p in release.pods("head") if p.metadata.deletion_timestamp is None]
    (container,) = [c for c in head.spec.containers if c.name.startswith("ray-")]
    env = {e.name: e for e in container.env}
    assert env["RAY_AUTH_MODE"].value == "token"
    ref = env["RAY_AUTH_TOKEN"].value_from.secret_key_ref
    secret = core.read_namespaced_secret(ref.name, release.NAMESPACE)
    token = base64.b64decode(secret.data[ref.key]).decode()

    dashboard = f"http://{release.head_ip()}:8265/api/version"
    without = requests.get(dashboard, timeout=10)
    wrong = requests.get(dashboard, headers={"Authorization": "Bearer not-the-token"}, timeout=10)
    right = requests.get(dashboard, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    with Load(serve_url, mnist_test.images, mnist_test.labels, clients=2) as load:
        load.wait_for(50, timeout_s=120)
    report(
        f"kube: auth.mode token on KubeRay {operator}: Ready {took:.0f} s after helm upgrade (a new "
        f"cluster), token from Secret {ref.name}; dashboard without it {without.status_code}, with a "
        f"wrong one {wrong.status_code}, with it {right.status_code}; serve without any token: "
        f"{summary(load.outcomes)}"
    )
    assert without.status_code == 401 and wrong.status_code in (401, 403)
    assert right.status_code == 200 and right.json().get("ray_version")
    assert failed(load.outcomes) == []
