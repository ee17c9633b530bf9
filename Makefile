# warmgate: every developer and CI entry point. `make help` lists them.
# The Lambda runtime is python3.12 (template.yaml Globals); tests run on the same minor version.
PYTHON_MINOR := 3.12
# First interpreter of that minor version that actually runs: PATH, then pyenv's installs.
PYTHON ?= $(shell for p in python$(PYTHON_MINOR) $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$(PYTHON_MINOR).*/bin/python$(PYTHON_MINOR) 2>/dev/null); do \
            $$p -c 'import sys' >/dev/null 2>&1 && { command -v $$p; break; }; done)

VENV     := .venv
VENV_SAM := .venv-sam
VENV_CHECKOV := .venv-checkov
PY       := $(VENV)/bin/python
SAM      := $(VENV_SAM)/bin/sam
CFN_LINT := $(VENV_SAM)/bin/cfn-lint

.DEFAULT_GOAL := help
.PHONY: help setup setup-sam security-check chaos soak fault-proofs test unit integration e2e lint typecheck template-check run bench build deploy clean pr lock

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/dev.txt layers/common/requirements.txt clients/python/pyproject.toml ops/pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_MINOR) not found: install it (e.g. 'pyenv install $(PYTHON_MINOR)') or pass PYTHON=/path/to/python$(PYTHON_MINOR)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	# The integrators' client (clients/python), editable; its botocore/httpx are dev.txt's pins.
	$(PY) -m pip install --quiet --no-deps -e clients/python
	# The operator CLI (ops/, `warmgate-ops`), editable; it runs on the layer below.
	$(PY) -m pip install --quiet --no-deps -e ops
	# The layer's package and the repo root (devstack, bench) are importable as they are in Lambda.
	printf '%s\n' $(CURDIR)/layers/common $(CURDIR) > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/warmgate-dev.pth
	touch $@

# A tool's own venv (.venv-sam, .venv-checkov) from its pinned requirements/<tool>.txt.
.venv-%/.installed: requirements/%.txt
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_MINOR) not found"; exit 1; }
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install --quiet --upgrade pip
	$(@D)/bin/pip install --quiet -r $<
	touch $@

setup: $(VENV)/.installed ## create .venv with pinned dependencies

setup-sam: $(VENV_SAM)/.installed ## create .venv-sam with aws-sam-cli and cfn-lint

test: setup ## full test suite (unit, integration, e2e), every property test at its full count
	WARMGATE_PROPERTIES=full $(PY) -m pytest

unit: setup ## unit tests only (no I/O)
	$(PY) -m pytest tests/unit

integration: setup ## integration tests (moto, sandbox over HTTP)
	$(PY) -m pytest tests/integration

e2e: setup ## end-to-end tests through the local stack
	$(PY) -m pytest tests/e2e

chaos: setup ## reliability suite under injected faults (also part of make test); prints its summary
	$(PY) -m pytest tests/e2e/test_reliability.py -s -q

# The small variant (80 onboardings, ~2.5 min) runs in make test (tests/e2e/test_soak.py).
soak: setup ## the reliability soak: 1,000 onboardings under every fault; prints its summary line
	$(PY) -m tests.e2e.soak $(SOAK_ARGS)

# Not part of make test (~3 min): FAULT_PROOFS_ARGS='--only NAME' runs one; see docs/reliability.md.
fault-proofs: setup ## break the code once per injected fault; each break must fail a test
	$(PY) -m tests.fault_proofs $(FAULT_PROOFS_ARGS)

lint: setup ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup ## mypy (the client also as the oldest Python it supports)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --python-version 3.10 clients/python/src

template-check: setup-sam ## sam validate --lint and cfn-lint on template.yaml
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --template template.yaml
	$(CFN_LINT) template.yaml

security-check: $(VENV_CHECKOV)/.installed ## checkov on the template (skips justified in .checkov.yaml)
	$(VENV_CHECKOV)/bin/checkov --skip-download --quiet --compact --framework cloudformation \
		--config-file .checkov.yaml --file template.yaml

pr: test lint typecheck template-check security-check build ## everything CI runs

run: setup ## local stack from template.yaml, no Docker (API :3000, sandbox :8700); Ctrl-C stops
	$(PY) -m devstack

# DEMO_ARGS='--api-url http://127.0.0.1:3000 --sandbox-url http://127.0.0.1:8700' drives a
# running `make run` instead of a stack of its own; see `python -m devstack demo --help`.
.PHONY: demo
demo: setup ## scripted onboarding scenario over HTTP (own stack, or DEMO_ARGS for a running one)
	$(PY) -m devstack demo $(DEMO_ARGS)

# BENCH_ARGS='--quick' (about a minute) or '--only cold_init' …; see bench/README.md.
bench: setup ## benchmarks, each figure against a same-run baseline (builds the artifact if missing)
	@test -d .aws-sam/build/CommonLayer || $(MAKE) build
	$(PY) -m bench $(BENCH_ARGS)

build: setup setup-sam ## sam build (no container), then hash-based .pyc for every module, checked
	# sam looks for python3.12 on PATH: put the interpreter the tests run on first.
	PATH="$(dir $(PYTHON)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM) build
	$(PY) -m devstack.artifact compile .aws-sam/build
	$(PY) -m devstack.artifact check .aws-sam/build

deploy: build ## sam deploy (ENV=prod for the prod config of samconfig.toml)
	SAM_CLI_TELEMETRY=0 $(SAM) deploy --config-env $(or $(ENV),default)

lock: setup ## re-pin requirements/*.txt and the layer's requirements.txt from their .in files
	$(PY) -m piptools compile -q --strip-extras --no-header --no-emit-index-url --no-emit-find-links -o layers/common/requirements.txt layers/common/requirements.in
	cd requirements && ../$(PY) -m piptools compile -q --strip-extras --no-header --no-emit-index-url --no-emit-find-links -o dev.txt dev.in
	cd requirements && ../$(PY) -m piptools compile -q --strip-extras --no-header --no-emit-index-url --no-emit-find-links -o sam.txt sam.in
	cd requirements && ../$(PY) -m piptools compile -q --strip-extras --no-header --no-emit-index-url --no-emit-find-links -o checkov.txt checkov.in

clean: ## remove virtualenvs and build output
	rm -rf $(VENV) $(VENV_SAM) $(VENV_CHECKOV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
