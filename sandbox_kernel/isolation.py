"""The Linux calls that build the sandbox, one function per step, each failing with an error that
names its step. sandbox.py decides which steps run and in what order; supervisor.py runs them.

Standard library and ctypes only: this module is imported by the supervisor (`python -I -S`).
"""

import ctypes
import ctypes.util
import errno
import fcntl
import os
import platform
import resource
import socket
import stat
import struct

_libc = ctypes.CDLL(None, use_errno=True)

CLONE = {
    "user": 0x10000000,
    "mount": 0x00020000,
    "pid": 0x20000000,
    "net": 0x40000000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "cgroup": 0x02000000,
}
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_IDMAP = 0x1, 0x00100000
AT_EMPTY_PATH, AT_RECURSIVE = 0x1000, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 4, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"
KEYCTL_JOIN_SESSION_KEYRING = 1
# Syscalls without a glibc wrapper; numbers from 424 on are the same on every architecture.
SYS = {
    "open_tree": 428,
    "move_mount": 429,
    "mount_setattr": 442,
    "capset": {"x86_64": 126, "aarch64": 91}.get(platform.machine()),
    "keyctl": {"x86_64": 250, "aarch64": 219}.get(platform.machine()),
    "landlock_create_ruleset": 444,
    "landlock_add_rule": 445,
    "landlock_restrict_self": 446,
    "seccomp": {"x86_64": 317, "aarch64": 277}.get(platform.machine()),
    "pidfd_getfd": 438,
}
LANDLOCK_CREATE_RULESET_VERSION, LANDLOCK_ACCESS_NET_BIND_TCP, LANDLOCK_RULE_NET_PORT = 1, 1, 2
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET, LANDLOCK_SCOPE_SIGNAL = 1, 2
# System calls a seccomp filter can refuse: (x86_64, aarch64) numbers.
FILTERABLE_SYSCALLS = {
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "userfaultfd": (323, 282), "bpf": (321, 280), "perf_event_open": (298, 241),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "open_by_handle_at": (304, 265), "acct": (163, 89), "swapon": (167, 224), "swapoff": (168, 225),
    "reboot": (169, 142), "ptrace": (101, 117), "personality": (135, 92),
}
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_RET_USER_NOTIF = 1, 8, 0x7FC00000
# Calls that send to an address a process names: (x86_64, aarch64) numbers.
SENDING_CALLS = {"connect": (42, 203), "sendto": (44, 206), "sendmsg": (46, 211), "sendmmsg": (307, 269)}


class IsolationError(Exception):
    """A step failed; the message names the step and the reason."""


def _check(result, step):
    if result == -1:
        err = ctypes.get_errno()
        raise IsolationError(f"{step}: {os.strerror(err)} ({errno.errorcode.get(err, err)})")
    return result


def _syscall(name, *args):
    number = SYS[name]
    if number is None:
        raise IsolationError(f"{name}: not supported on {platform.machine()}")
    return _libc.syscall(ctypes.c_long(number), *args)


# -- namespaces and identities ------------------------------------------------------------------


def unshare(kinds):
    flags = 0
    for kind in kinds:
        flags |= CLONE[kind]
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({', '.join(kinds)})")


def write_id_maps(pid, uid_map, gid_map):
    """Maps of a child's new user namespace, written from the parent namespace."""
    try:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(uid_map)
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(gid_map)
    except OSError as e:
        raise IsolationError(f"user namespace id maps ({uid_map.strip()!r}): {e.strerror}") from None


def become(uid, gid):
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise IsolationError(f"switch to uid {uid} inside the sandbox: {e.strerror}") from None


def idmapped_tree(path, userns_fd):
    """A detached copy of the mount at path whose files' owners are seen through userns_fd's
    maps (MOUNT_ATTR_IDMAP): needs CAP_SYS_ADMIN where the mount lives (root outside)."""
    fd = _check(_syscall("open_tree", -100, path.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
                f"open_tree({path})")
    attr = struct.pack("QQQQ", MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    buf = ctypes.create_string_buffer(attr)
    _check(_syscall("mount_setattr", fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, buf, len(attr)),
           f"idmapped mount of {path} (mount_setattr MOUNT_ATTR_IDMAP)")
    return fd


def clone_tree(path):
    return _check(_syscall("open_tree", -100, path.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
                  f"open_tree({path})")


def attach_tree(fd, path):
    _check(_syscall("move_mount", fd, b"", -100, path.encode(), MOVE_MOUNT_F_EMPTY_PATH), f"attach {path}")
    os.close(fd)


# -- mounts -------------------------------------------------------------------------------------


def _mount(source, target, fstype, flags, data, step):
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), step)


def make_mounts_private():
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None, "make every mount private")


