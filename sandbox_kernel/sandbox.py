"""The sandbox: which isolation is in force, what environment crosses into it, and the channel to
its supervisor (supervisor.py), the process inside that starts the kernel's bash sessions.

One sandbox per kernel; every session lives in it. The kernel names sessions, never PIDs: all
signalling happens inside, with the sandbox's own rights.
"""

import asyncio
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_config_path, jupyter_runtime_dir
from traitlets import Enum, Int, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from . import isolation

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
EGRESS_DNS = "10.0.2.3"  # slirp4netns's DNS forwarder
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

    network = Enum(
        ["private", "none", "host"],
        default_value="private",
        help="""The sandbox's network. 'private': a network namespace of its own, so the
        control plane's loopback ports (Jupyter's 8888, the kernel's ports, any local API) can
        be neither reached nor shadowed; loopback works inside and is shared by the sessions.
        'none': the same (no route out). 'host': the host's network, shared: weaker, since cells
        can then reach every local service.""",
    ).tag(config=True)

    sandbox_uid = Int(
        1_960_000_000,
        help="""When the kernel runs as root: the unprivileged uid (and gid) outside that uid 0
        inside the sandbox is. It must belong to nobody else on the machine.""",
    ).tag(config=True)

    protected_ports = List(
        Int(),
        default_value=[8888, 3000],
        help="""TCP ports of the control plane that cells may never bind, in addition to the
        kernel's own ports and the port of every Jupyter server in the runtime directory. Only
        needed with Sandbox.network=host: a private network has no port of the host's.""",
    ).tag(config=True)

    max_processes = Int(
        1024,
        help="""Most processes the sandbox may have at once (RLIMIT_NPROC of its own user
        namespace), so that a fork bomb cannot starve the kernel or the machine.""",
    ).tag(config=True)

    max_memory_bytes = Int(
        int(0.75 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")),
        help="""Memory the whole sandbox may use (a cgroup memory limit), so that the kernel and
        the server survive a cell that takes it all: by default 3/4 of the machine's. 0: none.
        Applied where a cgroup can be made (as root; %sandbox says which limits hold).""",
    ).tag(config=True)

    cpu_percent = Int(
        50,
        help="""The sandbox's CPU weight against the control plane's, in percent (a cgroup CPU
        weight): under contention the kernel and the server get the larger share, so they stay
        responsive; idle CPU is the sandbox's to use.""",
    ).tag(config=True)

    env_passthrough = List(
        Unicode(),
        help="""Names of environment variables of the kernel to pass into the sandbox in
        addition to the built-in allowlist (PATH, HOME, LANG, LC_*, TERM, USER, LOGNAME, SHELL,
        TZ, TMPDIR). JUPYTER_*, JPY_* and other control-plane variables are refused.""",
    ).tag(config=True)

    blocked_syscalls = List(
        Unicode(),
        default_value=["io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf", "perf_event_open",
                       "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                       "open_by_handle_at", "acct", "swapon", "swapoff", "reboot"],
        help="""System calls that fail with EPERM inside the sandbox (a seccomp filter; calls of
        another ABI, i386 or x32, always do). The default refuses kernel attack surface that
        shells do not need and exploits do (io_uring, userfaultfd, bpf, perf_event_open) and what
        needs privileges the sandbox never has. keyctl, add_key, request_key, ptrace and
        personality may be added; [] installs no filter.""",
    ).tag(config=True)

    @validate("blocked_syscalls")
    def _check_syscalls(self, proposal):
        unknown = [n for n in proposal["value"] if n not in isolation.FILTERABLE_SYSCALLS]
        if unknown:
            raise SandboxError(f"Sandbox.blocked_syscalls: {', '.join(map(repr, unknown))} cannot be filtered; "
                               f"choose from {', '.join(isolation.FILTERABLE_SYSCALLS)}")
        return proposal["value"]

    @validate("env_passthrough")
    def _check_passthrough(self, proposal):
        for name in proposal["value"]:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise SandboxError(f"Sandbox.env_passthrough: {name!r} is not a variable name")
            if CONTROL_PLANE_ENV.match(name.upper()):
                raise SandboxError(f"Sandbox.env_passthrough: {name!r} belongs to the control plane and never crosses")
        return proposal["value"]

    @validate("sandbox_uid")
    def _check_uid(self, proposal):
        uid = proposal["value"]
        if not 0 < uid < 2**32 - 1:
            raise SandboxError(f"Sandbox.sandbox_uid: {uid} is not a uid")
        try:
            taken = pwd.getpwuid(uid).pw_name
        except KeyError:
            return uid
        raise SandboxError(f"Sandbox.sandbox_uid: {uid} belongs to the user {taken!r}")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._process = None
        self._socket = None
        self._loop = None
        self._pending = {}  # session id -> future of its spawn
        self._on_exit = {}  # session id -> callback(status)
        self.mode = "off"  # off, isolated, unprotected: what is in force once started
        self.reason = ""  # why 'auto' had to start unprotected
        self.egress = "not asked for"  # or 'ok', or why user-mode networking did not start
        self.cgroups, self.cgroup_errors = [], []  # controllers whose limits hold; why the others do not
        self.plan = None

    # -- the plan -------------------------------------------------------------------------------

    def make_plan(self, workspace, connection_file):
        """Every step of the sandbox, in the order it is applied (supervisor.py carries it out)."""
        uid, gid = os.getuid(), os.getgid()
        as_root = uid == 0
        outside = self.sandbox_uid
        namespaces = ["user", "mount", "pid", "ipc", "uts", "cgroup"] + (["net"] if self.network != "host" else [])
        egress = shutil.which("slirp4netns") if self.network == "private" else None
        home = os.environ.get("HOME", "")
        private = ["/tmp", "/var/tmp", "/dev/shm"]
        masks = _existing_dirs([jupyter_runtime_dir(), *jupyter_config_path(), os.environ.get("XDG_RUNTIME_DIR", "")])
        for mask in masks:
            if _inside(workspace, mask):
                raise SandboxError(f"the notebook directory {workspace} is inside {mask}, which the sandbox hides")
        if not home or home == "/" or not os.path.isdir(home):
            home_step = []
        elif any(_inside(home, p) for p in private):
            home_step = ["ensure_dir", home]  # under a private tmpfs: an empty, writable HOME
        elif os.stat(home).st_uid == uid and not as_root:
            home_step = ["home_overlay", home, "/tmp/.sandbox-home"]  # the user's files, changes kept private
        else:
            home_step = ["private_tmpfs", home]  # not the sandbox's to see
        hidden_dirs = private + ([home] if home_step[:1] == ["private_tmpfs"] else [])
        # What must stay visible where a private tmpfs covers its place: the workspace,
        # read-write; the kernel's own package and Python (the sessions read them), read-only.
        keep = _existing_dirs([str(Path(__file__).parent), sys.prefix, sys.base_prefix])
        keep = [d for d in keep if _covered(d, hidden_dirs, workspace) or _inside(d, workspace)]
        steps = [
            ["make_mounts_private"],
            ["take", workspace],  # before anything covers them; attached below
            *[["take", d] for d in keep],
            ["mount_proc"],
            ["no_nested_user_namespaces"],
            ["read_only_root"],
            *[["private_tmpfs", p] for p in private],
            *([home_step] if home_step else []),
            ["attach", workspace, False],
            *[["attach", d, True] for d in keep],
        ]
        # A mask under a private tmpfs has nothing to cover (and no mount point), unless the
        # workspace, attached after the tmpfs, brings the path back.
        hidden = [m for m in masks if not _covered(m, hidden_dirs, workspace)]
        control_plane = masks + ([connection_file] if connection_file and os.path.isfile(connection_file) else [])
        steps += [["mask", m] for m in hidden]
        if connection_file and os.path.isfile(connection_file) and not _covered(connection_file, hidden_dirs + hidden, workspace):
            steps.append(["mask_file", connection_file])
        steps += [
            ["set_hostname", "sandbox"],
            *([["loopback_up"]] if "net" in namespaces else []),
            *([["resolv_conf", EGRESS_DNS]] if egress else []),
            ["new_session_keyring"],
            ["limit_processes", self.max_processes],
            ["not_dumpable"],
            ["drop_capabilities"],
            *([["deny_binding", self._ports_to_protect(connection_file)]] if self.network == "host" else []),
            *([["filter_syscalls", self.blocked_syscalls]] if self.blocked_syscalls else []),
        ]
        owner = os.stat(workspace)
        return {
            "namespaces": namespaces,
            "uid_map": f"0 {outside} 1\n" if as_root else f"{uid} {uid} 1\n",
            "gid_map": f"0 {outside} 1\n" if as_root else f"{gid} {gid} 1\n",
            "inside_uid": 0 if as_root else uid,
            "inside_gid": 0 if as_root else gid,
            "workspace": workspace,
            # As root, the sandbox's uid outside is not the workspace's owner: an idmapped mount
            # shows the owner's files as the sandbox's, and stores the sandbox's as the owner's.
            "workspace_idmap": {"uid_map": f"{owner.st_uid} {outside} 1\n", "gid_map": f"{owner.st_gid} {outside} 1\n"}
            if as_root else None,
            "egress": egress,
            "limits": {"memory_bytes": self.max_memory_bytes, "cpu_percent": self.cpu_percent, "max_processes": self.max_processes},
            "steps": steps,
            "masked": control_plane,  # each hidden by a mask of its own or a private tmpfs above it
        }

    def _ports_to_protect(self, connection_file):
        ports = set(self.protected_ports)
        sources = [connection_file] if connection_file else []
        runtime = jupyter_runtime_dir()
        if os.path.isdir(runtime):
            sources += [os.path.join(runtime, n) for n in os.listdir(runtime) if n.startswith("jpserver-") and n.endswith(".json")]
        for path in sources:
            try:
                with open(path) as f:
                    info = json.load(f)
            except (OSError, ValueError):
                continue
            ports.update(v for k, v in info.items() if (k == "port" or k.endswith("_port")) and isinstance(v, int))
        return sorted(p for p in ports if 0 < p < 65536)

    # -- what the sandbox is ------------------------------------------------------------------

    @property
    def warning(self):
        if self.mode == "off":
            return "sandbox-kernel: isolation is OFF (Sandbox.isolation=off): cells can see and reach the control plane."
        if self.mode == "unprotected":
            return (
                f"sandbox-kernel: UNPROTECTED: the sandbox could not be built ({self.reason}), so cells can see "
                "and reach the control plane (Jupyter's token, the kernel's connection file). "
                "Set Sandbox.isolation=required to refuse to start instead."
            )
        return ""

    def describe(self):
        """What %sandbox prints: the isolation in force, one fact a line."""
        text = "\n".join(f"{k + ':':17}{v}" for k, v in self._facts()) + "\n"
        return self.warning + "\n" + text if self.warning else text

    def status(self):
        """The same for frontends (the kernel_info reply's "sandbox" field, which the lab
        extension's indicator shows): the mode in force, the warning if any, and the facts."""
        return {"mode": self.mode, "warning": self.warning, "facts": dict(self._facts())}

    def _facts(self):
        env = f"allowlist ({', '.join(ENV_ALLOWLIST)}, LC_*" + "".join(f", {n}" for n in self.env_passthrough) + ")"
        if self.mode != "isolated":
            facts = [("isolation", f"{self.mode} (Sandbox.isolation={self.isolation})"), ("namespaces", "none"),
                     ("user", f"uid {os.getuid()}, as the kernel"), ("network", "the host's"), ("masked paths", "none"),
                     ("protected ports", "none"), ("environment", env)]
        else:
            plan = self.plan
            uid_in, uid_out = plan["uid_map"].split()[:2]
            private = [s[1] for s in plan["steps"] if s[0] == "private_tmpfs"]
            if self.network == "private" and self.egress == "ok":
                network = "private namespace; outbound through slirp4netns (NAT, the host's loopback unreachable)"
            elif self.network == "private":
                why = self.egress if plan["egress"] else "slirp4netns is not installed: apt-get install slirp4netns"
                network = (f"private namespace, loopback only: no route out ({why}); "
                           "for outbound access slirp4netns must be able to open /dev/net/tun, or use Sandbox.network=host (weaker)")
            else:
                network = {"none": "private namespace, loopback only",
                           "host": "the host's (Sandbox.network=host): local services are reachable"}[self.network]
            facts = [
                ("isolation", f"isolated (Sandbox.isolation={self.isolation})"),
                ("namespaces", ", ".join(plan["namespaces"])),
                ("user", f"uid {uid_in} inside = uid {uid_out} outside, no capabilities, no_new_privs"),
                ("network", network),
                ("filesystem", "read-only, except the notebook directory " + plan["workspace"]
                 + " and private " + ", ".join(private)
                 + "".join(f"; {s[1]} copy-on-write" for s in plan["steps"] if s[0] == "home_overlay")),
                ("masked paths", ", ".join(plan["masked"]) or "none"),
                ("protected ports", "all of the host's (own network namespace)" if self.network != "host" else
                 "cannot be bound (Landlock): " + ", ".join(map(str, next(x[1] for x in plan["steps"] if x[0] == "deny_binding")))),
                ("limits", self._limits()),
                ("system calls", "refused (seccomp, EPERM): " + ", ".join(self.blocked_syscalls) + ", and other ABIs"
                 if self.blocked_syscalls else "no filter (Sandbox.blocked_syscalls=[])"),
                ("environment", env),
            ]
        return facts

    def _limits(self):
        held = [f"{self.max_processes} processes (RLIMIT_NPROC{', cgroup pids' if 'pids' in self.cgroups else ''})"]
        if "memory" in self.cgroups:
            held.append(f"{self.max_memory_bytes} bytes of memory (cgroup)")
        if "cpu" in self.cgroups:
            held.append(f"CPU weight {self.cpu_percent}% of the control plane's (cgroup)")
        missing = [e for e in self.cgroup_errors]
        return "; ".join(held) + (f"; not applied: {'; '.join(missing)}" if missing else "")

    def start(self, workspace, connection_file=None):
        """Build the sandbox now (not at the first cell), so that 'required' can refuse to start."""
        if self.isolation != "off":
            try:
                self.plan = self.make_plan(workspace, connection_file)
                self._launch(self.plan)
                self.mode = "isolated"
                return
            except SandboxError as e:
                self.plan = None
                if self.isolation == "required":
                    raise SandboxError(f"Sandbox.isolation=required, but the sandbox cannot be built: {e}; refusing to start") from None
                self.reason = str(e)
                self.mode = "unprotected"
                self.log.warning("%s", self.warning)
        self._launch(None)

    def session_env(self, extra=None):
        source = os.environ
        env = {k: v for k, v in ENV_DEFAULTS.items()}
        for name, value in source.items():
            if name in ENV_ALLOWLIST or name.startswith("LC_") or name in self.env_passthrough:
                env[name] = value
        env.update(extra or {})
        return env

    # -- the supervisor -------------------------------------------------------------------------

    def _launch(self, plan):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SUPERVISOR), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={"PATH": ENV_DEFAULTS["PATH"]},
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.settimeout(20)
        try:
            ours.send(json.dumps(plan).encode())
            first = json.loads(ours.recv(1 << 16) or b"{}")
            if first.get("ev") == "outside":
                self.egress = str(first.get("egress"))[:300]
                self.cgroups = [str(c) for c in first.get("cgroups", [])]
                self.cgroup_errors = [str(e)[:200] for e in first.get("cgroup_errors", [])]
                first = json.loads(ours.recv(1 << 16) or b"{}")
        except (OSError, ValueError) as e:
            first = {"error": f"no answer from the supervisor ({e})"}
        if first.get("ev") != "ready":
            ours.close()
            process.kill()
            process.wait()
            raise SandboxError(str(first.get("error", f"the supervisor ended (status {process.poll()})"))[:500])
        ours.setblocking(False)
        self._process, self._socket = process, ours

    def _listen(self):
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._socket.fileno(), self._receive)

    async def spawn(self, sid, argv, env, cwd, fds, on_exit):
        """Start a bash session inside; raises SandboxError with the supervisor's reason."""
        if self._socket is None:
            raise SandboxError("the sandbox has ended; restart the kernel")
        self._listen()
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
        """The supervisor is gone, and every session with it."""
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


def _existing_dirs(paths):
    return sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})


def _inside(path, directory):
    """path is directory or below it (both absolute)."""
    return os.path.commonpath([os.path.realpath(path), directory]) == directory


def _covered(path, dirs, workspace):
    """path is out of sight under one of dirs, the workspace (attached after them) aside."""
    return any(_inside(path, d) and (not _inside(path, workspace) or _inside(d, workspace)) for d in dirs)
