"""The chart's NetworkPolicy enforced (`make kube-up` runs the kube-network-policies agent,
clusterkit.kube.addons.networkpolicies): from pods outside the release, the dashboard (8265), GCS
(6379) and the Ray client port (10001) are unreachable and the serve port (8000) answers, unless
`networkPolicy.serveFrom` leaves the pod out; the operator's namespace reaches the dashboard. The
release was installed, and the operator made it Ready, with the agent already enforcing."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request

import pytest
from kubernetes import client

from clusterkit import helmchart
from clusterkit.kube import release, target
from clusterkit.kube.addons import OPERATOR_NAMESPACE, POLICY_AGENT, POLICY_METRICS_PORT
from clusterkit.poll import wait_for

# A connection the policy denies is dropped, never refused: the client waits for a SYN-ACK that does
# not come. Allowed ones on this one-node bridge connect in milliseconds, with the first packet
# judged by the agent in user space; 3 s leaves room for a busy 2-core machine and covers the
# first two SYNs (Linux retransmits after 1 s).
CONNECT_TIMEOUT_S = 3.0
DENIED_PORTS = {8265: "dashboard", 6379: "GCS", 10001: "Ray client"}
SERVE_PORT = 8000
PROBE_LABEL = "mnist-serve/probe"

# Run in a probe pod: each probe of argv[1] (["tcp", "host:port"] or ["http", url]) at once, in
# threads; prints {probe: {"result": "connected" | "timeout" | "refused" | "error ...", ...}}.
PROBE = r"""
import concurrent.futures, json, socket, sys, time, urllib.error, urllib.request
probes, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
def probe(kind, where):
    t0 = time.monotonic()
    try:
        if kind == "tcp":
            host, port = where.rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=timeout).close()
            out = {"result": "connected"}
        else:
            with urllib.request.urlopen(where, timeout=timeout) as r:
                out = {"result": "connected", "status": r.status, "body": r.read(200).decode()}
    except (TimeoutError, socket.timeout):
        out = {"result": "timeout"}
    except ConnectionRefusedError:
        out = {"result": "refused"}
    except urllib.error.URLError as e:
        timed_out = isinstance(e.reason, (TimeoutError, socket.timeout))
        out = {"result": "timeout" if timed_out else f"error {e.reason!r}"}
    except OSError as e:
        out = {"result": f"error {e!r}"}
    out["seconds"] = round(time.monotonic() - t0, 3)
    return f"{kind} {where}", out
with concurrent.futures.ThreadPoolExecutor(len(probes)) as pool:
    print(json.dumps(dict(pool.map(lambda p: probe(*p), probes))))
