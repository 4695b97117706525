# Entry points for operators and CI. Everything runs as root on a Debian 12 machine.
#   make demo        set up everything, bring up a simulated fleet, run site.yml, print each host's verdict
#   make test        unit tests, lint, Molecule scenarios (what .ci/run calls)
SHELL := /bin/bash
N ?= 3
SUITE ?= bookworm
VENV := $(CURDIR)/venv
export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/testbed/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
SCENARIOS ?= simulator vgpu_shim vgpu_links vgpu_dropin gpu_mode rollback upgrade remediate

.PHONY: deps image sim fleet fleet-down demo test unit lint molecule bench clean

deps:
	testbed/install-deps.sh

image: deps
	testbed/build-image.sh bookworm
	testbed/build-image.sh trixie

sim: deps
	simulator/build.sh

fleet: image sim
	testbed/fleet-up.sh $(N) $(SUITE)

fleet-down:
	testbed/fleet-down.sh

demo: fleet
	testbed/demo.sh

unit: sim
	python -m pytest tests/unit -q

lint: deps
	ansible-lint --profile production
	for m in library/*.py; do ansible-doc -M library $$(basename $$m .py) >/dev/null || exit 1; done

molecule: image sim
	for s in $(SCENARIOS); do molecule test -s $$s || exit 1; done

test: unit lint molecule

bench: image sim
	bench/run $(BENCH_ARGS)

clean: fleet-down
	-podman rm -f $$(podman ps -aq --filter label=owner=molecule) 2>/dev/null
	rm -rf .build
