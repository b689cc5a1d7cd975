# Retraining pipeline for Kubeflow Pipelines. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= .retrain
PIPELINE_YAML := pipelines/retrain_pipeline.yaml

.DEFAULT_GOAL := help
.PHONY: help install run test compile check-compiled demo-data lint clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/retrain: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

install: $(BIN)/retrain ## Make .venv and install the pinned dependencies and this project

run: install ## Run the pipeline on the next month of built-in demo data (first run bootstraps v1)
	$(BIN)/retrain demo --workdir $(WORKDIR)

demo-data: install ## Write the deterministic demo data to .retrain/demo-data
	$(BIN)/retrain demo-data --output $(WORKDIR)/demo-data

compile: install ## Compile the pipeline to pipelines/retrain_pipeline.yaml
	$(BIN)/retrain compile --output $(PIPELINE_YAML)

test: install ## Lint, then run every test (unit and end-to-end kfp.local runs)
	$(BIN)/ruff check components pipelines tests
	$(BIN)/python -m pytest -q

lint: install ## Lint with ruff
	$(BIN)/ruff check components pipelines tests

clean: ## Remove demo runs, the registry and artifacts under .retrain
	rm -rf $(WORKDIR)