def mount_proc():
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "mount a proc of the sandbox's own PID namespace on /proc")


def no_nested_user_namespaces():
    """A user namespace inside would give back capabilities over new namespaces: kernel attack
    surface the sandbox does not need."""
    try:
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
    except OSError as e:
        raise IsolationError(f"forbid nested user namespaces: {e.strerror}") from None


def read_only(path, recursive=True):
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr)
    _check(_syscall("mount_setattr", -100, path.encode(), AT_RECURSIVE if recursive else 0, buf, len(attr)),
           f"make {path} read-only")


def read_only_root():
    read_only("/")


def ensure_dir(path):
    """Mount points under a fresh tmpfs may have to be made first."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise IsolationError(f"make mount point {path}: {e.strerror}") from None


def _ensure_file(path):
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    except OSError as e:
        raise IsolationError(f"make mount point {path}: {e.strerror}") from None


def private_tmpfs(path):
    ensure_dir(path)
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", f"private tmpfs on {path}")


def _unless_unreachable(mount):
    """A path the sandbox's own uid cannot even reach (a 0700 directory of another user's on the
    way) has nothing to show, and needs no mask."""
    try:
        mount()
    except IsolationError:
        if ctypes.get_errno() != errno.EACCES:
            raise


def mask(path):
    """An empty, read-only tmpfs over path."""
    _unless_unreachable(lambda: _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                                       "mode=755,size=4k", f"mask {path}"))


def mask_file(path):
    _unless_unreachable(lambda: bind("/dev/null", path, f"mask {path}"))


def private_dev(devices, links):
    """A /dev of the sandbox's own, as bubblewrap's --dev makes it: the harmless devices (bound
    from the host's), a devpts instance of its own behind /dev/ptmx, a private /dev/shm, and the
    usual links; nothing else of the host's (no terminals, disks, /dev/kmsg, /dev/kvm)."""
    nodes = {name: clone_tree(f"/dev/{name}") for name in devices}
    _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k", "a /dev of the sandbox's own")
    for name, fd in nodes.items():
        _ensure_file(f"/dev/{name}")
        attach_tree(fd, f"/dev/{name}")
    ensure_dir("/dev/pts")
    _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620",
           "a devpts of the sandbox's own on /dev/pts")
    ensure_dir("/dev/shm")
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", "private tmpfs on /dev/shm")
    for name, target in links.items():
        os.symlink(target, f"/dev/{name}")
    read_only("/dev", recursive=False)


def attach(fd, path, read_only_):
    """Attach a tree taken earlier (clone_tree, idmapped_tree) at path, made read-only if asked."""
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        ensure_dir(path)
    else:
        _ensure_file(path)
    attach_tree(fd, path)
    if read_only_:
        read_only(path)


def pin(path):
    """A directory becomes a mount point of itself, which can be neither renamed nor removed."""
    bind(path, path, f"pin {path}")


def protect_git(git, paths):
    """What git runs on the host (hooks, config) read-only; the .git directory itself becomes a
    mount point, which can be neither renamed nor removed, so no other .git takes its place."""
    if os.path.isdir(git):
        pin(git)
        ensure_dir(f"{git}/hooks")  # with the sandbox's own rights, as git init would: else a cell could
    for path in paths:
        if not os.path.lexists(path):
            continue
        bind(path, path, f"protect {path}")
        read_only(path)


def bind(source, target, step):
    _mount(source, target, None, MS_BIND | MS_REC, None, step)


def verify(claims):
    """Check from inside, once every step is applied, what %sandbox will claim."""
    for path in claims["empty"]:
        try:
            if os.listdir(path):
                raise IsolationError(f"check: {path} should be masked but shows files")
        except PermissionError:
            pass
    for path in claims["empty_files"]:
        try:
            with open(path, "rb") as f:
                if f.read(1):
                    raise IsolationError(f"check: {path} should be masked but can be read")
        except PermissionError:
            pass
    for path in claims["read_only"]:
        try:
            writable = not os.statvfs(path).f_flag & os.ST_RDONLY
        except PermissionError:
            writable = False
        if writable:
            raise IsolationError(f"check: {path} should be read-only but accepts writes")
    if sorted(os.listdir("/dev")) != claims["dev"]:
        raise IsolationError(f"check: /dev should hold {' '.join(claims['dev'])} but holds {' '.join(sorted(os.listdir('/dev')))}")


