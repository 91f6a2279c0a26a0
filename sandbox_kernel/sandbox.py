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
import struct
import subprocess
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_runtime_dir
from traitlets import Enum, Int, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from . import filesystem, isolation, network_policy
from .egress import Egress

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
        ["private", "proxy", "none", "host"],
        default_value="private",
        help="""The sandbox's network. 'private': a network namespace of its own, so the
        control plane's loopback ports (Jupyter's 8888, the kernel's ports, any local API) can
        be neither reached nor shadowed; loopback works inside and is shared by the sessions;
        out through slirp4netns (NAT). 'proxy': the same namespace with no route out; cells
        reach only the hosts of Sandbox.allowed_hosts, through an HTTP proxy the kernel runs
        outside (http_proxy and https_proxy point at it). 'none': no route out at all. 'host':
        the host's network, shared: weaker, since cells can then reach every local service.""",
    ).tag(config=True)

    allowed_hosts = List(
        Unicode(),
        help="""With Sandbox.network=proxy: where cells may connect. An entry is a host name
        (pypi.org), its subdomains (*.pythonhosted.org), any name (*), an address (10.1.2.3,
        [fd00::1]) or a network (10.0.0.0/8), with :PORT or :* after it (without one: http://
        to port 80 and tunnels to 443).
        Names are resolved outside and reach public addresses only; private ones need an
        address entry; loopback, link-local and the host's own addresses are never reached.""",
    ).tag(config=True)

    proxy_port = Int(
        3128,
        help="""With Sandbox.network=proxy: the port of the proxy on the sandbox's loopback
        (127.0.0.1 inside; nothing of the host's listens there).""",
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
        Applied where a cgroup can be made below the kernel's: as root on cgroup v1; on v2 where
        the kernel's cgroup is delegated to it and its own (%sandbox says which limits hold).""",
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
                       "open_by_handle_at", "acct", "swapon", "swapoff", "reboot", "keyctl", "add_key", "request_key"],
        help="""System calls that fail with EPERM inside the sandbox (a seccomp filter; calls of
        another ABI, i386 or x32, always do). The default refuses kernel attack surface that
        shells do not need and exploits do (io_uring, userfaultfd, bpf, perf_event_open), the
        kernel keyrings (as a user, the user's own keys would be readable) and what needs
        privileges the sandbox never has. ptrace and personality may be added. Whatever the
        list, the filter refuses setuid and setgid modes (chmod, open, mkdir, mknod) and answers
        openat2 with ENOSYS.""",
    ).tag(config=True)

    home_shared = List(
        Unicode(),
        help="""Entries of HOME (names relative to it, e.g. .gitconfig) that cells may read: HOME
        inside is otherwise a private, empty directory. Shared read-only; start-up files,
        credentials and Jupyter's dirs cannot be named.""",
    ).tag(config=True)

    shared_directory = Unicode(
        "",
        help="""The directory to share read-write with the sandbox, and start cells in, instead of
        the notebook's directory. The same rule holds for both: never /, a system directory,
        /tmp itself, a home directory or a directory holding one, or one that holds start-up
        files, credentials or Jupyter's dirs (%sandbox says why, and what is shown instead).""",
    ).tag(config=True)

    @validate("home_shared")
    def _check_home_shared(self, proposal):
        for name in proposal["value"]:
            parts = name.split("/")
            if name.startswith("/") or ".." in parts or not name.strip("/."):
                raise SandboxError(f"Sandbox.home_shared: {name!r} is not a name below HOME")
            guarded = [p for p in filesystem.HOME_PROTECTED if filesystem.inside(f"/{name.strip('/')}", f"/{p}")
                       or filesystem.inside(f"/{p}", f"/{name.strip('/')}")]
            if guarded:
                raise SandboxError(f"Sandbox.home_shared: {name!r} would show {guarded[0]}, which the sandbox protects")
        return proposal["value"]

    @validate("shared_directory")
    def _check_shared_directory(self, proposal):
        path = proposal["value"]
        if path and not (os.path.isabs(path) and os.path.isdir(path)):
            raise SandboxError(f"Sandbox.shared_directory: {path!r} is not an absolute path to a directory")
        return path

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

    @validate("allowed_hosts")
    def _check_allowed_hosts(self, proposal):
        for text in proposal["value"]:
            try:
                entry = network_policy.parse(text)
            except network_policy.PolicyError as e:
                raise SandboxError(str(e)) from None
            net = entry.network
            never = net and network_policy.refusal(net.network_address, False)
            if never and never == network_policy.refusal(net.broadcast_address, False):
                raise SandboxError(f"Sandbox.allowed_hosts: {text!r} can never be reached ({never})")
        return proposal["value"]

    @validate("proxy_port")
    def _check_proxy_port(self, proposal):
        if not 0 < proposal["value"] < 65536:
            raise SandboxError(f"Sandbox.proxy_port: {proposal['value']} is not a port")
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
        self._terminals = set()  # the ids among them that are terminals
        self._on_exit = {}  # session id -> callback(status)
        self._signalling, self._signal_seq = {}, 0  # seq -> future of a signal request not yet carried out
        self.mode = "off"  # off, isolated, unprotected: what is in force once started
        self.reason = ""  # why 'auto' had to start unprotected
        self.egress = "not asked for"  # or 'ok', or why user-mode networking (or the proxy) did not start
        self.proxy = Egress(self.log)
        self.cgroups, self.cgroup_errors = [], []  # controllers whose limits hold; why the others do not
        self.groups = []  # supplementary groups the sandbox keeps (an unprivileged user cannot drop them)
        self.plan = None

    # -- the plan -------------------------------------------------------------------------------

    def make_plan(self, workspace, connection_file):
        """Every step of the sandbox, in the order it is applied (supervisor.py carries it out;
        what the sandbox sees of the files is filesystem.py's to decide)."""
        uid, gid = os.getuid(), os.getgid()
        as_root = uid == 0
        outside = self.sandbox_uid
        network, refused = self.network, ""
        if network == "host" and isolation.landlock_abi() < 4:
            # Without Landlock's network rules the control plane's ports could be taken over:
            # refuse the host's network, keep the rest of the isolation.
            network = "private"
            refused = (f"Sandbox.network=host refused: protecting the control plane's ports needs Landlock network "
                       f"rules (Linux 6.7; this Linux has Landlock ABI {isolation.landlock_abi()})")
            self.log.warning("sandbox-kernel: %s; the sandbox has a private network instead", refused)
        host = network == "host"
        namespaces = ["user", "mount", "pid", "ipc", "uts", "cgroup"] + ([] if host else ["net"])
        egress = shutil.which("slirp4netns") if network == "private" else None
        files = filesystem.plan(uid=uid, env=os.environ, workspace=workspace, connection_file=connection_file,
                                kept=[str(Path(__file__).parent), sys.prefix, sys.base_prefix], home_shared=self.home_shared,
                                searchable=_searchable_by_others if as_root else _searchable)
        steps = [
            ["make_mounts_private"],
            ["mount_proc"],
            ["no_nested_user_namespaces"],
            *files["steps"],
            ["set_hostname", "sandbox"],
            *([["loopback_up"]] if "net" in namespaces else []),
            *([["resolv_conf", EGRESS_DNS]] if egress else []),  # (with the proxy, cells resolve nothing)
            ["new_session_keyring"],
            ["limit_processes", self.max_processes],
            ["not_dumpable"],
            ["drop_capabilities"],
            *([["deny_binding", self._ports_to_protect(connection_file)]] if host else []),
            ["filter_syscalls", self.blocked_syscalls, host],
            ["verify", files["verify"]],  # with the rights a cell will have
        ]
        shared = files["workspace"] if files["shared"] else None
        owner = os.stat(workspace)
        return {
            "namespaces": namespaces,
            "as_root": as_root,
            "uid_map": f"0 {outside} 1\n" if as_root else f"{uid} {uid} 1\n",
            "gid_map": f"0 {outside} 1\n" if as_root else f"{gid} {gid} 1\n",
            "inside_uid": 0 if as_root else uid,
            "inside_gid": 0 if as_root else gid,
            "shared": shared,
            # As root, the sandbox's uid outside is not the shared directory's owner: an idmapped
            # mount shows the owner's files as the sandbox's, and stores the sandbox's as the owner's.
            "workspace_idmap": {"uid_map": f"{owner.st_uid} {outside} 1\n", "gid_map": f"{owner.st_gid} {outside} 1\n"}
            if as_root and shared else None,
            "network": network,
            "host_refused": refused,
            "landlock_scoping": host and isolation.landlock_abi() >= 6,
            "egress": egress,
            "proxy_port": self.proxy_port if network == "proxy" else None,
            "limits": {"memory_bytes": self.max_memory_bytes, "cpu_percent": self.cpu_percent, "max_processes": self.max_processes},
            "steps": steps,
            "files": {k: v for k, v in files.items() if k not in ("steps", "verify")},
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
        unfiltered = " and every network: Sandbox.allowed_hosts is not enforced" if self.network == "proxy" else ""
        if self.mode == "off":
            return f"sandbox-kernel: isolation is OFF (Sandbox.isolation=off): cells can see and reach the control plane{unfiltered}."
        if self.mode == "unprotected":
            return (
                f"sandbox-kernel: UNPROTECTED: the sandbox could not be built ({self.reason}), so cells can see "
                f"and reach the control plane (Jupyter's token, the kernel's connection file){unfiltered}. "
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
            return [("isolation", f"{self.mode} (Sandbox.isolation={self.isolation})"), ("namespaces", "none"),
                    ("user", f"uid {os.getuid()}, as the kernel"), ("network", "the host's"), ("masked paths", "none"),
                    ("protected ports", "none"), ("environment", env)]
        plan = self.plan
        files = plan["files"]
        uid_in, uid_out = plan["uid_map"].split()[:2]
        if plan["network"] == "proxy":
            network = self._proxied()
        elif plan["network"] == "private" and self.egress == "ok":
            network = "private namespace; outbound through slirp4netns (NAT; the host's own addresses, loopback and link-local unreachable)"
        elif plan["network"] == "private":
            why = self.egress if plan["egress"] else "slirp4netns is not installed: apt-get install slirp4netns"
            needs = ("its guard needs Linux 5.6 and the right to read its memory (ptrace)" if why.startswith("the egress guard")
                     else "slirp4netns must be able to open /dev/net/tun")
            network = f"private namespace, loopback only: no route out ({why}); for outbound access {needs}, or use Sandbox.network=host (weaker)"
        else:
            network = {"none": "private namespace, loopback only",
                       "host": "the host's (Sandbox.network=host): local services are reachable"}[plan["network"]]
        if plan["host_refused"]:
            network = f"{plan['host_refused']}; {network}"
        return [
            ("isolation", f"isolated (Sandbox.isolation={self.isolation})"),
            ("namespaces", ", ".join(plan["namespaces"])),
            ("user", f"uid {uid_in} inside = uid {uid_out} outside, no capabilities, no_new_privs, "
             + (f"supplementary groups kept: {', '.join(map(str, self.groups))}" if self.groups else "no supplementary groups")),
            ("network", network),
            ("filesystem", self._filesystem()),
            ("notebook dir", self._workspace()),
            ("devices", "a /dev of its own: " + ", ".join(filesystem.DEVICES) + ", ptmx (a devpts of its own), shm"),
            ("git", "hooks and config read-only, the .git pinned, in " + ", ".join(files["git_protected"])
             if files["git_protected"] else "no repository in the shared directory (one a cell makes is not protected)"),
            *([("pinned", ", ".join(files["pinned"]) + " (cannot be replaced by a link)")] if files["pinned"] else []),
            ("masked paths", ", ".join(files["masked"]) or "none"),
            ("verified", f"checked inside before the first cell: {len(files['masked'])} masks empty, "
                         "/ and every read-only path refuse writes, /dev holds only the devices above"),
            ("protected ports", "all of the host's (own network namespace)" if plan["network"] != "host" else
             "cannot be bound (Landlock; other stream protocols than TCP refused): "
             + ", ".join(map(str, next(x[1] for x in plan["steps"] if x[0] == "deny_binding")))
             + ("; abstract Unix sockets and signals scoped to the sandbox (Landlock)" if plan["landlock_scoping"] else
                "; abstract Unix sockets of the host reachable (Landlock scoping needs Linux 6.12)")),
            ("limits", self._limits()),
            ("system calls", "refused (seccomp, EPERM): " + "".join(f"{n}, " for n in self.blocked_syscalls)
             + "setuid and setgid modes, other ABIs; openat2 ENOSYS"),
            ("environment", env),
        ]

    def _proxied(self):
        if self.egress != "ok":
            return f"private namespace, loopback only: no route out (the proxy did not start: {self.egress})"
        if not self.proxy.running:
            return "private namespace, loopback only: no route out (the proxy has ended; restart the kernel)"
        to = (", ".join(self.allowed_hosts) + " (Sandbox.allowed_hosts)" if self.allowed_hosts else
              "no host (Sandbox.allowed_hosts is empty): every request is refused")
        return (f"private namespace, no route out; only through the kernel's HTTP proxy at http://127.0.0.1:{self.proxy_port} "
                f"(http_proxy, https_proxy) to {to}; names reach public addresses only, never the host's "
                "own, loopback or link-local; %sandbox network lists the requests")

    def network_report(self):
        """What `%sandbox network` prints: the network, and with the proxy each request made."""
        facts = dict(self._facts())
        text = f"network:         {facts['network']}\n"
        if self.mode != "isolated":
            return text + "(no sandbox: nothing is filtered, nothing is listed)\n"
        if self.plan["network"] != "proxy":
            return text + "(requests are listed with Sandbox.network=proxy)\n"
        return text + (self.proxy.report() if self.egress == "ok" and self.proxy.running else "")

    def _filesystem(self):
        files = self.plan["files"]
        shared = f"the notebook directory {files['workspace']} (read-write), " if files["shared"] else ""
        home = f"; HOME shows only {', '.join(files['home_shared'])} (read-only)" if files["home_shared"] else ""
        return f"read-only, except {shared}private, empty {', '.join(files['private'])}{home}"

    def _workspace(self):
        files = self.plan["files"]
        if files["shared"]:
            return f"{files['workspace']}: shared read-write, files stored as its owner's"
        where = (f"a private, empty {files['cwd']} (changes stay in the sandbox)"
                 if any(filesystem.inside(files["cwd"], p) for p in files["private"]) else f"{files['cwd']}, read-only")
        return (f"{files['workspace']}: not shared ({files['not_shared_because']}); cells start in {where}. To share "
                "files, open the notebook from a project directory, or set Sandbox.shared_directory")

    @property
    def notice(self):
        """What the first cell says besides a warning: a notebook directory that is not shared."""
        if self.mode == "isolated" and not self.plan["files"]["shared"]:
            return "sandbox-kernel: notebook directory " + self._workspace()
        return ""

    @property
    def cwd(self):
        """Where cells start: the shared directory, or what the sandbox shows in its place."""
        return self.plan["files"]["cwd"] if self.mode == "isolated" else os.getcwd()

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
        if self.allowed_hosts and self.network != "proxy":
            raise SandboxError(f"Sandbox.allowed_hosts is set, but Sandbox.network={self.network} does not filter: "
                               "set Sandbox.network=proxy")
        if self.isolation != "off":
            try:
                try:
                    self.plan = self.make_plan(self.shared_directory or workspace, connection_file)
                except OSError as e:
                    raise SandboxError(f"planning the sandbox: {e}") from None
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
        env.update(self.proxy.env())
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
            data, fds = _receive_with_fds(ours)
            first = json.loads(data or b"{}")
            if first.get("ev") == "outside":
                self.egress = str(first.get("egress"))[:300]
                self.cgroups = [str(c) for c in first.get("cgroups", [])]
                self.cgroup_errors = [str(e)[:400] for e in first.get("cgroup_errors", [])]
                self.groups = [int(g) for g in first.get("groups", []) if isinstance(g, int)]
                for fd in fds:
                    os.close(fd)
                data, fds = _receive_with_fds(ours)
                first = json.loads(data or b"{}")
        except (OSError, ValueError) as e:
            first, fds = {"error": f"no answer from the supervisor ({e})"}, []
        proxied = first.get("ev") == "ready" and plan and plan["proxy_port"]
        if proxied and len(fds) == 1:
            # Made by the sandbox's first process before any cell ran: its listening socket.
            self.egress = self.proxy.start(fds.pop(), plan["proxy_port"], list(self.allowed_hosts), plan["as_root"])
        elif proxied:
            self.egress = "the sandbox passed no listening socket"
        for fd in fds:
            os.close(fd)
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
            self.proxy.listen(self._loop)

    async def spawn(self, sid, argv, env, cwd, fds, on_exit, terminal=None):
        """Start a bash session inside, or with terminal=(rows, cols) and no fds a shell on a
        terminal of the sandbox's own, whose master fd this returns. Raises SandboxError with
        the supervisor's reason."""
        if self._socket is None:
            raise SandboxError("the sandbox has ended; restart the kernel")
        self._listen()
        future = self._pending[sid] = self._loop.create_future()
        self._on_exit[sid] = on_exit
        request = {"op": "spawn", "id": sid, "argv": argv, "env": env, "cwd": cwd}
        if terminal:
            request["terminal"] = list(terminal)
            self._terminals.add(sid)
        message = json.dumps(request).encode()
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
            self._terminals.discard(sid)

    def signal(self, sid, what):
        """Ask the supervisor to signal a session; a future done once it has (or never can)."""
        if self._socket is None:
            return _done()
        self._listen()
        self._signal_seq += 1
        seq = self._signal_seq
        try:
            self._socket.send(json.dumps({"op": "signal", "id": sid, "what": what, "seq": seq}).encode())
        except OSError:
            return _done()
        future = self._signalling[seq] = self._loop.create_future()
        future.add_done_callback(lambda _f: self._signalling.pop(seq, None))
        return future

    def _delivered(self, seq=None):
        """The supervisor carried out signal request seq (None: all, it is gone)."""
        for key in [seq] if seq is not None else list(self._signalling):
            future = self._signalling.pop(key, None)
            if future is not None and not future.done():
                future.set_result(None)

    def _receive(self):
        while True:
            try:
                data, fds = _receive_with_fds(self._socket)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._lost()
                return
            try:
                event = json.loads(data)
                kind, sid = event["ev"], str(event.get("id"))
            except (ValueError, KeyError, TypeError):
                self.log.warning("sandbox-kernel: ignoring a malformed message from the sandbox")
                kind = sid = None
            future = self._pending.get(sid)
            if kind == "spawned" and future and not future.done():
                # A terminal's master comes with its event; a fd with any other message is closed.
                if sid not in self._terminals:
                    future.set_result(None)
                elif len(fds) == 1:
                    future.set_result(fds.pop())
                else:
                    future.set_exception(SandboxError("the sandbox started the terminal but passed no terminal"))
            elif kind == "spawn_failed" and future and not future.done():
                future.set_exception(SandboxError(str(event.get("error", "unknown error"))[:500]))
            elif kind == "signalled" and isinstance(event.get("seq"), int):
                self._delivered(event["seq"])
            elif kind == "exited" and sid in self._on_exit:
                status = event.get("status")
                self._on_exit.pop(sid)(status if isinstance(status, int) else -1)
            for fd in fds:
                os.close(fd)

    def _lost(self):
        """The supervisor is gone, and every session with it."""
        self.log.warning("sandbox-kernel: the sandbox supervisor ended")
        self.stop()
        self._delivered()
        for sid, callback in list(self._on_exit.items()):
            self._on_exit.pop(sid, None)
            callback(-9)

    def stop(self):
        """End the sandbox and everything in it (the supervisor kills all it started)."""
        self.proxy.stop()
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


def _done():
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _searchable(directory):
    """For a kernel run by a user: the sandbox has this process's uid and groups."""
    return os.access(directory, os.X_OK)


def _searchable_by_others(directory):
    """For a kernel run as root: the sandbox's uid outside owns nothing and has no groups, so only
    the bits for others count (a directory that an ACL opens to it is made private all the same)."""
    try:
        return bool(os.stat(directory).st_mode & 0o001)
    except OSError:
        return False


def _receive_with_fds(sock, maxfds=4):
    """One message and the fds that came with it, close-on-exec (socket.recv_fds drops its flags)."""
    data, ancillary, _flags, _addr = sock.recvmsg(1 << 16, socket.CMSG_SPACE(maxfds * 4), socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) - len(payload) % 4]))
    return data, fds
