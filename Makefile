# genbench: every target sets itself up on a fresh clone (a .venv with the project installed).
# `make demo` runs the main job on the bundled data; `make test` runs the tests.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared/data
SCALE  ?= smoke
TABLES := $(sort $(basename $(notdir $(wildcard configs/table/*.yaml))))

.PHONY: setup demo test test-slow test-browser browser-setup report bench bench-cli gpu-check paper-costs tables-smoke tables-paper reference-renders readme data-link clean help $(addprefix table-,$(TABLES))

help:
	@echo "make demo | test | test-slow | test-browser | report | bench | bench-cli | gpu-check | paper-costs | tables-smoke | tables-paper | table-NAME [SCALE=smoke|cpu|paper] | reference-renders | readme | data-link | clean"
	@echo "tables: $(TABLES)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,cluster]'
	touch $@

demo: $(STAMP)
	$(BIN)/genbench demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# the results site: results/site/index.html from every table render there is (yours, else the project's reference)
report: $(STAMP)
	$(BIN)/genbench report

# Debian's chromium and Playwright (the browser extra) for the site's browser tests; Playwright's own browser
# download is never used (it needs the network): the tests drive the system's chromium
BROWSER_STAMP := $(VENV)/.browser
browser-setup: $(BROWSER_STAMP)
	@command -v chromium > /dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium > /dev/null; }

$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,cluster,browser]'
	touch $@

# the site in a real browser (tests/browser/): every page clean, sorting, filters, legend; screenshots kept in
# results/site/screenshots/
test-browser: browser-setup
	GENBENCH_KEEP_SCREENSHOTS=$(CURDIR)/results/site/screenshots $(BIN)/python -m pytest -q -m browser tests/browser

# speed against peers and the arithmetic floor (RBM vs scikit-learn, AIS and IWAE bounds vs bare matmul loops, a training
# step per family under Lightning vs a bare loop vs its products, flows vs zuko and normflows, a table on 2 workers)
# → results/bench/; run on an idle machine
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,cluster,bench]'
	$(BIN)/python -m genbench.bench

# every family's paper configuration on the GPU (steps/s, peak memory, projected paper cost, CPU vs GPU agreement on the
# same weights) -> results/bench/gpu.md; without a GPU the same on the CPU, saying that no GPU was measured
gpu-check: $(STAMP)
	$(BIN)/python -m genbench.bench.gpu

# every table's paper scale planned on this machine (CPU hours, wall hours on its cores, whether it fits a day) and
# estimated for a reference GPU from each step's FLOPs and kernel launches -> results/bench/paper-costs.md
paper-costs: $(STAMP)
	$(BIN)/python -m genbench.bench.paper_costs

# the start-up of `genbench --help`, `list` and of a mistake (goal: under 1 s), fastest of 5 fresh interpreters each
bench-cli: $(STAMP)
	$(BIN)/python -m genbench.bench.cli

# every table at smoke scale (tables on MNIST need it in datasets/: `make data-link` or GENBENCH_DATA)
tables-smoke: $(STAMP)
	@for t in $(TABLES); do echo "== $$t"; $(BIN)/genbench table $$t --scale smoke > /dev/null || exit 1; done
	@echo "written: results/tables/*/smoke.md (index: results/tables/README.md); the project's own: reference/tables/"

tables-paper: $(STAMP)
	@for t in $(filter-out demo,$(TABLES)); do echo "== $$t"; $(BIN)/genbench table $$t --scale paper > /dev/null || exit 1; done

table-%: $(STAMP)
	$(BIN)/genbench table $* --scale $(SCALE)

# the committed reference renders (reference/, what the project measured): rewritten only here, on purpose.
# A user's commands write to results/ (untracked). REF_TABLES and SCALE pick what is rebuilt.
REF_TABLES ?= demo
reference-renders: $(STAMP)
	@for t in $(REF_TABLES); do echo "== $$t ($(SCALE)) -> reference/"; GENBENCH_RESULTS=$(CURDIR)/reference $(BIN)/genbench table $$t --scale $(SCALE) > /dev/null || exit 1; done

# the README's measured numbers, regenerated from the committed renders (reference/tables/*/SCALE.csv) after one
# changes; `$(BIN)/python -m genbench.readme --check` lists the stale ones without writing
readme: $(STAMP)
	$(BIN)/python -m genbench.readme

# link a local copy of the datasets (default ../shared/data) into datasets/ in the layout genbench reads
data-link:
	@test -d $(SHARED) || { echo "no folder $(SHARED); set SHARED=path/to/data"; exit 1; }
	mkdir -p datasets/MNIST/raw datasets/binarized_mnist
	for f in $(abspath $(SHARED))/mnist/*.gz; do ln -sf $$f datasets/MNIST/raw/; done
	for f in $(abspath $(SHARED))/binarized_mnist/*.amat; do ln -sf $$f datasets/binarized_mnist/; done

clean:   # a user's results and models; the committed reference/ stays
	rm -rf results models/*/ .pytest_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -exec rm -rf {} +
