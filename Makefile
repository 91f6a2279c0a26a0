# The two commands of the README: `make demo` and `make test`. Both start from a bare machine:
# Debian packages the kernel and the tests use, a fresh .venv with the package (installed, not
# linked, as users get it) and its kernelspec.

VENV   := .venv
PYTHON := $(VENV)/bin/python
# The isolation tests also run the kernel as an unprivileged user, who cannot reach every path
# (a checkout under /root, pyenv's python): the package goes into a venv of Debian's python3.
USER_VENV := /opt/sandbox-kernel-tests/venv
# Enterprise Gateway, which the gateway tests run, pins jupyter_client < 7 and jupyter_server < 2.
EG_VENV := /opt/sandbox-kernel-tests/eg-venv
# python3-pip: the packages-install test runs Debian's pip inside the sandbox.
# git, tmux and ssh-agent (openssh-client): the layout tests put a repository, a tmux server and an
# agent beside the kernel, as a user's machine has them. openssh-server: the gateway tests reach
# Enterprise Gateway's remote host over SSH (its sshd runs in a network namespace of the test's;
# the install starts no service: a policy-rc.d forbids it for the while, as containers have one).
# kmod and e2fsprogs: the cgroup-v2 tests' guest (tests/vm.py) loads its kernel's modules with
# insmod and gets an ext4 /tmp from mkfs.ext4.
DEBIAN_PACKAGES := bash coreutils procps util-linux iproute2 slirp4netns python3 python3-venv python3-pip chromium git tmux openssh-client openssh-server kmod e2fsprogs patchelf curl
# The JupyterLab extension (jupyter_extension/): node and npm build it, prebuilt into the wheel;
# the browser test drives Debian's chromium.
EXT := jupyter_extension
PYTEST_ARGS ?=

.PHONY: demo test test-prerequisites bench bench-peers lab dist screenshot system-deps node venv user-venv eg-venv lab-extension vm-kernel clean

demo: venv
	$(PYTHON) notebooks/execute_and_print.py notebooks/quickstart.ipynb

test: test-prerequisites venv user-venv eg-venv bench-peers vm-kernel
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The tests run kernels as root and as a user they create, and install Debian packages.
test-prerequisites:
	@[ "$$(id -u)" = 0 ] || { echo "make test: run as root (the tests start kernels as root and as a user they create, and apt-get what is missing)"; exit 1; }
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "make test: needs python3 3.11 or later on PATH (found: $$(python3 --version 2>&1))"; exit 1; }

bench: venv bench-peers
	$(PYTHON) -m bench

# The kernels the bench measures beside ours (the bench smoke test runs them all).
bench-peers: venv
	$(PYTHON) -m pip install -q bash_kernel ipykernel
	$(PYTHON) -m bash_kernel.install --sys-prefix

system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		policy=/usr/sbin/policy-rc.d; made=; \
		[ -e $$policy ] || { printf '#!/bin/sh\nexit 101\n' > $$policy && chmod 755 $$policy && made=1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; status=$$?; \
		[ -z "$$made" ] || rm -f $$policy; exit $$status; \
	fi

# The build's own requirements go into .venv first, so that pip builds the package there instead
# of in an isolated environment it fills anew each time (JupyterLab included: about 45 s).
BUILD_REQUIREMENTS := 'hatchling>=1.21' 'hatch-nodejs-version>=0.3.2' 'hatch-jupyter-builder>=0.9' 'jupyterlab>=4,<5'

venv: system-deps lab-extension
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q $(BUILD_REQUIREMENTS)
	$(PYTHON) -m pip install -q --no-build-isolation '.[test]'
	$(PYTHON) -m sandbox_kernel install --sys-prefix

# JupyterLab on loopback, with the kernel and the extension of .venv, for trying the product.
lab: venv
	$(VENV)/bin/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)

# The sdist and the wheel (built from the sdist, as `python -m build` does), the wheel carrying
# the prebuilt extension: `pip install dist/*.whl` needs no node.
dist: node
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q build
	rm -rf dist
	$(PYTHON) -m build --outdir dist .

