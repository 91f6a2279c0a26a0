# The two commands of the README: `make demo` and `make test`. Both start from a bare machine:
# Debian packages the kernel and the tests use, a fresh .venv with the package (installed, not
# linked, as users get it) and its kernelspec.

VENV   := .venv
PYTHON := $(VENV)/bin/python
# The isolation tests also run the kernel as an unprivileged user, who cannot reach every path
# (a checkout under /root, pyenv's python): the package goes into a venv of Debian's python3.
USER_VENV := /opt/sandbox-kernel-tests/venv
# python3-pip: the packages-install test runs Debian's pip inside the sandbox.
# git, tmux and ssh-agent (openssh-client): the layout tests put a repository, a tmux server and an
# agent beside the kernel, as a user's machine has them.
DEBIAN_PACKAGES := bash coreutils procps util-linux iproute2 slirp4netns python3 python3-venv python3-pip chromium git tmux openssh-client
# The JupyterLab status bar indicator (jupyter_extension/), prebuilt and shipped as data files of
# the package: node and npm build it, the browser test drives Debian's chromium.
EXT := jupyter_extension
EXT_BUILT := $(EXT)/labextension/package.json
EXT_SOURCES := $(EXT)/package.json $(EXT)/tsconfig.json $(EXT)/install.json $(wildcard $(EXT)/src/*.ts $(EXT)/style/*)
PYTEST_ARGS ?=

.PHONY: demo test test-prerequisites bench system-deps venv user-venv lab-extension clean

demo: venv
	$(PYTHON) notebooks/execute_and_print.py notebooks/quickstart.ipynb

test: test-prerequisites venv user-venv
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The tests run kernels as root and as a user they create, and install Debian packages.
test-prerequisites:
	@[ "$$(id -u)" = 0 ] || { echo "make test: run as root (the tests start kernels as root and as a user they create, and apt-get what is missing)"; exit 1; }
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "make test: needs python3 3.11 or later on PATH (found: $$(python3 --version 2>&1))"; exit 1; }

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

venv: system-deps lab-extension
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q '.[test]'
	$(PYTHON) -m sandbox_kernel install --sys-prefix

# Built before `pip install .` in the venv target, which then carries it. Incremental: npm runs
# only when package.json or the lockfile changed, the build only when a source did.
lab-extension: $(EXT_BUILT)

$(EXT)/node_modules/.installed: $(EXT)/package.json $(wildcard $(EXT)/package-lock.json)
	command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	cd $(EXT) && npm install --no-audit --no-fund --loglevel=error
	touch $@

# @jupyterlab/builder builds against the core of the JupyterLab in .venv (its staging package.json
# says which shared modules, in which versions, the extension may use from the page).
$(EXT_BUILT): $(EXT)/node_modules/.installed $(EXT_SOURCES) | system-deps
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -c 'import jupyterlab' 2>/dev/null || $(PYTHON) -m pip install -q 'jupyterlab>=4,<5'
	rm -rf $(EXT)/lib $(EXT)/labextension
	cd $(EXT) && node_modules/.bin/tsc && node_modules/.bin/build-labextension . \
		--core-path "$$($(abspath $(PYTHON)) -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')"
	cp $(EXT)/install.json $(EXT)/labextension/

user-venv: system-deps
	test -x $(USER_VENV)/bin/python || /usr/bin/python3 -m venv $(USER_VENV)
	$(USER_VENV)/bin/python -m pip install -q --upgrade pip
	$(USER_VENV)/bin/python -m pip install -q .

clean:
	rm -rf $(VENV) build *.egg-info $(EXT)/node_modules $(EXT)/lib $(EXT)/labextension
