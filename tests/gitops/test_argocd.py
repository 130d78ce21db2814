"""The path a GitOps user takes, through a real Argo CD and the real KubeRay operator: k8s/argocd/
applied (its repository URL pointed at the git server here), staging synced and Healthy by itself,
then commits under load. Each commit's `make rollout-plan` preview is reported beside what Argo CD
and the operator did. The tests run in this order, each on the state the previous one left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import astuple, dataclass

from kubernetes import client

from clusterkit.kube import argocd, release
from clusterkit.kube.layout import REPO
from clusterkit.kube.workloads import apply
from clusterkit.load import Load, accuracy, failed, summary
from clusterkit.poll import Sampler, wait_for

# k8s/argocd/mnist-serve.yaml names each environment's Application and namespace mnist-serve-<env>.
STAGING_APP = NAMESPACE = "mnist-serve-staging"
PROD_APP = PROD_NAMESPACE = "mnist-serve-prod"
CLIENTS = 4
# k8s/argocd/ as a user applies it. kuberay-operator.yaml is left out: its chart repository
# (ray-project.github.io) cannot be reached from here; the operator is kube-up's.
APPLIED = ("project.yaml", "mnist-serve.yaml")


def status(name: str) -> dict:
    """The Application's status; {} before the ApplicationSet controller has made it."""
    try:
        return argocd.application(name).get("status", {})
    except client.ApiException as missing:
        if missing.status == 404:
            return {}
        raise


def sync_of(name: str) -> str:
    return status(name).get("sync", {}).get("status", "")


def health_of(name: str) -> str:
    return status(name).get("health", {}).get("status", "")


def synced_to(name: str, revision: str) -> bool:
    """Argo CD has applied `revision` and the live objects match it."""
    st = status(name)
    sync = st.get("sync", {})
    operation = st.get("operationState", {})
    revisions = set(sync.get("revisions") or [sync.get("revision")])
    return (
        revisions == {revision} and sync.get("status") == "Synced" and operation.get("phase") == "Succeeded"
    )


# The Application's health message when a resource made it less than Healthy. Argo CD 3.6.1 has no
# health check of its own for ray.io (resource_customizations/ has no ray.io), and from Argo CD 3.0
# resource health is not kept in the Application (controller.resource.health.persist: false): a
# RayService that makes the Application Progressing or Degraded shows that our check ran.
RAYSERVICE_CAUSE = f"Caused by ray.io/RayService:{NAMESPACE}/mnist-serve"


@dataclass(frozen=True)
class State:
    at: float
    sync: str
    health: str
    message: str

    def __str__(self) -> str:
        cause = " (the RayService)" if self.message == RAYSERVICE_CAUSE else ""
        return f"{self.sync}/{self.health}{cause} at {self.at:.0f} s"


class Watch(Sampler[State]):
    """The staging Application's sync and health every second while open: the states it went through."""

    def __init__(self, name: str = STAGING_APP):
        self.started = time.monotonic()
        super().__init__(lambda: self.state(name))

    def state(self, name: str) -> State:
        st = status(name)
        health = st.get("health", {})
        return State(
            time.monotonic() - self.started,
            st.get("sync", {}).get("status", ""),
            health.get("status", ""),
            health.get("message", ""),
        )

    @property
    def seen(self) -> list[State]:
        """The states in order, each kept from the sample where it began."""
        states = [state for _, state in self.samples]
        return [s for i, s in enumerate(states) if i == 0 or astuple(states[i - 1])[1:] != astuple(s)[1:]]

    def healths(self) -> set[str]:
        return {state.health for state in self.seen}

    def syncs(self) -> set[str]:
        return {state.sync for state in self.seen}

    def by_the_rayservice(self, health: str) -> bool:
        """The RayService, judged by our health check, made the Application `health`."""
        return any(s.health == health and s.message == RAYSERVICE_CAUSE for s in self.seen)

    def __str__(self) -> str:
        return " -> ".join(map(str, self.seen))


def rolled_out(repo, make_commit: Callable[[], str]) -> tuple[str, str, float]:
    """Make a commit, print its rollout plan, push and tell Argo CD (as its webhook would); the
    commit, the plan and the push's time.monotonic()."""
    before = repo.head()
    commit = make_commit()
    plan = repo.plan(before, commit)
    print(f"make rollout-plan {before[:7]} -> {commit[:7]}:\n{plan}")
    pushed = repo.push()
    argocd.refresh(STAGING_APP)
    return commit, plan, pushed


