"""Driving a real sandbox kernel process through jupyter_client, and what a user would see."""

import dataclasses
import os
import threading
import time

from jupyter_client import KernelManager

KERNEL_NAME = "sandbox"


@dataclasses.dataclass
class Result:
    reply: dict
    metadata: dict
    messages: list  # (seconds since the request, msg_type, content)
    elapsed: float
    input_requests: list

    @property
    def status(self):
        return self.reply["status"]

    @property
    def ename(self):
        return self.reply.get("ename")

    @property
    def evalue(self):
        return self.reply.get("evalue")

    def text(self, name):
        return "".join(c["text"] for _t, kind, c in self.messages if kind == "stream" and c["name"] == name)

    @property
    def stdout(self):
        return self.text("stdout")

    @property
    def stderr(self):
        return self.text("stderr")

    def streams(self, name=None):
        return [(t, c) for t, kind, c in self.messages if kind == "stream" and (name is None or c["name"] == name)]

    @property
    def errors(self):
        return [c for _t, kind, c in self.messages if kind == "error"]

    @property
    def displays(self):
        return [c for _t, kind, c in self.messages if kind == "display_data"]


class Kernel:
    """One kernel process, started as Jupyter would start it (the installed kernelspec)."""

    def __init__(self, cwd, options=(), env=None):
        self.km = KernelManager(kernel_name=KERNEL_NAME)
        self.km.start_kernel(cwd=str(cwd), extra_arguments=list(options), env=env or dict(os.environ))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.cwd = cwd
        # The first cell carries the kernel's notice about its isolation mode; tests that look
        # for it read it here, the others see clean output.
        self.first = self.run("true")

    @property
    def pid(self):
        return self.km.provisioner.process.pid

    def run(self, code, timeout=60, stdin=None, interrupt_after=None):
        """Execute a cell; stdin: None (no stdin, like nbclient) or a callable prompt, password -> str."""
        messages, inputs = [], []
        start = time.monotonic()

        def on_output(msg):
            messages.append((time.monotonic() - start, msg["msg_type"], msg["content"]))

        def on_stdin(msg):
            inputs.append(msg["content"])
            self.kc.input(stdin(msg["content"]["prompt"], msg["content"]["password"]))

        timer = None
        if interrupt_after is not None:
            timer = threading.Timer(interrupt_after, self.km.interrupt_kernel)
            timer.start()
        try:
            reply = self.kc.execute_interactive(
                code,
                timeout=timeout,
                output_hook=on_output,
                allow_stdin=stdin is not None,
                stdin_hook=on_stdin if stdin is not None else None,
            )
        finally:
            if timer is not None:
                timer.cancel()
        return Result(reply["content"], reply["metadata"], messages, time.monotonic() - start, inputs)

    def request(self, method, *args):
        """A shell request (complete, inspect, is_complete, kernel_info); its reply's content."""
        msg_id = getattr(self.kc, method)(*args)
        while True:
            reply = self.kc.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def shutdown(self):
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=False)


def processes_named(fragment):
    """PIDs of processes whose command line contains fragment (as the host sees them)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if fragment.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
