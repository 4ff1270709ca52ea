# topup: `make run` for a demo, `make test` for the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TOPUP_DATABASE_URL ?= sqlite:///var/topup.sqlite3

.PHONY: run test install browser lint typecheck unit integration simulation bench messages clean

$(BIN)/topup: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/topup

install: $(BIN)/topup

HOST ?= 127.0.0.1
PORT ?= 8000

# The port is checked before anything starts; Ctrl-C stops the server, then the worker, and
# exits 0 (`topup serve --with-worker`; see src/topup/entrypoints/cli/processes.py).
run: install
	@$(BIN)/topup serve --check-port --host $(HOST) --port $(PORT)
	$(BIN)/topup init --demo
	@echo "Website: http://$(HOST):$(PORT)  (renew +60 12-345 6789)   API: http://$(HOST):$(PORT)/api/docs"
	@echo "Demo cards: $(BIN)/topup cards.  Website, API and activation worker running; Ctrl-C stops them."
	@TOPUP_SANDBOX_WEBHOOK_URL=http://$(HOST):$(PORT) exec $(BIN)/topup serve --with-worker \
		--host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (test tools cannot download browsers here), with the
# Noto CJK fonts for the Chinese pages: installed with apt-get when missing.
BROWSER_PACKAGES := chromium fonts-noto-cjk
browser:
	@if ! dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1; then \
	  echo "Installing $(BROWSER_PACKAGES) with apt-get for the browser tests"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null 2>&1 || \
	    { $$sudo apt-get update -q >/dev/null && $$sudo apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null; }; \
	fi

# The suite runs on every core (pytest-xdist; each process has its own PostgreSQL database), then
# the browser tests in one process with one Chromium (Playwright's sync API keeps an event loop
# on its thread, so they never share a process with the asyncio tests).
TEST_PROCESSES ?= auto
test: install browser lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --ignore=tests/browser
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/browser

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/python bench/renewals.py
	$(BIN)/python bench/http_renewals.py
	$(BIN)/python bench/cli_startup.py

# The texts to translate: each domain's texts extracted with its map (babel/<domain>.cfg) and merged
# into its catalogue in every locale (created when new); new texts arrive untranslated (a test
# fails until each has its four languages).
CATALOGUES := src/topup/i18n/locales
LOCALE_NAMES := en zh_Hans ms id
messages: install
	@mkdir -p var
	@for map in babel/*.cfg; do \
	  domain=$$(basename $$map .cfg); \
	  $(BIN)/pybabel extract -F $$map --no-location --sort-output --width 100 --project topup \
	    -o var/$$domain.pot . >/dev/null || exit 1; \
	  for locale in $(LOCALE_NAMES); do \
	    po=$(CATALOGUES)/$$locale/LC_MESSAGES/$$domain.po; \
	    if [ -f $$po ]; then \
	      $(BIN)/pybabel update -i var/$$domain.pot -o $$po -l $$locale -D $$domain --width 100 \
	        --ignore-obsolete --no-fuzzy-matching --ignore-pot-creation-date >/dev/null || exit 1; \
	    else \
	      $(BIN)/pybabel init -i var/$$domain.pot -o $$po -l $$locale -D $$domain --width 100 \
	        >/dev/null || exit 1; \
	    fi; \
	  done; \
	  echo "$$domain: $$(grep -c '^msgid ' var/$$domain.pot) texts"; \
	done

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .hypothesis