def serve_url() -> str:
    """The staging serve Service, by its cluster IP (Argo CD made it)."""
    svc = client.CoreV1Api(release.api()).read_namespaced_service(f"{release.RELEASE}-serve-svc", NAMESPACE)
    return f"http://{svc.spec.cluster_ip}:8000"


def versions_after(load: Load, since: float) -> set[str]:
    return {o.model_version for o in load.between(since) if o.status == 200}


def test_staging_syncs_by_itself_and_turns_healthy_through_our_health_check(repository, report):
    for name in APPLIED:
        apply(argocd.adapted(REPO / "k8s" / "argocd" / name))
    started = time.monotonic()
    with Watch() as watch:
        wait_for("the staging Application", lambda: status(STAGING_APP), 120)
        synced = wait_for("staging synced", lambda: synced_to(STAGING_APP, repository.head()), 600)
        healthy = wait_for(
            lambda: f"staging Healthy ({watch})", lambda: health_of(STAGING_APP) == "Healthy", 900
        )
    total = time.monotonic() - started
    report(
        f"gitops: staging synced {synced:.0f} s after k8s/argocd/ was applied, Healthy {total:.0f} s after "
        f"({healthy:.0f} s after the sync); states: {watch}"
    )
    assert watch.by_the_rayservice("Progressing"), str(watch)
    assert release.app_status(namespace=NAMESPACE) == "RUNNING"


def prod_untouched(api) -> None:
    """ApplicationSet made prod's Application without automated sync: it is OutOfSync and nothing
    of it exists until someone syncs it."""
    assert sync_of(PROD_APP) == "OutOfSync"
    prod = status(PROD_APP)
    assert "operationState" not in prod and not prod.get("history"), prod
    namespaces = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
    assert PROD_NAMESPACE not in namespaces


def test_prod_waits_for_a_person(api):
    prod_untouched(api)


def test_a_serve_config_commit_rolls_out_in_place_under_load(repository, mnist_test, report):
    active, _ = release.clusters(namespace=NAMESPACE)

    def change(values: dict) -> None:
        values["model"]["version"] = "2"
        values["serve"]["deployments"]["Classifier"]["user_config"] = {"max_batch_size": 64}

    with (
        Load(serve_url(), mnist_test.images, mnist_test.labels, clients=CLIENTS) as load,
        Watch() as watch,
        Sampler(lambda: release.serve_endpoints(namespace=NAMESPACE), interval=0.5) as endpoints,
    ):
        load.wait_for(100, timeout_s=120)
        commit, plan, pushed = rolled_out(
            repository, lambda: repository.commit("staging: model version 2, batches of 64", change)
        )
        synced = wait_for("the commit synced", lambda: synced_to(STAGING_APP, commit), 300)
        served = wait_for("version 2 answering", lambda: "2" in versions_after(load, pushed), 600)
        switched = time.monotonic()
        load.wait_for(200, timeout_s=120, since=switched + 1)
    report(
        f"gitops: serve-config commit {commit[:7]} (plan: {plan.splitlines()[0]}): synced {synced:.0f} s "
        f"after the push, version 2 answering {served:.0f} s after it; {summary(load.outcomes)}"
        f"{failures_from(load, pushed, 'the push')}; states: {watch}"
    )
    assert plan.startswith("KubeRay will update the running cluster in place")
    assert release.clusters(namespace=NAMESPACE)[0] == active, "the serve-config commit started a new cluster"
    assert failed(load.outcomes) == [], (
        f"{summary(load.outcomes)}; {release.unserved(endpoints.samples, pushed)}"
    )
    assert versions_after(load, switched + 1) == {"2"}
    assert accuracy(load.outcomes) >= 0.98


def new_cluster_rolled_out(commit: str, old: str, watch: Watch) -> tuple[float, float, float, float, float]:
    """Wait through a new-cluster rollout of `commit` replacing the cluster `old`: seconds from the
    push to the sync, then to the switch of traffic, the old cluster's deletion, and Healthy; and
    the time.monotonic() at which the old RayCluster was seen gone."""
    synced = wait_for("the commit synced", lambda: synced_to(STAGING_APP, commit), 300)
    switched = wait_for("the switch", lambda: release.clusters(namespace=NAMESPACE)[0] not in ("", old), 900)
    # Until KubeRay deletes the old cluster (rayClusterDeletionDelaySeconds after the switch), the
    # clients' keep-alive connections still reach its proxies through the Service's old endpoints.
    deleted = wait_for("the old cluster deleted", lambda: old not in release.ray_clusters(NAMESPACE), 300)
    gone = time.monotonic()
    healthy = wait_for(lambda: f"Healthy ({watch})", lambda: health_of(STAGING_APP) == "Healthy", 300)
    return synced, switched, deleted, healthy, gone


