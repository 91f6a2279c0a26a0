# The two commands of the README: `make demo` and `make test`. Both start from a bare machine:
# Debian packages the kernel and the tests use, a fresh .venv with the package (installed, not
# linked, as users get it) and its kernelspec.

VENV   := .venv
PYTHON := $(VENV)/bin/python
# The isolation tests also run the kernel as an unprivileged user, who cannot reach every path
# (a checkout under /root, pyenv's python): the package goes into a venv of Debian's python3.
USER_VENV := /opt/sandbox-kernel-tests/venv
DEBIAN_PACKAGES := bash coreutils procps util-linux iproute2 slirp4netns python3 python3-venv
PYTEST_ARGS ?=

.PHONY: demo test bench system-deps venv user-venv clean

demo: venv
	$(PYTHON) notebooks/execute_and_print.py notebooks/quickstart.ipynb

test: venv user-venv
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PYTHON) -m pip install -q bash_kernel ipykernel
	$(PYTHON) -m bash_kernel.install --sys-prefix
	$(PYTHON) -m bench

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

user-venv: system-deps
	test -x $(USER_VENV)/bin/python || /usr/bin/python3 -m venv $(USER_VENV)
	$(USER_VENV)/bin/python -m pip install -q --upgrade pip
	$(USER_VENV)/bin/python -m pip install -q .

clean:
	rm -rf $(VENV) build *.egg-info