# -- the rest ---------------------------------------------------------------------------------


def set_hostname(name):
    _check(_libc.sethostname(name.encode(), len(name)), "set the sandbox's hostname")


def loopback_up():
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            ifreq = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
            flags = struct.unpack("16sH14x", ifreq)[1] | IFF_UP
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags))
        except OSError as e:
            raise IsolationError(f"bring up the sandbox's loopback: {e.strerror}") from None


def resolv_conf(nameserver):
    """/etc/resolv.conf names the egress helper's DNS: a file written in the private /tmp,
    bound read-only over it, and unlinked (the mount keeps it); nothing lands on the host."""
    scratch = "/tmp/.sandbox-resolv.conf"
    try:
        fd = os.open(scratch, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        os.write(fd, f"nameserver {nameserver}\n".encode())
        os.close(fd)
    except OSError as e:
        raise IsolationError(f"write the sandbox's resolv.conf: {e.strerror}") from None
    bind(scratch, "/etc/resolv.conf", "point /etc/resolv.conf at the sandbox's DNS")
    read_only("/etc/resolv.conf")
    os.unlink(scratch)


def new_session_keyring():
    _check(_syscall("keyctl", KEYCTL_JOIN_SESSION_KEYRING, None), "a session keyring of the sandbox's own")


def limit_processes(count):
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (count, count))
    except (OSError, ValueError) as e:
        raise IsolationError(f"limit processes to {count} (RLIMIT_NPROC): {e}") from None


def limit_memory(nbytes):
    try:
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
    except (OSError, ValueError) as e:
        raise IsolationError(f"limit address space to {nbytes} bytes (RLIMIT_AS): {e}") from None


def not_dumpable():
    """Processes of the same uid can then neither ptrace this one nor open its /proc/PID/fd."""
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "make the supervisor non-dumpable")


def drop_capabilities():
    """Empty bounding, ambient, effective, permitted and inheritable sets, and no_new_privs: no
    capability can come back, not through execve of a setuid or file-capability binary either."""
    with open(CAP_LAST_CAP_FILE) as f:
        last = int(f.read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap} from the bounding set")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    header = struct.pack("II", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two empty {effective, permitted, inheritable}
    _check(_syscall("capset", ctypes.create_string_buffer(header), ctypes.create_string_buffer(data)), "drop all capabilities")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")


def landlock_abi():
    """The Landlock ABI this Linux offers (0: none): 4 brings network rules (6.7), 6 scoping of
    abstract Unix sockets and signals (6.12)."""
    return max(0, _syscall("landlock_create_ruleset", None, 0, LANDLOCK_CREATE_RULESET_VERSION))


def deny_binding(ports):
    """With the host's network shared, keep the control plane's ports from being taken over:
    Landlock lets this process tree bind TCP to every port but these (ABI 4; other stream
    protocols, which its rule does not cover, the seccomp filter refuses), and where the ABI
    has it (6) scopes abstract Unix sockets and signals to the sandbox. Needs no_new_privs, so
    it comes after drop_capabilities."""
    abi = landlock_abi()
    if abi < 4:
        raise IsolationError("deny binding the protected ports: Landlock network rules need Linux 6.7 or later")
    scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("QQQ", 0, LANDLOCK_ACCESS_NET_BIND_TCP, scoped) if scoped else struct.pack("QQ", 0, LANDLOCK_ACCESS_NET_BIND_TCP)
    ruleset = _check(_syscall("landlock_create_ruleset", ctypes.create_string_buffer(attr), len(attr), 0), "create a Landlock ruleset")
    try:
        protected = set(ports)
        rule = ctypes.create_string_buffer(16)
        for port in range(65536):  # rules allow; the ports without one are denied
            if port not in protected:
                struct.pack_into("QQ", rule, 0, LANDLOCK_ACCESS_NET_BIND_TCP, port)
                _check(_syscall("landlock_add_rule", ruleset, LANDLOCK_RULE_NET_PORT, rule, 0), f"allow binding port {port}")
        _check(_syscall("landlock_restrict_self", ruleset, 0), "apply the Landlock ruleset")
    finally:
        os.close(ruleset)


