"""Starting the kernel: configuration is read from Jupyter's config dirs only, and any option the
kernel does not know, or cannot read, stops it with one clear line instead of being ignored."""

import sys

from ipykernel.kernelapp import IPKernelApp
from jupyter_core.paths import jupyter_config_path
from traitlets import TraitError
from traitlets.config.application import Application
from traitlets.config.loader import ConfigFileNotFound

from .kernel import SandboxKernel
from .sandbox import Sandbox, SandboxError

CONFIG_FILE = "jupyter_sandbox_kernel_config"
OUR_CLASSES = (SandboxKernel, Sandbox)


class ConfigError(Exception):
    pass


class SandboxKernelApp(IPKernelApp):
    name = "sandbox-kernel"
    kernel_class = SandboxKernel

    def load_config_file(self, suppress_errors=None):
        # Never the working directory: that is the notebook's directory, which cells can write.
        self.raise_config_file_errors = True
        try:
            Application.load_config_file(self, CONFIG_FILE, path=jupyter_config_path())
        except ConfigFileNotFound:
            pass
        except Exception as e:
            raise ConfigError(f"cannot read {CONFIG_FILE}.py: {e}") from None

    def init_path(self):
        """Leave sys.path alone: IPython would add the working directory, which cells can write."""

    def start(self):
        super().start()
        # A shutdown_request stops the main loop from the control thread, which still flushes
        # after its reply; atexit would stop the iopub thread under that flush and leave the
        # kernel hanging until the manager kills it. Let the control thread finish first.
        if self.control_thread and self.control_thread.is_alive():
            self.control_thread.stop()
            self.control_thread.join(timeout=5)

    def init_kernel(self):
        self._check_options()
        # No kernel subshells: the sessions, their pipes and futures live on the main event loop,
        # and a subshell would run handlers (execute, a comm message) on a thread of its own.
        # Without the shell channel thread ipykernel handles every shell message on the main
        # loop and kernel_info does not offer subshells.
        self.shell_channel_thread = None
        try:
            super().init_kernel()
        except TraitError as e:
            raise ConfigError(str(e).splitlines()[0]) from None

    def _check_options(self):
        for cls in OUR_CLASSES:
            known = set(cls.class_trait_names(config=True))
            for key in self.config.get(cls.__name__, {}):
                if key not in known:
                    options = ", ".join(sorted(known))
                    raise ConfigError(f"unknown option {cls.__name__}.{key} (known: {options})")


def launch(argv=None):
    app = SandboxKernelApp.instance()
    try:
        app.initialize(argv)
    except (ConfigError, SandboxError, TraitError) as e:
        print(f"sandbox-kernel: {e}", file=sys.__stderr__)  # sys.stderr goes to the frontend by now
        sys.exit(2)
    app.start()
