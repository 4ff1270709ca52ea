# topup: `make run` for a demo, `make test` for the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TOPUP_DATABASE_URL ?= sqlite:///var/topup.sqlite3

.PHONY: run test install lint typecheck unit integration simulation bench messages clean

$(BIN)/topup: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/topup

install: $(BIN)/topup

run: install
	$(BIN)/topup init --demo
	@echo "API: http://127.0.0.1:8000/api/docs   Demo cards: $(BIN)/topup cards"
	@echo "Activation worker and API server running; Ctrl-C stops both."
	@trap 'kill 0' INT TERM EXIT; \
	TOPUP_SANDBOX_WEBHOOK_URL=http://127.0.0.1:8000 $(BIN)/topup worker & \
	TOPUP_SANDBOX_WEBHOOK_URL=http://127.0.0.1:8000 $(BIN)/topup serve --host 127.0.0.1 --port 8000

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
	$(BIN)/python bench/http_renewals.py

# The texts to translate: extracted from the code (babel.cfg), merged into every catalogue; new
# texts arrive untranslated (a test fails until each has its four languages).
CATALOGUES := src/topup/i18n/locales
messages: install
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --width 100 \
		--project topup -o var/messages.pot .
	$(BIN)/pybabel update -i var/messages.pot -d $(CATALOGUES) -D messages \
		--width 100 --ignore-obsolete --no-fuzzy-matching

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .hypothesis