# Calls whose mode argument could set a setuid or setgid bit: {name: (x86_64 nr, aarch64 nr,
# index of the mode argument, index of the open flags or None)}. Without O_CREAT or O_TMPFILE an
# open's mode is not used (and may hold anything), so it is only looked at with them.
MODE_CALLS = {
    "open": (2, None, 2, 1), "creat": (85, None, 1, None), "openat": (257, 56, 3, 2),
    "chmod": (90, None, 1, None), "fchmod": (91, 52, 1, None), "fchmodat": (268, 53, 2, None),
    "fchmodat2": (452, 452, 2, None), "mkdir": (83, None, 1, None), "mkdirat": (258, 34, 2, None),
    "mknod": (133, None, 1, None), "mknodat": (259, 33, 2, None),
}
SET_ID_BITS, O_CREAT_OR_TMPFILE = 0o6000, 0o100 | 0o20000000
OPENAT2 = 437  # its mode lies in a struct a filter cannot read: ENOSYS, and callers fall back to openat


def _bpf(program):
    """Assemble (op, k, jump-if-true label, jump-if-false label) and 'label:' strings."""
    labels, code = {}, []
    for item in program:
        if isinstance(item, str):
            labels[item.rstrip(":")] = len(code)
        else:
            code.append(item)
    out = []
    for i, (op, k, jt, jf) in enumerate(code):
        off = lambda target: 0 if target is None else labels[target] - i - 1  # noqa: E731
        out.append(struct.pack("HBBI", op, off(jt), off(jf), k))
    return b"".join(out), len(code)


def _native_calls_only(step):
    """The column of this machine's numbers, and the start of a filter: a call of another ABI
    (i386, x32) jumps to 'refuse'."""
    machine = platform.machine()
    if machine not in AUDIT_ARCH:
        raise IsolationError(f"{step}: no table for {machine}")
    ld, jeq, jge = 0x20, 0x15, 0x35
    program = [(ld, 4, None, None), (jeq, AUDIT_ARCH[machine], None, "refuse"), (ld, 0, None, None)]
    if machine == "x86_64":
        program.append((jge, 0x40000000, "refuse", None))
    return (0 if machine == "x86_64" else 1), program


def _sock_fprog(program):
    """A struct sock_fprog of the program, and the buffer it points into (both must stay alive
    until the filter is installed)."""
    code, length = _bpf(program)
    filters = ctypes.create_string_buffer(code)
    return ctypes.create_string_buffer(struct.pack("HxxxxxxP", length, ctypes.addressof(filters))), filters


SOCKET = (41, 198)
AF_INET, AF_INET6, SOCK_TYPE_MASK, SOCK_SEQPACKET = 2, 10, 0xF, 5
INET_PROTOCOLS = (6, 17, 1, 58)  # TCP, UDP, ICMP and ICMPv6 (ping sockets): what Landlock's rule covers or needs none


def filter_syscalls(names, host_network=False):
    """A seccomp filter on this process tree: the named system calls, every call of another ABI
    (i386, x32) and every mode with a setuid or setgid bit fail with EPERM (a file made inside
    the notebook directory is a file of the host's); on the host's network, so do inet sockets
    of other protocols (MPTCP, SCTP), which Landlock's port rule would not cover. Needs
    no_new_privs: after drop_capabilities."""
    column, program = _native_calls_only("filter system calls")
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, refuse, nosys = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    arg = lambda n: 16 + 8 * n  # noqa: E731  (the low half, little-endian)
    program += [(jeq, n, "refuse", None) for n in sorted({FILTERABLE_SYSCALLS[n][column] for n in names})]
    checks = {name: spec for name, spec in MODE_CALLS.items() if spec[column] is not None}
    program += [(jeq, spec[column], name, None) for name, spec in checks.items()]
    if host_network:
        program.append((jeq, SOCKET[column], "socket", None))
    program += [(jeq, OPENAT2, "nosys", None), (ret, allow, None, None)]
    if host_network:
        program += ["socket:", (ld, arg(0), None, None), (jeq, AF_INET, "protocol", None), (jeq, AF_INET6, "protocol", "allow"),
                    "protocol:", (ld, arg(2), None, None), (jeq, 0, "type", None)]
        program += [(jeq, p, "allow", None) for p in INET_PROTOCOLS] + [(ret, refuse, None, None)]
        program += ["type:", (ld, arg(1), None, None), (0x54, SOCK_TYPE_MASK, None, None), (jeq, SOCK_SEQPACKET, "refuse", "allow")]
    for name, (_x, _a, mode, flags) in checks.items():
        program.append(name + ":")
        if flags is not None:
            program += [(ld, arg(flags), None, None), (jset, O_CREAT_OR_TMPFILE, None, "allow")]
        program += [(ld, arg(mode), None, None), (jset, SET_ID_BITS, "refuse", "allow")]
    program += ["allow:", (ret, allow, None, None), "refuse:", (ret, refuse, None, None), "nosys:", (ret, nosys, None, None)]
    fprog, _filters = _sock_fprog(program)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0), "install the seccomp filter")