def failures_from(load: Load, at: float, event: str = "the old cluster's deletion") -> str:
    """When the failed requests were sent, in seconds from `at`, the time of `event` (none: "")."""
    times = sorted(o.start - at for o in failed(load.outcomes))
    if len(times) > 8:
        return f", sent from {times[0]:+.1f} to {times[-1]:+.1f} s from {event}"
    return f", sent at {', '.join(f'{t:+.1f}' for t in times)} s from {event}" if times else ""


def test_a_cluster_commit_rolls_out_a_new_cluster_under_load(repository, mnist_test, report):
    old, _ = release.clusters(namespace=NAMESPACE)

    def change(values: dict) -> None:
        values["head"]["resources"]["limits"]["memory"] = "3Gi"

    with Load(serve_url(), mnist_test.images, mnist_test.labels, clients=CLIENTS) as load, Watch() as watch:
        load.wait_for(100, timeout_s=120)
        commit, plan, pushed = rolled_out(
            repository, lambda: repository.commit("staging: a bigger head", change)
        )
        synced, switched, deleted, healthy, gone = new_cluster_rolled_out(commit, old, watch)
        load.wait_for(200, timeout_s=120)
    new, _ = release.clusters(namespace=NAMESPACE)
    report(
        f"gitops: cluster commit {commit[:7]} (plan: {plan.splitlines()[0]}): synced {synced:.0f} s after "
        f"the push; traffic on {new} {switched:.0f} s after the sync, {old} deleted {deleted:.0f} s later, "
        f"Healthy {healthy:.0f} s after that; {summary(load.outcomes)}{failures_from(load, gone)}; "
        f"states: {watch}"
    )
    assert plan.startswith("KubeRay will start a new Ray cluster")
    assert failed(load.outcomes) == [], {(o.status, o.error) for o in failed(load.outcomes)}
    assert watch.by_the_rayservice("Progressing"), str(watch)
    assert health_of(STAGING_APP) == "Healthy"


def test_the_autoscaler_adds_a_worker_and_the_application_stays_synced(repository, mnist_test, report):
    """A commit makes Serve scale the Classifier at 1 ongoing request: under load its second replica
    needs a CPU the worker lacks, and the Ray autoscaler adds a worker (the RayCluster's replicas).
    Argo CD must neither call that a drift nor undo it."""

    def change(values: dict) -> None:
        values["serve"]["deployments"]["Classifier"]["autoscaling_config"]["target_ongoing_requests"] = 1

    active, _ = release.clusters(namespace=NAMESPACE)

    def workers() -> int:
        cluster = client.CustomObjectsApi(release.api()).get_namespaced_custom_object(
            "ray.io", "v1", NAMESPACE, "rayclusters", active
        )
        (group,) = cluster["spec"]["workerGroupSpecs"]
        return group["replicas"]

    before = workers()
    commit, plan, _ = rolled_out(
        repository, lambda: repository.commit("staging: scale the Classifier at 1 ongoing request", change)
    )
    synced = wait_for("the commit synced", lambda: synced_to(STAGING_APP, commit), 300)
    with Load(serve_url(), mnist_test.images, mnist_test.labels, clients=8) as load, Watch() as watch:
        load.wait_for(100, timeout_s=120)
        scaled = wait_for("the autoscaler adding a worker", lambda: workers() > before, 600)
        ready = wait_for(
            "the new worker Ready",
            lambda: len(release.ready_pods("worker", namespace=NAMESPACE)) > before,
            600,
        )
        time.sleep(30)  # Argo CD's view after the change settles: its watch sees the RayCluster edit
        load.wait_for(200, timeout_s=120)
    report(
        f"gitops: autoscaling commit {commit[:7]} (plan: {plan.splitlines()[0]}) synced in {synced:.0f} s; "
        f"under load the Ray autoscaler raised the workers {before} -> {workers()} after {scaled:.0f} s, "
        f"the pod Ready {ready:.0f} s later; Application states meanwhile: {watch}; {summary(load.outcomes)}"
    )
    assert watch.syncs() == {"Synced"}, str(watch)
    assert workers() > before, "the worker count was reset"
    assert failed(load.outcomes) == [], {(o.status, o.error) for o in failed(load.outcomes)}


