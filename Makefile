# Laoke — the two commands a new machine needs are `make run` and `make test`.
# Everything installs itself on first use; nothing here needs Docker or a download at run time.

# The package requires Python 3.11; prefer an explicit python3.11 where a machine has several.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The console's browser tests drive Debian's Chromium (no browser download at run time), with a CJK
# font so the screenshots under tests/artifacts/ show the Chinese.
CHROMIUM := /usr/bin/chromium
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

.PHONY: run test test-unit test-integration test-isolation test-fuzz test-pii test-faults test-e2e stop status bench lint format install clean

# The virtualenv is (re)built whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing Laoke and its pinned dependencies into $(VENV) …"
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip > $(VENV)/pip.log 2>&1 \
	  && $(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' >> $(VENV)/pip.log 2>&1 \
	  || (cat $(VENV)/pip.log; exit 1)
	@touch $(STAMP)

install: $(STAMP)

$(CHROMIUM) $(CJK_FONT):
	@echo "Installing Chromium and a CJK font for the console's browser tests (apt-get) …"
	@SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq > /dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-wqy-microhei > /dev/null

run: $(STAMP)                ## start the whole stack (embedded PostgreSQL + broker unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS)
	@$(PY) -m laoke.cli run

stop: $(STAMP)               ## stop a stack started by `make run` in another terminal
	@$(PY) -m laoke.cli stop

status: $(STAMP)             ## readiness of every process of a running stack
	@$(PY) -m laoke.cli status

test: $(STAMP) $(CHROMIUM) $(CJK_FONT)   ## the whole suite against real PostgreSQL and a real Kafka-protocol broker
	@$(PY) -m pytest -q --durations=15

test-unit: $(STAMP)
	@$(PY) -m pytest -q tests/unit

test-integration: $(STAMP)
	@$(PY) -m pytest -q tests/integration

test-isolation: $(STAMP)     ## shop B's key against every operation of the OpenAPI document naming shop A's objects
	@$(PY) -m pytest -q tests/integration/test_tenant_matrix.py tests/integration/test_tenant_isolation.py

test-fuzz: $(STAMP)          ## Schemathesis over the gateway's OpenAPI document, 50 examples an operation
	@LAOKE_FUZZ_EXAMPLES=50 $(PY) -m pytest -q tests/integration/test_api_fuzz.py

test-pii: $(STAMP)           ## canary phone, e-mail and birthday through every door; none unmasked in logs or DLQs
	@$(PY) -m pytest -q tests/integration/test_pii_canary.py

test-faults: $(STAMP)         ## 20,000 orders while every process is SIGKILLed, the broker restarted, PostgreSQL crashed
	@LAOKE_FAULT_ORDERS=20000 $(PY) -m pytest -q tests/faults

test-e2e: $(STAMP) $(CHROMIUM) $(CJK_FONT)
	@$(PY) -m pytest -q tests/e2e

bench: $(STAMP)              ## run the benchmarks in bench/ (all, or BENCH="name ...") against a stack it starts; results in bench/results/
	@$(PY) -m bench.run_all $(BENCH)

lint: $(STAMP)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: $(STAMP)
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .laoke .pytest_cache .ruff_cache *.egg-info