def take_fd(pid, number):
    """A copy of another process's fd (pidfd_getfd), close-on-exec."""
    pidfd = os.pidfd_open(pid)
    try:
        return _check(_syscall("pidfd_getfd", pidfd, number, 0), "take the seccomp listener")
    finally:
        os.close(pidfd)


def sending_calls():
    """The numbers of SENDING_CALLS on this machine."""
    return {name: numbers[0 if platform.machine() == "x86_64" else 1] for name, numbers in SENDING_CALLS.items()}


def hold_sends_for_review():
    """A seccomp filter on this process and what it runs: every connect, sendmsg, sendmmsg and
    sendto to an address waits for the answer of whoever holds the returned listener fd
    (egress_guard.py); io_uring, which would go round it, and other ABIs fail with EPERM. Sets
    no_new_privs (a filter needs it; this process keeps its capabilities)."""
    column, program = _native_calls_only("hold sends for review")
    ld, jeq, ret = 0x20, 0x15, 0x06
    allow, refuse = 0x7FFF0000, 0x00050000 | errno.EPERM
    calls = sending_calls()
    program += [(jeq, FILTERABLE_SYSCALLS[n][column], "refuse", None) for n in ("io_uring_setup", "io_uring_enter", "io_uring_register")]
    program += [(jeq, calls["sendto"], "sendto", None)]
    program += [(jeq, calls[n], "hold", None) for n in ("connect", "sendmsg", "sendmmsg")]
    program += [(ret, allow, None, None),
                # sendto's address (argument 4) is NULL for send() on a connected socket: no review.
                "sendto:", (ld, 16 + 8 * 4, None, None), (jeq, 0, None, "hold"), (ld, 16 + 8 * 4 + 4, None, None),
                (jeq, 0, "allow", "hold"),
                "allow:", (ret, allow, None, None), "refuse:", (ret, refuse, None, None),
                "hold:", (ret, SECCOMP_RET_USER_NOTIF, None, None)]
    fprog, _filters = _sock_fprog(program)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "hold sends for review: no_new_privs")
    return _check(_syscall("seccomp", SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, fprog),
                  "hold sends for review: install the seccomp filter")


# -- cgroups (set up from outside, as they need the rights of the kernel's user) ------------------


def _cgroup_mounts():
    """{controller: mount point} of cgroup v1 hierarchies, and the v2 mount point (or None)."""
    v1, v2 = {}, None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ")
            fstype, _source, options = right.split()[:3]
            point = left.split()[4]
            if fstype == "cgroup2":
                v2 = v2 or point
            elif fstype == "cgroup":
                for option in options.split(","):
                    v1.setdefault(option, point)
    return v1, v2


def _own_cgroups():
    """{controller or '': path} of this process (v2 is '')."""
    found = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                found[controller] = path
    return found