def test_a_broken_serve_config_degrades_the_application_while_the_old_version_serves(
    repository, mnist_test, report
):
    active, _ = release.clusters(namespace=NAMESPACE)

    def change(values: dict) -> None:
        values["model"] = {"uri": "file:///home/ray/model/missing.pt", "version": "3"}

    with Load(serve_url(), mnist_test.images, mnist_test.labels, clients=CLIENTS) as load, Watch() as watch:
        load.wait_for(100, timeout_s=120)
        commit, plan, pushed = rolled_out(
            repository, lambda: repository.commit("staging: a model file that does not exist", change)
        )
        synced = wait_for("the commit synced", lambda: synced_to(STAGING_APP, commit), 300)
        degraded = wait_for(lambda: f"Degraded ({watch})", lambda: health_of(STAGING_APP) == "Degraded", 600)
        load.wait_for(200, timeout_s=120)
    service = release.rayservice(namespace=NAMESPACE)["status"]["activeServiceStatus"]
    app = service["applicationStatuses"]["mnist"]
    report(
        f"gitops: broken commit {commit[:7]} (plan: {plan.splitlines()[0]}): synced {synced:.0f} s after "
        f"the push, Degraded {degraded:.0f} s after that (KubeRay: mnist {app['status']}: "
        f"{app.get('message', '')[:200]!r}); {summary(load.outcomes)}; states: {watch}"
    )
    assert watch.by_the_rayservice("Degraded"), str(watch)
    assert failed(load.outcomes) == [], {(o.status, o.error) for o in failed(load.outcomes)}
    assert versions_after(load, 0) == {"2"}
    assert release.clusters(namespace=NAMESPACE)[0] == active


def test_a_revert_rolls_everything_back(repository, mnist_test, report):
    """`git revert` of every commit since staging was first synced: version 1 and the first head
    size again, so a new cluster, under load."""
    first = repository.git("rev-list", "--max-parents=0", "HEAD")
    fitted = repository.git("rev-list", "--reverse", "HEAD").splitlines()[1]
    assert first != fitted
    old, _ = release.clusters(namespace=NAMESPACE)
    with Load(serve_url(), mnist_test.images, mnist_test.labels, clients=CLIENTS) as load, Watch() as watch:
        load.wait_for(100, timeout_s=120)
        commit, plan, pushed = rolled_out(repository, lambda: repository.revert_to(fitted))
        synced, switched, deleted, healthy, gone = new_cluster_rolled_out(commit, old, watch)
        # The old pods answer the last request on each open connection (`Connection: close`, the
        # chart's preStop) while they stop: only once they are gone must every answer be version 1.
        core = client.CoreV1Api(release.api())
        stopped = wait_for(
            "the old cluster's pods gone",
            lambda: not core.list_namespaced_pod(NAMESPACE, label_selector=f"ray.io/cluster={old}").items,
            300,
        )
        since = time.monotonic()
        load.wait_for(200, timeout_s=120, since=since)
    last_old = max(o.start for o in load.outcomes if o.status == 200 and o.model_version != "1")
    assert repository.git("diff", fitted, commit) == ""
    report(
        f"gitops: revert {commit[:7]} (plan: {plan.splitlines()[0]}): synced {synced:.0f} s after the push, "
        f"traffic on the new cluster {switched:.0f} s later, {old} deleted {deleted:.0f} s after that (its "
        f"last answer {last_old - gone:+.1f} s from then, its pods gone {healthy + stopped:.0f} s after it), "
        f"Healthy {healthy:.0f} s after the deletion; {summary(load.outcomes)}{failures_from(load, gone)}; "
        f"states: {watch}"
    )
    assert plan.startswith("KubeRay will start a new Ray cluster")
    assert failed(load.outcomes) == [], {(o.status, o.error) for o in failed(load.outcomes)}
    assert versions_after(load, since) == {"1"}
    assert time.monotonic() - pushed < 1800


def test_prod_still_waits_after_every_staging_commit(api):
    prod_untouched(api)
