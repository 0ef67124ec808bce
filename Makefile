# genbench: every target sets itself up on a fresh clone (a .venv with the project installed).
# `make demo` runs the main job on the bundled data; `make test` runs the tests.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared/data
SCALE  ?= smoke
TABLES := $(sort $(basename $(notdir $(wildcard configs/table/*.yaml))))

.PHONY: setup demo test test-slow bench tables-smoke tables-paper data-link clean help $(addprefix table-,$(TABLES))

help:
	@echo "make demo | test | test-slow | bench | tables-smoke | tables-paper | table-NAME [SCALE=smoke|cpu|paper] | data-link | clean"
	@echo "tables: $(TABLES)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/genbench demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# speed against peers and the arithmetic floor (RBM vs scikit-learn, AIS and IWAE bounds vs bare matmul loops, a training
# step per family under Lightning vs a bare loop vs its products, flows vs zuko and normflows, a table on 2 workers)
# → results/bench/; run on an idle machine
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m genbench.bench

# every table at smoke scale (tables on MNIST need it in datasets/: `make data-link` or GENBENCH_DATA)
tables-smoke: $(STAMP)
	@for t in $(TABLES); do echo "== $$t"; $(BIN)/genbench table $$t --scale smoke > /dev/null || exit 1; done
	@echo "written: results/tables/*/smoke.md (index: results/tables/README.md)"

tables-paper: $(STAMP)
	@for t in $(filter-out demo,$(TABLES)); do echo "== $$t"; $(BIN)/genbench table $$t --scale paper > /dev/null || exit 1; done

table-%: $(STAMP)
	$(BIN)/genbench table $* --scale $(SCALE)

# link a local copy of the datasets (default ../shared/data) into datasets/ in the layout genbench reads
data-link:
	@test -d $(SHARED) || { echo "no folder $(SHARED); set SHARED=path/to/data"; exit 1; }
	mkdir -p datasets/MNIST/raw datasets/binarized_mnist
	for f in $(abspath $(SHARED))/mnist/*.gz; do ln -sf $$f datasets/MNIST/raw/; done
	for f in $(abspath $(SHARED))/binarized_mnist/*.amat; do ln -sf $$f datasets/binarized_mnist/; done

clean:
	rm -rf results/runs results/logs results/hydra results/wandb results/figures results/tables results/bench models/*/ .pytest_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -exec rm -rf {} +
