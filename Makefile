# Retraining pipeline for Kubeflow Pipelines. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= .retrain
PIPELINE_YAML := pipelines/retrain_pipeline.yaml
# The component image. Tags are immutable (a release or a git SHA), never latest: the compiled
# YAML names this exact image. make push IMAGE=europe-docker.pkg.dev/PROJECT/REPO/kfp-retrain:0.2.0
IMAGE ?= kfp-retrain:0.1.0
BUILD := build
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install run report test chromium bench compile demo-data lint shellcheck image push cluster cluster-down clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

EXAMPLE := examples/lightgbm_model
$(BIN)/retrain: requirements.txt requirements-dev.txt pyproject.toml $(EXAMPLE)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	# The example of a team's own model (LightGBM), which the tests and the bench run.
	$(BIN)/pip install --quiet --disable-pip-version-check -e $(EXAMPLE)
	@touch $@

install: $(BIN)/retrain ## Make .venv and install the pinned dependencies, this project and the LightGBM example

run: install ## Run the pipeline on the next month of built-in demo data (first run bootstraps v1)
	$(BIN)/retrain demo --workdir $(WORKDIR)

report: install ## Write the demo model's life page to .retrain/report.html (after make run)
	$(BIN)/retrain report --registry-uri $(WORKDIR)/registry --model-name customers --output $(WORKDIR)/report.html

demo-data: install ## Write the deterministic demo data to .retrain/demo-data
	$(BIN)/retrain demo-data --output $(WORKDIR)/demo-data

compile: install ## Compile the pipeline to pipelines/retrain_pipeline.yaml
	$(BIN)/retrain compile --output $(PIPELINE_YAML)

test: install shellcheck chromium ## Lint (ruff, shellcheck), then run every test (unit and kfp.local runs)
	$(BIN)/ruff check components pipelines app tests bench scripts examples
	# On every core, each test module on one worker, so a module's fixtures (a replayed year, a
	# bootstrapped registry) are built once.
	$(BIN)/python -m pytest -q -n auto --dist loadscope

$(VENV)/.bench: $(BIN)/retrain requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@touch $@

MLSERVER_VENV := bench/.mlserver-venv
$(MLSERVER_VENV)/.installed: bench/requirements-mlserver.txt
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements-mlserver.txt
	@touch $@

bench: install $(VENV)/.bench $(MLSERVER_VENV)/.installed ## Measure speed, memory, serving, decisions; writes bench/results.md
	$(BIN)/python -m bench.run_bench
	$(BIN)/python -m bench.bench_validate

lint: install shellcheck ## Lint with ruff and shellcheck
	$(BIN)/ruff check components pipelines app tests bench scripts examples

chromium: ## Install Debian's headless Chromium if it is missing (the life page is tested in it)
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

shellcheck: ## Check scripts/*.sh (installs Debian's shellcheck if it is missing)
	@command -v shellcheck >/dev/null 2>&1 || $(SUDO) apt-get install -y -qq shellcheck >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq shellcheck; }
	shellcheck scripts/*.sh

image: ## Build the component image $(IMAGE) (needs a docker engine)
	docker build -t $(IMAGE) .

push: image install ## Push $(IMAGE) and compile build/retrain_pipeline.yaml naming it
	docker push $(IMAGE)
	$(BIN)/retrain compile --image $(IMAGE) --output $(BUILD)/retrain_pipeline.yaml

KSERVE ?= 0
cluster: ## Create a kind cluster with KFP (KSERVE=1: and KServe), load $(IMAGE), UI on :8080
	KSERVE=$(KSERVE) scripts/cluster-up.sh $(IMAGE)

cluster-down: ## Delete the kind cluster
	scripts/cluster-down.sh

clean: ## Remove demo runs, the registry and artifacts under .retrain, and build/
	rm -rf $(WORKDIR) $(BUILD)
