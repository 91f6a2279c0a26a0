"""The kernel's side of Sandbox.network=proxy: it starts the proxy (egress_proxy.py) on the
listening socket the sandbox made on its loopback, ends it with the sandbox, and keeps a tally
of what cells asked for, for `%sandbox network`."""

import collections
import json
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
KEPT = 50  # distinct requests remembered (host, port, verdict): the most recent ones
LINE_LIMIT = 4096


class Egress:
    def __init__(self, log):
        self.log = log
        self.process = None
        self.address = None  # (host, port) inside the sandbox
        self.requests = collections.OrderedDict()  # (host, port, allowed) -> [count, why]
        self._buffer = b""
        self._loop = None

    def start(self, listener_fd, port, entries, as_root):
        """Serve the sandbox's listening socket; 'ok' or why not (the sandbox then has no way
        out). The fd came from the sandbox's first process before any cell ran; it is still
        checked to be a TCP socket listening on the loopback port the plan gave it."""
        try:
            listener = socket.socket(fileno=listener_fd)
        except OSError as e:
            os.close(listener_fd)
            return f"the sandbox passed no socket ({e.strerror})"
        with listener:
            try:
                bound = listener.getsockname()
                listening = listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            except OSError as e:
                return f"the sandbox passed no socket ({e.strerror})"
            if listener.family != socket.AF_INET or listener.type != socket.SOCK_STREAM or not listening \
                    or bound != ("127.0.0.1", port):
                return f"the sandbox passed no TCP socket listening on 127.0.0.1:{port}"
            try:
                nobody = pwd.getpwnam("nobody") if as_root else None
            except KeyError:
                return "the proxy did not start: as root it runs as nobody, and this system has no user nobody"
            code_r, code_w = os.pipe()
            try:
                # It becomes nobody itself, once loaded: as nobody it might not read the
                # package's files, nor run the kernel's python (under /root, say). Its code
                # comes through a pipe. No stderr: cells' requests must not write the kernel's log.
                self.process = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", "import sys; exec(open(int(sys.argv[1])).read())", str(code_r),
                     str(listener.fileno()), f"{nobody.pw_uid}:{nobody.pw_gid}" if nobody else "-", json.dumps(entries)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    pass_fds=(code_r, listener.fileno()),
                    cwd="/", env={"PATH": "/usr/bin:/bin"}, start_new_session=True,
                )
                os.write(code_w, _program().encode())  # about 20 kB: it fits the pipe, so this never waits
            except (OSError, subprocess.SubprocessError) as e:
                return f"the proxy did not start ({e})"
            finally:
                os.close(code_r)
                os.close(code_w)
        os.set_blocking(self.process.stdout.fileno(), False)
        self.address = ("127.0.0.1", port)
        return "ok"

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def listen(self, loop):
        if self.process is not None and self._loop is None:
            self._loop = loop
            loop.add_reader(self.process.stdout.fileno(), self._read)

    def _read(self):
        try:
            data = os.read(self.process.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self._loop.remove_reader(self.process.stdout.fileno())
            try:
                self.process.wait(1)  # it is exiting (its stdout closed): reaped now, not left a zombie
            except subprocess.TimeoutExpired:
                pass
            self.log.warning("sandbox-kernel: the sandbox's proxy ended; the sandbox has no way out")
            return
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        self._buffer = self._buffer[-LINE_LIMIT:]
        for line in lines:
            try:
                event = json.loads(line)
                key = (_printable(event["host"])[:253], int(event["port"]), bool(event["allowed"]))
                why = _printable(event["why"])[:300]
            except (ValueError, KeyError, TypeError):
                continue
            count = self.requests.pop(key, [0, ""])[0] + 1
            self.requests[key] = [count, why]
            while len(self.requests) > KEPT:
                self.requests.popitem(last=False)

    def env(self):
        """How cells find the proxy: the variables curl, pip, git, npm, wget and Python honour."""
        if self.address is None:
            return {}
        url = "http://%s:%d" % self.address
        local = "localhost,127.0.0.1,::1"
        return {"http_proxy": url, "https_proxy": url, "HTTP_PROXY": url, "HTTPS_PROXY": url,
                "no_proxy": local, "NO_PROXY": local}

    def report(self):
        """The requests cells made, most recent last, one a line."""
        if not self.requests:
            return "no request through the proxy yet\n"
        width = max(len(f"{h}:{p}") for h, p, _a in self.requests)
        return "".join(f"{'allowed' if allowed else 'refused'}  {f'{host}:{port}':{width}}  {count:>5}x  {why}\n"
                       for (host, port, allowed), (count, why) in self.requests.items())

    def stop(self):
        if self.process is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self.process.stdout.fileno())
        self.process.stdin.close()  # its lifeline
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process = None


def _program():
    """egress_proxy.py to run as __main__, with network_policy.py importable."""
    policy, proxy = (HERE / "network_policy.py").read_text(), (HERE / "egress_proxy.py").read_text()
    return ("import sys, types\nsys.modules['network_policy'] = policy = types.ModuleType('network_policy')\n"
            f"exec(compile({policy!r}, 'network_policy.py', 'exec'), policy.__dict__)\n"
            f"exec(compile({proxy!r}, 'egress_proxy.py', 'exec'), {{'__name__': '__main__'}})\n")


def _printable(value):
    """A field of the proxy's, as text that cannot start a line or a terminal sequence of its own."""
    return "".join(c if c.isprintable() else "?" for c in str(value))
