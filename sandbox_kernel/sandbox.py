"""The sandbox: which isolation is in force, what environment crosses into it, and the channel to
its supervisor (supervisor.py), the process inside that starts the kernel's bash sessions.

One sandbox per kernel; every session lives in it. The kernel names sessions, never PIDs: all
signalling happens inside, with the sandbox's own rights.
"""

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from traitlets import Enum, List, Unicode, validate
from traitlets.config import LoggingConfigurable

SUPERVISOR = Path(__file__).with_name("supervisor.py")

# What crosses into the sandbox's environment: these names, LC_*, the user's env_passthrough and a
# session's own --env. Nothing else: the kernel's environment holds control-plane secrets.
ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LANGUAGE", "TERM", "USER", "LOGNAME", "SHELL", "TZ", "TMPDIR")
ENV_DEFAULTS = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TERM": "xterm-256color",
    "SHELL": "/bin/bash",
    "PAGER": "cat",  # a notebook has no terminal to page on
}
CONTROL_PLANE_ENV = re.compile(r"^(JUPYTER|JPY|KERNEL|IPY)_|^(JUPYTER|JPY)")


class SandboxError(Exception):
    """The sandbox cannot do what was asked; the message is for the user, one line."""


class Sandbox(LoggingConfigurable):
    isolation = Enum(
        ["auto", "required", "off"],
        default_value="auto",
        help="""How cells are isolated from the control plane. 'required': refuse to start
        unless the sandbox can be built. 'auto': isolate where possible, otherwise start in an
        unprotected mode that is reported everywhere (banner, first cell, %sandbox). 'off':
        development only, no isolation, and said so.""",
    ).tag(config=True)

    env_passthrough = List(
        Unicode(),
        help="""Names of environment variables of the kernel to pass into the sandbox in
        addition to the built-in allowlist (PATH, HOME, LANG, LC_*, TERM, USER, LOGNAME, SHELL,
        TZ, TMPDIR). JUPYTER_*, JPY_* and other control-plane variables are refused.""",
    ).tag(config=True)

    @validate("env_passthrough")
    def _check_passthrough(self, proposal):
        for name in proposal["value"]:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise SandboxError(f"Sandbox.env_passthrough: {name!r} is not a variable name")
            if CONTROL_PLANE_ENV.match(name.upper()):
                raise SandboxError(f"Sandbox.env_passthrough: {name!r} belongs to the control plane and never crosses")
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._process = None
        self._socket = None
        self._loop = None
        self._pending = {}  # session id -> future of its spawn
        self._on_exit = {}  # session id -> callback(status)

    # -- what the sandbox is ------------------------------------------------------------------

    @property
    def mode(self):
        """What is in force: 'off' (asked for) or 'unprotected' (isolation not available)."""
        return "off" if self.isolation == "off" else "unprotected"

    @property
    def warning(self):
        if self.mode == "off":
            return "sandbox-kernel: isolation is OFF (Sandbox.isolation=off): cells can see and reach the control plane."
        return (
            "sandbox-kernel: UNPROTECTED: this kernel cannot isolate cells yet, so they can see and reach "
            "the control plane (Jupyter's token, the kernel's connection file). Set Sandbox.isolation=required "
            "to refuse to start instead."
        )

    def describe(self):
        """What %sandbox prints: the isolation in force, one fact a line."""
        facts = [
            ("isolation", f"{self.mode} (Sandbox.isolation={self.isolation})"),
            ("namespaces", "none"),
            ("user", f"uid {os.getuid()}, as the kernel"),
            ("network", "the host's"),
            ("masked paths", "none"),
            ("protected ports", "none"),
            ("environment", f"allowlist ({', '.join(ENV_ALLOWLIST)}, LC_*"
             + "".join(f", {n}" for n in self.env_passthrough) + ")"),
        ]
        text = "\n".join(f"{k + ':':17}{v}" for k, v in facts) + "\n"
        return text if self.mode not in ("off", "unprotected") else self.warning + "\n" + text

    def check(self):
        """Fail closed: with isolation required, starting without it is an error."""
        if self.isolation == "required":
            raise SandboxError(
                "Sandbox.isolation=required, but this build of sandbox-kernel cannot isolate cells "
                "(namespaces are not implemented yet); refusing to start"
            )

    def session_env(self, extra=None):
        source = os.environ
        env = {k: v for k, v in ENV_DEFAULTS.items()}
        for name, value in source.items():
            if name in ENV_ALLOWLIST or name.startswith("LC_") or name in self.env_passthrough:
                env[name] = value
        env.update(extra or {})
        return env

    # -- the supervisor -------------------------------------------------------------------------

    def _start_supervisor(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SUPERVISOR), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={"PATH": ENV_DEFAULTS["PATH"]},
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ours.fileno(), self._receive)

    async def spawn(self, sid, argv, env, cwd, fds, on_exit):
        """Start a bash session inside; raises SandboxError with the supervisor's reason."""
        if self._socket is None:
            self._start_supervisor()
        future = self._pending[sid] = self._loop.create_future()
        self._on_exit[sid] = on_exit
        message = json.dumps({"op": "spawn", "id": sid, "argv": argv, "env": env, "cwd": cwd}).encode()
        try:
            socket.send_fds(self._socket, [message], fds)
            return await asyncio.wait_for(future, 10)
        except (OSError, asyncio.TimeoutError) as e:
            raise SandboxError(f"the sandbox did not start session {sid}: {e}") from None
        except SandboxError:
            self._on_exit.pop(sid, None)
            raise
        finally:
            self._pending.pop(sid, None)

    def signal(self, sid, what):
        if self._socket is None:
            return
        try:
            self._socket.send(json.dumps({"op": "signal", "id": sid, "what": what}).encode())
        except OSError:
            pass

    def _receive(self):
        while True:
            try:
                data = self._socket.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            try:
                event = json.loads(data)
                kind, sid = event["ev"], str(event.get("id"))
            except (ValueError, KeyError, TypeError):
                self.log.warning("sandbox-kernel: ignoring a malformed message from the sandbox")
                continue
            future = self._pending.get(sid)
            if kind == "spawned" and future and not future.done():
                future.set_result(None)
            elif kind == "spawn_failed" and future and not future.done():
                future.set_exception(SandboxError(str(event.get("error", "unknown error"))[:500]))
            elif kind == "exited" and sid in self._on_exit:
                status = event.get("status")
                self._on_exit.pop(sid)(status if isinstance(status, int) else -1)

    def _lost(self):
        """The supervisor is gone: every session with it. The next spawn starts a new one."""
        self.log.warning("sandbox-kernel: the sandbox supervisor ended")
        self.stop()
        for sid, callback in list(self._on_exit.items()):
            self._on_exit.pop(sid, None)
            callback(-9)

    def stop(self):
        """End the sandbox and everything in it (the supervisor kills all it started)."""
        if self._socket is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        if self._process is not None:
            try:
                self._process.wait(2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
