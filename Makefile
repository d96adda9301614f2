# g3r_ros: one-command setup, tests and demo on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Keep every rclpy process on loopback (no DDS multicast on the machine's network).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42
# Large temporaries in the CPU rasterizer: avoid mmap/munmap page-fault churn.
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 4294967296
export OMP_NUM_THREADS ?= 2
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup test test-fast demo bench lint clean

setup: $(VENV)/.stamps/ready

$(VENV)/.stamps/ready: tools/setup_env.sh tools/requirements.txt setup.py
	@bash tools/setup_env.sh
	@touch $@

test: setup
	$(PY) -m pytest -q test

test-fast: setup
	$(PY) -m pytest -q -x test -m "not slow"

demo: setup
	$(VENV)/bin/g3r demo --out out/demo

bench: setup
	$(VENV)/bin/g3r bench render

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf out build install log .pytest_cache
