# The two commands of the README: `make demo` and `make test`. Both start from a bare machine:
# Debian packages the kernel and the tests use, a fresh .venv with the package (installed, not
# linked, as users get it) and its kernelspec.

VENV   := .venv
PYTHON := $(VENV)/bin/python
DEBIAN_PACKAGES := bash coreutils procps util-linux python3-venv
PYTEST_ARGS ?=

.PHONY: demo test bench system-deps venv clean

demo: venv
	$(PYTHON) notebooks/execute_and_print.py notebooks/quickstart.ipynb

test: venv
	$(PYTHON) -m pytest $(PYTEST_ARGS)

system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: system-deps
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q '.[test]'
	$(PYTHON) -m sandbox_kernel install --sys-prefix

clean:
	rm -rf $(VENV) build *.egg-info