# The README's picture of JupyterLab, taken by the browser test of the sessions panel.
screenshot: venv
	$(PYTHON) -m pytest -q tests/test_lab_extension.py -k 'test_sessions_panel and not other' --lab-screenshot docs/jupyterlab.png

node:
	command -v npm >/dev/null && command -v node >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }

# The build the Python build runs too (build_labextension.py, called by hatch-jupyter-builder),
# here against the JupyterLab in .venv, so that the venv's `pip install .` finds it done. It does
# nothing while the build is newer than its sources; the npm packages come from the lockfile.
lab-extension: node
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -c 'import jupyterlab' 2>/dev/null || $(PYTHON) -m pip install -q 'jupyterlab>=4,<5'
	$(PYTHON) $(EXT)/build_labextension.py

# The guest kernel of tests/vm.py: Debian's User-mode Linux (a Linux kernel that runs as a process:
# the KVM of this kind of machine cannot boot a stock kernel), from Debian testing ($(VM_SUITE)) with
# the C library it was built against beside it (patchelf points the binary at it), unpacked into
# build/vm, not installed. Bookworm's (6.1) panics on a host CPU with AMX: ptrace refuses its
# fixed-size FPU state ("ptrace set fp regs failed"). apt fetches both with a sources list of its
# own (signatures checked against Debian's keyring); fetched once, `make clean` forgets it.
VM := $(abspath build/vm)
VM_KERNEL := $(VM)/uml
VM_SUITE := forky
VM_APT = apt-get -qq -o Dir::Etc::SourceList=$(VM)/apt/sources.list -o Dir::Etc::SourceParts=/nonexistent \
	-o Dir::State::Lists=$(VM)/apt/lists -o Dir::Cache=$(VM)/apt/cache -o APT::Sandbox::User=root -o Debug::NoLocking=1
vm-kernel: system-deps
	@test -e $(VM_KERNEL)/.ready || { set -e; \
		rm -rf $(VM_KERNEL) $(VM)/libc $(VM)/apt; \
		mkdir -p $(VM_KERNEL) $(VM)/libc $(VM)/apt/lists/partial $(VM)/apt/cache/archives/partial $(VM)/apt/deb; \
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $(VM_SUITE) main" > $(VM)/apt/sources.list; \
		echo "vm-kernel: user-mode-linux and its libc from Debian $(VM_SUITE) into $(VM)"; \
		$(VM_APT) update; \
		(cd $(VM)/apt/deb && $(VM_APT) download user-mode-linux libc6); \
		dpkg-deb -x $(VM)/apt/deb/user-mode-linux_*.deb $(VM_KERNEL); \
		dpkg-deb -x $(VM)/apt/deb/libc6_*.deb $(VM)/libc; \
		patchelf --set-interpreter $(VM)/libc/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \
			--set-rpath $(VM)/libc/usr/lib/x86_64-linux-gnu $(VM_KERNEL)/usr/bin/linux.uml; \
		rm -rf $(VM)/apt; touch $(VM_KERNEL)/.ready; }

# The same wheel as .venv's, built there.
user-venv: system-deps venv
	rm -rf build/wheel
	$(PYTHON) -m pip wheel -q --no-deps --no-build-isolation -w build/wheel .
	test -x $(USER_VENV)/bin/python || /usr/bin/python3 -m venv $(USER_VENV)
	$(USER_VENV)/bin/python -m pip install -q --upgrade pip
	$(USER_VENV)/bin/python -m pip install -q "$$(echo build/wheel/*.whl)[gateway]"
	$(USER_VENV)/bin/python -m pip install -q --no-deps --force-reinstall build/wheel/*.whl  # the same version, newer code
	$(USER_VENV)/bin/python -m pip install -q jupyter_server jupyter_kernel_gateway  # the server-extension and gateway tests run them as the user
	$(USER_VENV)/bin/python -m sandbox_kernel install --sys-prefix

eg-venv: system-deps
	test -x $(EG_VENV)/bin/python || /usr/bin/python3 -m venv $(EG_VENV)
	$(EG_VENV)/bin/python -m pip install -q 'jupyter_enterprise_gateway==3.3.0'

clean:
	rm -rf $(VENV) build dist *.egg-info $(EXT)/node_modules $(EXT)/lib $(EXT)/labextension