def limit_with_cgroups(pid, name, memory_bytes, cpu_percent, max_processes):
    """Move pid (the sandbox, before its first process starts) into cgroups of its own below ours,
    with a memory limit, a CPU weight relative to the control plane and a process limit.
    Returns the directories made (to remove when the sandbox ends), what holds, and why the rest
    does not (one line each, for %sandbox)."""
    v1, v2 = _cgroup_mounts()
    own = _own_cgroups()
    made, holds, errors = [], [], []
    wanted = {
        "memory": [("memory.limit_in_bytes", "memory.max", str(memory_bytes))] if memory_bytes else [],
        "cpu": [("cpu.shares", "cpu.weight", None)],
        "pids": [("pids.max", "pids.max", str(max_processes + 8))],
    }
    wanted = {controller: settings for controller, settings in wanted.items() if settings}
    on_v2 = [c for c in wanted if not (c in v1 and c in own)]
    bases = {c: (f"{v1[c]}{own[c]}", 1) for c in wanted if c not in on_v2}
    if on_v2:
        if v2 and "" in own and os.path.exists(f"{v2}{own['']}/cgroup.controllers"):
            base = f"{v2}{own['']}".rstrip("/")
            for controller, error in _delegate_v2(base, own[""], on_v2).items():
                if error:
                    errors.append(f"{controller}: {error}")
                else:
                    bases[controller] = (base, 2)
        else:
            errors += [f"{c}: no cgroup hierarchy" for c in on_v2]
    for controller, settings in wanted.items():
        if controller not in bases:
            continue
        base, version = bases[controller]
        path = f"{base.rstrip('/')}/{name}"
        try:
            if path not in made:
                os.mkdir(path)
                made.append(path)
            for v1_file, v2_file, value in settings:
                if value is None:  # CPU: a weight, relative to everything else
                    value = str(1024 * cpu_percent // 100) if version == 1 else str(max(1, 100 * cpu_percent // 100))
                with open(f"{path}/{v1_file if version == 1 else v2_file}", "w") as f:
                    f.write(value)
            with open(f"{path}/cgroup.procs", "w") as f:
                f.write(str(pid))
            holds.append(controller)
        except OSError as e:
            errors.append(f"{controller}: {e.strerror} ({path})")
    reasons = {}  # one line per reason: "memory, cpu, pids: ..."
    for error in errors:
        controller, _, why = error.partition(": ")
        reasons.setdefault(why, []).append(controller)
    return made, holds, [f"{', '.join(controllers)}: {why}" for why, controllers in reasons.items()]


# The leaf the kernel's own processes move to on cgroup v2, so that their cgroup may have children
# with controllers (v2 allows processes only in leaves).
KERNEL_LEAF = "kernel"


def _delegate_v2(base, shown, controllers):
    """Have the controllers enabled for the children of the kernel's v2 cgroup (base; shown: its
    name in /proc/self/cgroup). Where that cgroup holds processes, the kernel's own move into a
    leaf of their own first, as a delegated cgroup's owner does; another program's are never
    moved. {controller: why not, or ''}."""
    with open(f"{base}/cgroup.controllers") as f:
        available = f.read().split()
    result = {c: "" if c in available else f"not given to the kernel's cgroup {shown} by its parent" for c in controllers}
    todo = [c for c in controllers if c in available]
    with open(f"{base}/cgroup.subtree_control") as f:
        todo = [c for c in todo if c not in f.read().split()]
    if not todo:
        return result
    why = _enable_v2(base, todo)
    if why == "busy":
        strangers = [p for p in _cgroup_procs(base) if not _descends_from(p, os.getppid())]
        if strangers:
            why = (f"the kernel's cgroup {shown} also holds other programs (PID {strangers[0]}: "
                   f"{_comm(strangers[0])}); start the kernel in a cgroup of its own")
        else:
            why = _move_into_leaf(base) or _enable_v2(base, todo)
    if why == "denied":
        why = f"the kernel's cgroup {shown} is not delegated to uid {os.getuid()}"
    elif why == "busy":
        why = f"the kernel's cgroup {shown} still holds processes"
    for c in todo:
        result[c] = why or ""
    return result


def _enable_v2(base, controllers):
    """'' once enabled, 'busy' if the cgroup holds processes, 'denied', or the error."""
    try:
        with open(f"{base}/cgroup.subtree_control", "w") as f:
            f.write(" ".join(f"+{c}" for c in controllers))
        return ""
    except OSError as e:
        if e.errno == errno.EBUSY:
            return "busy"
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "denied"
        return f"{e.strerror} ({base}/cgroup.subtree_control)"


def _move_into_leaf(base):
    """Every process of base (all the kernel's: checked) into base/KERNEL_LEAF; '' or the error."""
    leaf = f"{base}/{KERNEL_LEAF}"
    try:
        os.makedirs(leaf, exist_ok=True)
        for _round in range(10):  # a process the kernel starts meanwhile lands in base: again
            procs = _cgroup_procs(base)
            if not procs:
                return ""
            for p in procs:
                try:
                    with open(f"{leaf}/cgroup.procs", "w") as f:
                        f.write(str(p))
                except ProcessLookupError:
                    pass  # ended meanwhile
        return f"the kernel's processes kept arriving in {base}"
    except OSError as e:
        return "denied" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else f"{e.strerror} ({leaf})"


def _cgroup_procs(base):
    with open(f"{base}/cgroup.procs") as f:
        return [int(line) for line in f if line.strip()]


def _descends_from(pid, ancestor):
    """Whether pid is ancestor or one of its descendants (by the parent links in /proc)."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return pid == ancestor


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()[:40]
    except OSError:
        return "?"


def remove_cgroups(paths):
    for path in reversed(paths):
        try:
            os.rmdir(path)
        except OSError:
            pass
