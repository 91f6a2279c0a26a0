"""What every figure works with: the plan, the kernels that are available, and kernels to run
cells in (warm ones kept for the whole run, fresh ones for figures that need a new process)."""

import itertools
import tempfile
from pathlib import Path

import zmq
from jupyter_client.kernelspec import KernelSpecManager

from .client import RECONNECT_INTERVAL_MS, BenchKernel
from .peers import PEERS, WHY_MISSING, write_floor_spec


class Bench:
    def __init__(self, plan):
        self.plan = plan
        self._counter = itertools.count(1)
        self._warm = {}

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="sandbox-kernel-bench-")
        self.root = Path(self._tmp.name)
        write_floor_spec(self.root / "kernels")
        self.spec_manager = KernelSpecManager()
        self.spec_manager.kernel_dirs = [*self.spec_manager.kernel_dirs, str(self.root / "kernels")]
        installed = self.spec_manager.find_kernel_specs()
        self.peers = [p for p in PEERS if p.kernel in installed]
        self.skipped = {p.key: WHY_MISSING[p.kernel] for p in PEERS if p.kernel not in installed}
        self.context = zmq.Context()
        self.context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_INTERVAL_MS)
        return self

    def __exit__(self, *exc):
        for kernel in self._warm.values():
            kernel.stop()
        self.context.destroy(linger=0)
        self._tmp.cleanup()

    def peer(self, key):
        """A peer of this run by key, or None if it was skipped."""
        return next((p for p in self.peers if p.key == key), None)

    def kernel(self, peer):
        """A new kernel, not started yet, in a working directory of its own."""
        n = next(self._counter)
        cwd = self.root / f"cwd-{n}"
        cwd.mkdir()
        return BenchKernel(
            peer.kernel, self.spec_manager, self.context, cwd=cwd, options=peer.options, log=self.root / f"{peer.key}-{n}.log"
        )

    def started(self, peer):
        kernel = self.kernel(peer)
        kernel.start()
        kernel.wait_ready()
        return kernel

    def warm(self, peers):
        """{peer: its long-lived kernel}, which has run at least one cell (the sandbox starts its
        bash session on the first). New ones start side by side: starting is mostly waiting."""
        new = [p for p in peers if p not in self._warm]
        for peer in new:
            self._warm[peer] = self.kernel(peer)
            self._warm[peer].start()
        for peer in new:
            self._warm[peer].wait_ready()
            self._warm[peer].run_ok(peer.cell(["true"]))
        return {p: self._warm[p] for p in peers}
