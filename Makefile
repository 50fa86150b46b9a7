# make demo: run a real container.  make test: every test.  Both set up everything first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ROOTFS := bundles/busybox/rootfs

.PHONY: setup demo test unit conformance bench clean
setup: $(VENV)/.installed $(ROOTFS)/bin/busybox

$(VENV)/.installed: setup.cfg pyproject.toml scripts/setup-host.sh
	sh scripts/setup-host.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	touch $@

$(ROOTFS)/bin/busybox:
	sh bundles/mkrootfs.sh $(ROOTFS)

demo: setup
	@echo "== bundles/busybox: its own pid, mount, UTS, IPC, network, cgroup and user namespaces"
	$(PY) -m pyoci run --bundle bundles/busybox demo-$$$$
	@echo "== bundles/seed: the seed program's container, with its veth pair (in a throwaway network namespace)"
	PYOCI=$(VENV)/bin/pyoci sh bundles/seed/demo.sh

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && echo 'no tests collected' && rc=0; exit $$rc

unit: setup
	$(PY) -m pytest -q tests/unit

conformance: setup
	$(PY) -m conformance

bench: setup
	$(PY) bench/lifecycle.py

clean:
	rm -rf $(VENV) $(ROOTFS) *.egg-info