"""


@pytest.fixture(scope="module")
def agent(core) -> client.V1Pod:
    pods = core.list_namespaced_pod("kube-system", label_selector=f"app.kubernetes.io/name={POLICY_AGENT}")
    if not pods.items:
        pytest.skip(f"no NetworkPolicy agent on the {target.current().name} cluster (make kube-up runs it)")
    (pod,) = pods.items
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []), pod.status
    return pod


def drops(agent: client.V1Pod) -> int:
    """Packets the agent dropped so far (its kube_network_policies_packet_count, verdict drop)."""
    url = f"http://{agent.status.host_ip}:{POLICY_METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^kube_network_policies_packet_count\{[^}]*verdict="drop"[^}]*\} (\S+)$', text, re.M)
    return int(sum(float(n) for n in found))


def probe_pod(core, namespace: str, role: str) -> str:
    """A pod running the release's own image (it has Python, as the `helm test` pod uses it),
    labelled outside the release's selector; its name once Running."""
    spec = release.rendered()["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    name = f"netpol-probe-{role}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "netpol-probe", PROBE_LABEL: role},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": spec["containers"][0]["image"],
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", "import time; time.sleep(86400)"],
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "limits": {"memory": "128Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    core.create_namespaced_pod(namespace, pod)

    def running() -> bool:
        return core.read_namespaced_pod(name, namespace).status.phase == "Running"

    wait_for(f"probe pod {namespace}/{name} Running", running, 120)
    return name


@pytest.fixture(scope="module")
def probes(core, agent):
    """Probe pods: `outside` and `allowed` in the release's namespace (the latter is what the
    serveFrom test admits), `operator` in the operator's namespace."""
    pods = {
        "outside": (release.NAMESPACE, "outside"),
        "allowed": (release.NAMESPACE, "allowed"),
        "operator": (OPERATOR_NAMESPACE, "operator"),
    }
    try:
        yield {key: (ns, probe_pod(core, ns, role)) for key, (ns, role) in pods.items()}
    finally:
        for ns, role in pods.values():
            try:
                core.delete_namespaced_pod(f"netpol-probe-{role}", ns, grace_period_seconds=0)
            except client.ApiException as error:
                if error.status != 404:
                    raise


def run_probes(pod: tuple[str, str], wanted: list[tuple[str, str]]) -> dict[str, dict]:
    namespace, name = pod
    command = ["python3", "-c", PROBE, json.dumps(wanted), str(CONNECT_TIMEOUT_S)]
    out = target.kubectl("-n", namespace, "exec", name, "--", *command, timeout=60)
    return json.loads(out.stdout)


def from_node(ip: str, port: int) -> bool:
    """Whether this machine connects: the agent lets the node's root through (its `skuid 0`
    rule: kubelet probes), so this shows the port is open and a pod's timeout is the policy's."""
    try:
        socket.create_connection((ip, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def head_service(core) -> str:
    """The active cluster's head Service, by the name workers join through: it is headless, so
    the name resolves (CoreDNS, from the pod) to the head pod's IP. (The RayService-level
    `<name>-head-svc` selects no pod here: KubeRay builds it without the template's labels.)"""
    active, _ = release.clusters()
    svc = core.read_namespaced_service(f"{active}-head-svc", release.NAMESPACE)
    assert svc.spec.cluster_ip == "None", svc.spec.cluster_ip
    return f"{svc.metadata.name}.{release.NAMESPACE}.svc.cluster.local"


def serve_service_ip(core) -> str:
    return core.read_namespaced_service(f"{release.RELEASE}-serve-svc", release.NAMESPACE).spec.cluster_ip


def test_only_the_serve_port_is_reachable_from_outside_the_release(core, agent, probes, report):
    head, head_svc, serve_svc = release.head_ip(), head_service(core), serve_service_ip(core)
    for port in DENIED_PORTS:
        assert from_node(head, port), f"{head}:{port} does not accept connections even from the node"
    wanted = [("tcp", f"{ip}:{port}") for ip in (head, head_svc) for port in DENIED_PORTS]
    wanted += [("http", f"http://{ip}:{SERVE_PORT}/-/healthz") for ip in (head, serve_svc)]
    before = drops(agent)
    results = run_probes(probes["outside"], wanted)
    dropped = drops(agent) - before
    denied = {k: v for k, v in results.items() if k.startswith("tcp")}
    served = {k: v for k, v in results.items() if k.startswith("http")}
    # Dropped, not refused: a refusal would mean the SYN reached the pod.
    assert {k: v["result"] for k, v in denied.items()} == dict.fromkeys(denied, "timeout"), results
    assert {k: (v["result"], v.get("status"), v.get("body")) for k, v in served.items()} == dict.fromkeys(
        served, ("connected", 200, "success")
    ), results
    # Each denied connection's first SYN at least (retransmits add more) went to the agent and was dropped.
    assert dropped >= len(denied), (dropped, results)
    slowest = max(v["seconds"] for v in served.values())
    report(
        f"kube: NetworkPolicy enforced (kube-network-policies): from a pod outside the release, "
        f"{len(denied)} connections to {', '.join(f'{p} ({n})' for p, n in DENIED_PORTS.items())} on the "
        f"head pod and head Service timed out after {CONNECT_TIMEOUT_S:.0f} s (dropped, the agent "
        f"counted {dropped} dropped packets); /-/healthz on {SERVE_PORT} answered 200 in <= {slowest:.3f} s"
    )


def test_the_operator_namespace_reaches_the_dashboard_and_not_gcs(agent, probes, report):
    head = release.head_ip()
    results = run_probes(probes["operator"], [("tcp", f"{head}:8265"), ("tcp", f"{head}:6379")])
    assert results[f"tcp {head}:8265"]["result"] == "connected", results
    assert results[f"tcp {head}:6379"]["result"] == "timeout", results
    # The operator itself, under the same policy since before the release was installed.
    obj = release.rayservice()
    assert release.condition(obj, "Ready").get("status") == "True", obj.get("status")
    # (Within the time an in-place serve config change takes here, ~30 s, should one be under way.)
    wait_for("the mnist app RUNNING", lambda: release.app_status() == "RUNNING", 120)
    report(
        f"kube: from {OPERATOR_NAMESPACE}: 8265 connected in {results[f'tcp {head}:8265']['seconds']:.3f} s, "
        "6379 timed out; the operator made the RayService Ready through the enforced policy"
    )


def test_serve_from_restricts_the_serve_port_and_helm_test_still_passes(core, agent, probes, report):
    head, serve_svc = release.head_ip(), serve_service_ip(core)
    active, _ = release.clusters()
    # The release's values as they are (top-level keys, helm --set-json): only serveFrom changes.
    installed = {key: json.dumps(value) for key, value in release.installed_values().items()}
    serve_from = [{"podSelector": {"matchLabels": {PROBE_LABEL: "allowed"}}}]
    wanted = [("http", f"http://{ip}:{SERVE_PORT}/-/healthz") for ip in (head, serve_svc)]

    def results_of(pod: str) -> set[str]:
        return {v["result"] for v in run_probes(probes[pod], wanted).values()}

    def serve_peers() -> list:
        """The `from` of the policy's rule for the serve port alone (the operator's has 8265 too)."""
        policy = client.NetworkingV1Api(core.api_client).read_namespaced_network_policy(
            release.RELEASE, release.NAMESPACE
        )
        (rule,) = [r for r in policy.spec.ingress if [p.port for p in r.ports or []] == [SERVE_PORT]]
        return rule._from or []

    try:
        assert serve_peers() == []  # every source, as installed
        release.install({"networkPolicy.serveFrom": json.dumps(serve_from)}, base=installed)
        # serveFrom's selector and the `helm test` pod's, which the chart adds.
        assert len(serve_peers()) == 2, serve_peers()
        took = wait_for("8000 denied outside serveFrom", lambda: results_of("outside") == {"timeout"}, 60)
        assert results_of("outside") == {"timeout"}  # and it stays so
        assert results_of("allowed") == {"connected"}
        # The chart admits the `helm test` pod itself when serveFrom is set.
        helm = [str(helmchart.HELM), "test", release.RELEASE, "--namespace", release.NAMESPACE, "--logs"]
        result = subprocess.run(
            [*helm, "--kubeconfig", str(target.current().kubeconfig)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # The policy is no part of the Ray cluster: no rollout, and the operator keeps it Ready.
        assert release.clusters() == (active, "")
        assert release.condition(release.rayservice(), "Ready").get("status") == "True"
    finally:
        release.install(base=installed)
    reopened = wait_for("8000 open again", lambda: results_of("outside") == {"connected"}, 60)
    report(
        f"kube: networkPolicy.serveFrom set: 8000 denied to a pod outside it within {took:.0f} s of "
        f"helm upgrade (a denied probe takes {CONNECT_TIMEOUT_S:.0f} s), allowed to a matching pod, helm "
        f"test passed, no new Ray cluster; unset: open again within {reopened:.0f} s"
    )
