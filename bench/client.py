"""One kernel process, started and driven through jupyter_client, with a clock on every message
that comes back for a cell."""

import dataclasses
import time
from pathlib import Path

import zmq
from jupyter_client import KernelManager

# libzmq retries a connection to a port nobody listens on yet every 100 ms; a kernel that is
# still starting would then be seen up to 100 ms late. 10 ms keeps that error below the figures,
# and it is the same for every kernel.
RECONNECT_INTERVAL_MS = 10
CELL_TIMEOUT = 60  # seconds; only a broken kernel takes that long for one of the bench's cells


@dataclasses.dataclass
class CellRun:
    """Timestamps (time.perf_counter) of one execute_request and of what answered it."""

    sent: float
    reply_at: float | None = None
    idle_at: float | None = None
    first_stream_at: float | None = None
    last_stream_at: float | None = None
    stream_bytes: int = 0  # UTF-8 bytes of the stream messages' text
    stream_messages: int = 0
    status: str | None = None  # the execute_reply's
    text: list | None = None  # the streams' text, when the caller asked to keep it

    @property
    def finished(self):
        return self.reply_at is not None and self.idle_at is not None

    @property
    def round_trip(self):
        """Sending the request until both its execute_reply and its idle status are in."""
        return max(self.reply_at, self.idle_at) - self.sent

    @property
    def first_stream(self):
        return self.first_stream_at - self.sent

    @property
    def last_stream(self):
        return self.last_stream_at - self.sent


class BenchKernel:
    def __init__(self, kernel_name, spec_manager, context, *, cwd, options=(), log):
        self.kernel_name = kernel_name
        self.km = KernelManager(kernel_name=kernel_name, kernel_spec_manager=spec_manager)
        self.context = context
        self.cwd = cwd
        self.options = list(options)
        self.log_path = Path(log)
        self.kc = None

    def start(self):
        """Launch the kernel and open the channels. No kernel_info wait here (wait_ready does
        that), so that start-up can be timed to the first reply alone."""
        with open(self.log_path, "ab") as log:
            # The kernels' own chatter (TCP warnings, the sandbox's notice) goes to a log file,
            # which is quoted if the kernel dies.
            self.km.start_kernel(cwd=str(self.cwd), extra_arguments=self.options, stdout=log, stderr=log)
        self.kc = self.km.client(context=self.context)
        self.kc.start_channels()

    def wait_ready(self, timeout=60):
        try:
            self.kc.wait_for_ready(timeout=timeout)
        except RuntimeError as e:
            raise RuntimeError(f"kernel {self.kernel_name!r} did not start: {e}\n{self._log_tail()}") from None

    @property
    def pid(self):
        return self.km.provisioner.process.pid

    def peak_rss(self):
        """VmHWM of the kernel process, in bytes: the most memory it has held at once so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmHWM in /proc/{self.pid}/status")

    def run(self, code, *, timeout, until_idle=True, keep_text=False):
        """Execute a cell and time what comes back. Gives up at the timeout with what it has: an
        unfinished run leaves the kernel busy, so the caller then stops it with stop(now=True).
        until_idle=False returns at the execute_reply (the iopub subscription of a kernel that is
        still starting may miss the first status messages)."""
        shell, iopub = self.kc.shell_channel, self.kc.iopub_channel
        poller = zmq.Poller()
        poller.register(shell.socket, zmq.POLLIN)
        poller.register(iopub.socket, zmq.POLLIN)
        run = CellRun(sent=time.perf_counter(), text=[] if keep_text else None)
        msg_id = self.kc.execute(code, allow_stdin=False)
        deadline = run.sent + timeout
        while run.reply_at is None or (until_idle and run.idle_at is None):
            left = deadline - time.perf_counter()
            if left <= 0:
                return run
            # Wake at least once a second to notice a kernel that died.
            if not poller.poll(min(left, 1.0) * 1000):
                if not self.km.is_alive():
                    raise RuntimeError(f"kernel {self.kernel_name!r} died during a cell\n{self._log_tail()}")
                continue
            while iopub.msg_ready():
                self._take_iopub(iopub.get_msg(timeout=0), msg_id, run)
            while shell.msg_ready():
                msg = shell.get_msg(timeout=0)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_reply":
                    run.reply_at = time.perf_counter()
                    run.status = msg["content"]["status"]
        return run

    def run_ok(self, code, timeout=CELL_TIMEOUT, keep_text=False):
        """A cell that has to finish and succeed (warm-up, the figures' repeated cells)."""
        run = self.run(code, timeout=timeout, keep_text=keep_text)
        if not run.finished:
            raise RuntimeError(f"kernel {self.kernel_name!r}: cell did not finish in {timeout} s: {code!r}")
        if run.status != "ok":
            raise RuntimeError(f"kernel {self.kernel_name!r}: cell {code!r} ended with status {run.status!r}")
        return run

    @staticmethod
    def _take_iopub(msg, msg_id, run):
        if msg["parent_header"].get("msg_id") != msg_id:
            return  # a message of an earlier request
        now = time.perf_counter()
        if msg["msg_type"] == "stream":
            if run.first_stream_at is None:
                run.first_stream_at = now
            run.last_stream_at = now
            run.stream_bytes += len(msg["content"]["text"].encode("utf-8", "surrogatepass"))
            run.stream_messages += 1
            if run.text is not None:
                run.text.append(msg["content"]["text"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            run.idle_at = now

    def stop(self, now=False):
        """now=True: kill it (a kernel left busy by an unfinished cell would not answer)."""
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=now)

    def _log_tail(self):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "kernel log:\n" + "\n".join(lines[-20:])
