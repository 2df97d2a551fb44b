# glassgpt: `make demo` trains and shows a small model; `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-llama bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,serve,constraints]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/glassgpt demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 tests

# GGUF exports run in llama.cpp: installs llama-cpp-python (compiles llama.cpp: a C++ compiler, minutes)
test-llama: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,llama]'
	$(BIN)/python -m pytest tests/test_interop_llama.py -rs -p no:xdist

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
