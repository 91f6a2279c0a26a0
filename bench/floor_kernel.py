"""The protocol floor: a kernel on ipykernel's Kernel base class that does nothing. What it costs
per cell is what the Jupyter protocol and ipykernel's machinery cost; every kernel pays at least
that, so the other kernels' figures are read against it."""

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel


class FloorKernel(Kernel):
    implementation = "bench_floor"
    implementation_version = "1"
    language_info = {"name": "text", "mimetype": "text/plain", "file_extension": ".txt"}
    banner = "bench floor kernel: every cell is a no-op"

    # async, as sandbox-kernel's is: both go through the same await in ipykernel's dispatch.
    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False, **_):
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=FloorKernel)
