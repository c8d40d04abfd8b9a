# sprintops — the two commands a person needs: `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?= -rs

.PHONY: help venv prometheus chromium binaries helm env-up env-down crds lint unit integration test demo run clean kind-e2e image chaos bench \
	rollouts bench-peers

help:
	@echo "make demo      local environment + operator + the canonical release, live"
	@echo "make test      lint, type-check, unit and integration tests (sets everything up)"
	@echo "make env-up    start (or reuse) the local environment; then: . .sprintops/env/env.sh"
	@echo "make env-down  stop it and delete its state"
	@echo "make run       the operator against the local environment"
	@echo "make crds      regenerate the CRD, the chart's copy and the README reference"

$(BIN)/.installed: pyproject.toml devenv/pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	$(BIN)/pip install -q -e . -e ./devenv
	touch $@

venv: $(BIN)/.installed

# A real Prometheus server from Debian's package, unless the user points at their own.
chromium:
	@if [ -z "$${SPRINTOPS_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then \
	  echo "installing Chromium (Debian package) for the dashboard's browser test"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

prometheus:
	@if [ -z "$${SPRINTOPS_PROMETHEUS_BIN:-}" ] && ! command -v prometheus >/dev/null; then \
	  echo "installing Prometheus (Debian package)"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and the Istio
# CRDs: built once with Go from pinned versions, cached in ~/.cache/sprintops.
binaries:
	bash hack/testenv/build.sh >/dev/null

# Argo Rollouts' controller and CRDs, the peer `make bench-peers` measures sprintops against:
# built once with Go from a pinned version, cached beside the binaries above.
rollouts:
	bash hack/testenv/build-rollouts.sh >/dev/null

env-up: venv prometheus binaries
	$(BIN)/sprintops-dev env up

env-down: venv
	$(BIN)/sprintops-dev env down

# The operator against the local environment (its kubeconfig, moto and Prometheus).
run: env-up
	. .sprintops/env/env.sh && $(BIN)/sprintops run

crds: venv
	$(BIN)/sprintops-dev crds

lint: venv
	$(BIN)/ruff check operator devenv tests
	$(BIN)/ruff format --check operator devenv tests
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test: venv prometheus chromium binaries rollouts helm
	@# The integration tests run in two workers, a module at a time, each with a local
	@# environment of its own (they mostly wait on it); lint and the unit tests (CPU) run
	@# beside them, and their report follows.
	@mkdir -p .sprintops
	unit=0; integration=0; \
	( $(MAKE) --no-print-directory lint && \
	  $(BIN)/pytest tests/unit -p no:cacheprovider $(PYTEST_ARGS) ) > .sprintops/unit-tests.log 2>&1 & \
	pid=$$!; \
	$(BIN)/pytest tests/integration -n 2 --dist loadfile $(PYTEST_ARGS) || integration=$$?; \
	wait $$pid || unit=$$?; \
	cat .sprintops/unit-tests.log; \
	exit $$(( integration || unit ))

demo: venv prometheus binaries
	$(BIN)/sprintops-dev demo

clean: env-down
	rm -rf $(VENV)

# Figures, not assertions: bench/results.json and a table.
bench: venv prometheus binaries
	$(BIN)/sprintops-dev bench

# sprintops and Argo Rollouts side by side on the same control plane: bench/peers.json, a
# table, and the step-lag plot in docs/.
bench-peers: venv prometheus binaries rollouts
	$(BIN)/sprintops-dev bench-peers

# The state machine over the world model, deep; then 20 releases, 30+ SIGKILLs each run,
# three seeds; exits non-zero on any violation.
chaos: venv prometheus binaries
	HYPOTHESIS_PROFILE=deep $(BIN)/pytest -q tests/unit/test_state_machine.py
	$(BIN)/sprintops-dev chaos --seed 1 --seed 2 --seed 3

# Needs a Docker engine (not available on every machine); see hack/kind/e2e.sh.
kind-e2e: venv
	bash hack/kind/e2e.sh

image:
	@if docker info >/dev/null 2>&1; then docker build -t sprintops:dev .; \
	else echo "make image: no Docker engine here; the Dockerfile is checked by make test"; exit 3; fi

helm:
	bash hack/testenv/tools.sh helm
