# The two set-up commands of the README: `make demo` and `make test`. Both install what they
# need (Debian packages, the venv in .venv/, a running libvirtd) and are safe to run again.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export VMVAULT_LAB_DIR ?= /var/lib/vmvault/lab
export VMVAULT_LAB_CACHE ?= /var/cache/vmvault/lab

.PHONY: demo test lint unit integration system clean

system:
	@scripts/install-system.sh

# The venv uses Debian's python so that python3-libvirt and python3-libnbd import.
$(STAMP): pyproject.toml requirements.lock | system
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests $(wildcard bench)
	$(VENV)/bin/ruff format --check src tests $(wildcard bench)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit -q

test: system $(STAMP)
	$(MAKE) --no-print-directory lint
	@# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
	@# Two workers (xdist): one runs everything that needs the lab, in order, the other the
	@# rest meanwhile (tests/conftest.py, "running in parallel"). The slowest tests are listed
	@# at the end: where the 40 minutes go.
	@$(VENV)/bin/pytest -q -n 2 --durations=40 --durations-min=10 tests; rc=$$?; \
	  if [ $$rc = 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

demo: system $(STAMP)
	scripts/demo.sh

clean:
	rm -rf $(VENV) build src/*.egg-info
