# Two entry points: `make run` and `make test`. Both set everything up by themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/gateway.yaml

.PHONY: run test unit bench lint system-deps clean

$(BIN)/python:
	@scripts/ensure-venv.sh "$(PYTHON)" "$(VENV)"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/gateway run --config $(CONFIG)

system-deps:
	@scripts/install-system-deps.sh

test: $(VENV)/.installed system-deps lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup

unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit

bench: $(VENV)/.installed system-deps
	$(BIN)/python bench/mixer.py
	$(BIN)/python bench/webrtc_legs.py
	$(BIN)/python bench/sip_legs.py
	$(BIN)/python bench/sip_setup.py
	$(BIN)/python bench/sip_worst_case.py
	$(BIN)/python bench/video_legs.py --passthrough
	$(BIN)/python bench/broadcast.py

lint: $(VENV)/.installed
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy gateway
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache
