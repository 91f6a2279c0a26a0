"""A Linux guest with cgroup v2 only, booted to run one bash script as root: for the tests of
what this machine cannot show (its cgroup controllers are all bound to v1; most users' are v2).

    result = run_in_vm("cat /sys/fs/cgroup/cgroup.controllers", timeout=60)
    result.returncode, result.stdout, result.stderr, result.boot_seconds

The guest is Debian testing's User-mode Linux (7.2 as of 2026-12; `make vm-kernel` unpacks it
into build/vm/uml, with the C library it needs in build/vm/libc): a Linux kernel that runs as a
process of this machine, so it needs no KVM (the KVM of this kind of
machine cannot boot a stock kernel at a usable speed). One CPU (UML is uniprocessor), 2 GiB, no
network but its own loopback, cgroup2 alone on /sys/fs/cgroup (`cgroup_no_v1=all`) with the
memory, cpu and pids controllers, user namespaces, seccomp; no Landlock (Debian's UML is built
without it), no /dev/kvm.

Its root is this machine's root filesystem, that filesystem alone (none of the mounts on it),
through hostfs. The kernel process runs in a mount namespace of its own that holds nothing but a
read-only, nodev bind mount of / (and the run's own files: its output directory, the disk of the
guest's /tmp), so nothing in the guest can write to this machine, whatever it does. An overlay with a tmpfs above makes the root writable
inside, privately (a test can useradd, pytest can write its cache). Fresh tmpfs on /run and
/var/tmp, and on /tmp a fresh ext4 (so that the root kernel's workspace there can be an idmapped
mount, which UML cannot make of tmpfs or overlayfs); its own /proc, /sys, /dev (devtmpfs, devpts,
/dev/shm, /dev/net/tun). The rest of this machine is there as it was at boot: the checkout (kept at
its path even under /tmp), .venv, /usr, /etc/passwd.

The script runs as root in /root with a plain environment, in the root cgroup (a test of another
layout, such as systemd's leaf scopes or a user@.service delegated to a user, makes it and moves
the script's shell there first); its stdout, stderr and exit status come back through files the
guest writes into a directory made for that run alone.
"""

import dataclasses
import glob
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UML_TREE = os.path.join(REPO, "build", "vm", "uml")
# Each run's files (the init, the script, the output): on the root filesystem, which is all the
# guest sees of this machine, like the checkout itself.
RUNS = os.path.join(REPO, "build", "vm", "runs")
# overlay: the writable layer; tun: what slirp4netns needs.
MODULES = ["overlay", "tun"]
KERNEL_ARGS = ["quiet", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
               # cgroup v2 only, as on a host whose systemd uses the unified hierarchy
               "systemd.unified_cgroup_hierarchy=1", "cgroup_no_v1=all",
               # the console (init's messages, the start marker) on stdout; no serial lines
               "con=null", "con0=fd:0,fd:1", "ssl=null"]
START_MARKER = b"sk-vm: script started"
TMP_DISK_BYTES = 8 << 30


class VMError(Exception):
    """The guest could not be started, or died before the script ended (not the script's failure)."""


@dataclasses.dataclass
class VMResult:
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str
    timed_out: bool
    boot_seconds: float | None  # from starting the guest to the script's start
    seconds: float  # from starting the guest to its end
    console: str  # the guest's console and kernel messages, for diagnosis


# PID 1 of the guest, one Python process (each fork and exec costs UML about 60 ms): on the
# read-only root it builds the writable root below /mnt/root and moves it onto / as switch_root
# would (a chroot would forbid user namespaces), runs the script, reaps orphans until it ends,
# and powers off.
INIT = r"""#!/usr/bin/python3 -IS
import ctypes, fcntl, os, socket, struct

RUN, MODULES, CHECKOUT, NEW = @RUN@, @MODULES@, @CHECKOUT@, "/mnt/root"
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_MOVE = 2, 4, 8, 4096, 8192
COVERED = ("/tmp", "/var/tmp", "/run")  # fresh in the guest
libc = ctypes.CDLL(None, use_errno=True)


def check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), what)


def mount(source, target, fstype, flags=0, data=""):
    check(libc.mount(source.encode(), target.encode(), fstype and fstype.encode(), ctypes.c_ulong(flags), data.encode()),
          f"mount {fstype or source} on {target}")


def power_off():
    os.sync()
    libc.reboot(0x4321FEDC)  # RB_POWER_OFF


def setup():
    mount("proc", "/proc", "proc")
    mount("sysfs", "/sys", "sysfs")  # /dev: the kernel mounts it
    for ko in MODULES:
        fd = os.open(ko, os.O_RDONLY)
        check(libc.syscall(313, fd, b"", 0), f"finit_module {ko}")
        os.close(fd)
    mount("tmpfs", "/mnt", "tmpfs", 0, "mode=0755")
    for d in ("upper", "work", "root"):
        os.mkdir(f"/mnt/{d}")
    mount("overlay", NEW, "overlay", 0, "lowerdir=/,upperdir=/mnt/upper,workdir=/mnt/work")
    # A checkout under a directory the guest makes fresh (a clone in /tmp) is kept, at its path.
    kept = any(CHECKOUT.startswith(d + "/") for d in COVERED)
    if kept:
        os.mkdir("/mnt/checkout")
        mount(f"{NEW}{CHECKOUT}", "/mnt/checkout", None, MS_BIND)
    # /tmp: ext4, where the root kernel's workspace can be an idmapped mount (UML cannot idmap tmpfs or overlayfs)
    mount("/dev/ubda", f"{NEW}/tmp", "ext4", MS_NOSUID | MS_NODEV)
    os.chmod(f"{NEW}/tmp", 0o1777)
    mount("tmpfs", f"{NEW}/var/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("tmpfs", f"{NEW}/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    if kept:
        os.makedirs(f"{NEW}{CHECKOUT}")
        mount("/mnt/checkout", f"{NEW}{CHECKOUT}", None, MS_MOVE)
    os.makedirs(f"{NEW}/run/vm/out")
    with open(f"{RUN}/script", "rb") as src, open(f"{NEW}/run/vm/script", "wb") as dst:
        dst.write(src.read())
    mount("none", f"{NEW}/run/vm/out", "hostfs", 0, f"{RUN}/out")
    os.chmod("/dev/net/tun", 0o666)  # as udev leaves it: slirp4netns opens it as any user
    os.mkdir("/dev/pts")
    os.mkdir("/dev/shm")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "fd/0"), ("stdout", "fd/1"), ("stderr", "fd/2")):
        os.symlink(target, f"/dev/{name}")
    for d in ("dev", "proc", "sys"):
        mount(f"/{d}", f"{NEW}/{d}", None, MS_MOVE)
    mount("devpts", f"{NEW}/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666")
    mount("tmpfs", f"{NEW}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    # as systemd mounts it
    mount("cgroup2", f"{NEW}/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate,memory_recursiveprot")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # lo up: SIOCGIFFLAGS, SIOCSIFFLAGS | IFF_UP
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
    socket.sethostname("sk-vm")
    os.chdir(NEW)
    mount(".", "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/root")


def run_script():
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "USER": "root",
           "LOGNAME": "root", "LANG": "C.UTF-8"}
    pid = os.fork()
    if pid == 0:
        for fd, path, mode in ((0, "/dev/null", os.O_RDONLY), (1, "/run/vm/out/stdout", os.O_WRONLY | os.O_CREAT),
                               (2, "/run/vm/out/stderr", os.O_WRONLY | os.O_CREAT)):
            os.dup2(os.open(path, mode, 0o644), fd)
        os.execve("/bin/bash", ["bash", "/run/vm/script"], env)
    while True:  # PID 1 reaps whatever is orphaned, until the script ends
        reaped, status = os.wait()
        if reaped == pid:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


try:
    setup()
    print("sk-vm: script started", flush=True)
    status = run_script()
    with open("/run/vm/out/status", "w") as f:
        f.write(f"{status}\n")
except OSError as e:
    print(f"vm init: {e}", flush=True)
power_off()
"""

def _kernel():
    """(linux.uml, modules dir) of the kernel `make vm-kernel` unpacked."""
    linux = os.path.join(UML_TREE, "usr", "bin", "linux.uml")
    modules = glob.glob(os.path.join(UML_TREE, "usr", "lib", "uml", "modules", "*"))
    if not os.path.exists(os.path.join(UML_TREE, ".ready")) or len(modules) != 1:
        raise VMError(f"no guest kernel in {UML_TREE}: run `make vm-kernel`")
    return linux, modules[0]


def _module_files(modules_dir, names):
    """The .ko files of the named modules and what they depend on, in the order to load them."""
    deps = {}
    with open(os.path.join(modules_dir, "modules.dep")) as f:
        for line in f:
            path, _, needs = line.partition(":")
            deps[path] = needs.split()
    by_name = {os.path.basename(p).split(".")[0].replace("-", "_"): p for p in deps}
    order = []

    def visit(path):
        if path not in order:
            for d in reversed(deps[path]):  # modules.dep lists them last-loaded first
                visit(d)
            order.append(path)

    for name in names:
        if name not in by_name:
            raise VMError(f"the guest kernel has no module {name}")
        visit(by_name[name])
    return [os.path.join(modules_dir, p) for p in order]


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


# The guest's kernel process, in new mount and PID namespaces: / is a read-only, nodev, nosuid
# bind mount of this machine's root filesystem (pivot_root drops everything else), with the run's
# output directory and the disk of the guest's /tmp bound writable into it, a tmpfs for UML's
# memory, and a read-only proc of the new PID namespace. UML is PID 1 there, so that its helper
# processes die with it.
CONFINE = r"""set -e
run=$1; shift
mount --bind / "$run/root"
mount -o remount,bind,ro,nodev,nosuid "$run/root"
mount --bind "$run/out" "$run/root$run/out"
mount --bind "$run/tmp.ext4" "$run/root$run/tmp.ext4"
mount -t tmpfs -o mode=0700 tmpfs "$run/root$run/mem"
cd "$run/root"
pivot_root . ".$run/old"
mount -t proc -o ro,nosuid,nodev,noexec proc /proc  # UML reads it (the host's CPU)
umount -l "$run/old"
export TMPDIR="$run/mem"
exec "$@"
"""


def _prepare(run, script, modules):
    for d in ("root", "out", "mem", "old"):
        os.mkdir(os.path.join(run, d))
    with open(os.path.join(run, "init"), "w") as f:
        f.write(INIT.replace("@RUN@", repr(run)).replace("@MODULES@", repr(modules)).replace("@CHECKOUT@", repr(REPO)))
    os.chmod(os.path.join(run, "init"), 0o755)
    with open(os.path.join(run, "script"), "w") as f:
        f.write(script)
    disk = os.path.join(run, "tmp.ext4")
    with open(disk, "wb") as f:
        f.truncate(TMP_DISK_BYTES)  # sparse: the guest's /tmp takes what it uses
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", disk], check=True)
    return disk


def run_in_vm(script, timeout=60, memory_mib=2048):
    """Boot a guest, run script (bash) in it as root and power it off: a VMResult. A script still
    running after timeout seconds (boot included) is killed with its guest (timed_out, returncode
    None); a guest that cannot start or dies before the script ends raises VMError."""
    linux, modules_dir = _kernel()
    modules = _module_files(modules_dir, MODULES)
    os.makedirs(RUNS, exist_ok=True)
    if os.stat(RUNS).st_dev != os.stat("/").st_dev:
        raise VMError(f"{RUNS} is not on the root filesystem, the only one the guest sees")
    run = tempfile.mkdtemp(prefix="sk-vm-", dir=RUNS)
    proc = console_log = None
    try:
        disk = _prepare(run, script, modules)
        console_path = os.path.join(run, "console")
        console_log = open(console_path, "wb")
        args = [*KERNEL_ARGS, f"ubd0={disk}", f"mem={memory_mib}M", f"init={run}/init", f"uml_dir={run}/mem", "umid=sk-vm"]
        start = time.monotonic()
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
             "sh", "-c", CONFINE, "sh", run, linux, *args],
            # the console's input: a pipe (UML refuses /dev/null), never written
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=console_log, start_new_session=True)
        console, started, timed_out = b"", None, False
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                break
            if select.select([proc.stdout], [], [], left)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                console += chunk
                if started is None and START_MARKER in console:
                    started = time.monotonic() - start
        proc.wait()
        seconds = time.monotonic() - start
        text = console.decode(errors="replace") + _read(console_path)
        status = _read(os.path.join(run, "out", "status")).strip()
        if not timed_out and not status:
            raise VMError(f"the guest ended before the script did (exit status {proc.returncode}):\n{text}")
        return VMResult(returncode=None if timed_out else int(status),
                        stdout=_read(os.path.join(run, "out", "stdout")),
                        stderr=_read(os.path.join(run, "out", "stderr")),
                        timed_out=timed_out, boot_seconds=started, seconds=seconds, console=text)
    finally:
        if proc is not None:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stdin.close()
            proc.stdout.close()
        if console_log is not None:
            console_log.close()
        shutil.rmtree(run, ignore_errors=True)
