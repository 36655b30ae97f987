# funnelmodels — `make help` lists the targets.
# The environment lives in .venv/ and is built from the pinned lock (requirements.lock);
# every target that needs it creates it first when it is missing or older than the lock.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := $(shell sed -n 's/^uv==\([0-9.]*\).*/\1/p' requirements.lock | head -n 1)
PYTEST_ARGS ?=
comma := ,

.DEFAULT_GOAL := help
.PHONY: help env browser demo reports test lint lab tutorial lock clean bench

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

# git's filter strips notebook outputs on commit; which notebooks it applies to is said by the
# tracked .gitattributes (the tutorial keeps its outputs). `nbstripout --install` is not used: it
# writes .git/info/attributes, which would override .gitattributes and strip the tutorial too.
# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines) Python never
# caches compiled modules, and every process would recompile lightgbm, statsmodels and jupyter
# from source (measured: `import lightgbm` 8.9 s without, 3.4 s with).
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/python -m uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name funnelmodels --display-name "Python (funnelmodels)" >/dev/null
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean "'$(CURDIR)/$(BIN)/python' -m nbstripout" && \
	  git config filter.nbstripout.smudge cat && \
	  git config diff.ipynb.textconv "'$(CURDIR)/$(BIN)/python' -m nbstripout -t"; fi
	@touch $(STAMP)

env: $(STAMP) ## create .venv/ from the lock, the notebook kernel 'funnelmodels' and git's output filter

browser: ## install Debian's chromium for the report browser checks (needs root; done by `make test`)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install chromium' (the browser tests need it)"; exit 1; fi; }

demo: $(STAMP) ## generate the demo data, validate it, render the three reports (reports/)
	$(BIN)/funnelmodels demo

reports: $(STAMP) ## render every report from the demo data (what a scheduled run calls)
	$(BIN)/funnelmodels report --all -p data_dir data/demo

test: $(STAMP) browser ## run the whole test suite (installs chromium if missing)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (code, docstrings, notebook cells, formatting) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# JupyterLab refuses root without --allow-root (containers often run as root); it prints the URL
# to open, with its token, and opens no browser on a machine without one.
lab: $(STAMP) ## open the notebooks in JupyterLab (creates the demo data first if missing); prints the URL
	@test -f data/demo/stage_events.parquet || $(BIN)/funnelmodels demo --no-reports
	@echo "JupyterLab: open the http://127.0.0.1 URL printed below; the notebooks use the kernel 'funnelmodels'."
	$(BIN)/jupyter lab notebooks/ --ServerApp.open_browser=False $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# The tutorial is committed with its outputs, which the tests compare: re-run it as they do.
tutorial: $(STAMP) ## re-run notebooks/tutorial.ipynb in place (its outputs are committed and checked by nbval)
	FUNNELMODELS_THREADS=1 FUNNELMODELS_PROGRESS=0 OMP_WAIT_POLICY=PASSIVE $(BIN)/jupyter nbconvert --to notebook \
	  --execute --inplace --ExecutePreprocessor.kernel_name=funnelmodels notebooks/tutorial.ipynb

# rfc3987-syntax (an optional format checker of jsonschema, pulled in by jupyter-events) builds a
# parser grammar at import: 2.7 s in every process that imports jsonschema (papermill, nbconvert,
# each report run). jsonschema works without it (it then skips the "iri" format check), so the
# lock leaves it and its parser library out.
lock: ## re-resolve requirements.lock from pyproject.toml (needs .venv)
	$(BIN)/python -m uv pip compile pyproject.toml --extra dev --extra dask --python-version 3.11 --universal \
	  --no-emit-package rfc3987-syntax --no-emit-package lark -o requirements.lock

clean: ## remove the environment, generated data and rendered reports
	rm -rf $(VENV) benchmarks/.venv-peers benchmarks/out data/demo reports/sales_performance reports/stage_conversion reports/customer_satisfaction test-artifacts

PEERS := benchmarks/.venv-peers
$(PEERS)/.installed: benchmarks/peers.lock $(STAMP)
	@test -x $(PEERS)/bin/python || $(BIN)/python -m uv venv --quiet --python $(BIN)/python $(PEERS)
	$(BIN)/python -m uv pip sync --quiet --compile-bytecode --python $(PEERS)/bin/python benchmarks/peers.lock
	@touch $@

bench: $(STAMP) $(PEERS)/.installed ## benchmarks at S and M (BENCH_SIZES=S,M,L for all); appends benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench.py run --sizes $(or $(BENCH_SIZES),S$(comma)M) $(BENCH_ARGS)
