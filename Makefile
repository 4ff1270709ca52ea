# topup: `make run` for a demo, `make test` for the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TOPUP_DATABASE_URL ?= sqlite:///var/topup.sqlite3

.PHONY: run test install lint typecheck unit integration simulation bench clean

$(BIN)/topup: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/topup

install: $(BIN)/topup

run: install
	$(BIN)/topup init --demo
	@echo "Demo cards: $(BIN)/topup cards   Renew: $(BIN)/topup renew 0123456789 pack_5gb_7d --card-number 4242424242424242 --expiry 12/30 --cvc 123"
	@echo "Activation worker running; Ctrl-C to stop."
	$(BIN)/topup worker

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/python bench/renewals.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .hypothesis
