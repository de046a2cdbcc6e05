# Two commands on a fresh machine: `make demo` runs the whole pipeline locally and prints a
# prediction from the local KServe endpoint; `make test` runs the test suite. Both create .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test bench lint tools clean

# pip's own output goes to .venv/install.log (its tail is shown if it fails): a person reads one
# line per phase, not a screen of resolver and build output.
$(STAMP): pyproject.toml
	@echo "install: .venv with hm3[dev] (pip's output: $(VENV)/install.log)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --upgrade pip > $(VENV)/install.log 2>&1 \
	  && $(BIN)/pip install -e '.[dev]' >> $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

# What the tests really start: Redis on loopback (Feast online store) and a Java runtime (the
# distribution's default, 17 or 21; Spark 4 runs on both) for Spark in local mode: the Spark
# label engine and Feast's Spark offline store.
tools:
	@command -v redis-server >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v java >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq default-jre-headless >/dev/null; }

demo: $(STAMP)
	@echo "run: hm3 run (the whole pipeline on kfp.local; every step's log in out/logs/)"
	@$(BIN)/hm3 run

test: $(STAMP) tools
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/hm3 bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out .pytest_cache
