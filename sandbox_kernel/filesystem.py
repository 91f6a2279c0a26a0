"""What the sandbox sees of the host's files: the one place that decides it.

Each kind of host path, what a cell sees there, and the step that makes it so (supervisor.py
applies the steps in this order, then checks every claim from inside before the first cell):

| host path                                     | inside the sandbox                               | step           |
|-----------------------------------------------|--------------------------------------------------|----------------|
| the system: / and everything not named below  | read-only                                        | read_only_root |
| /dev                                          | a /dev of its own: null zero full random urandom | private_dev    |
|                                               | tty, ptmx on a devpts of its own, shm, fd, std*  |                |
| /tmp, /var/tmp                                | private: empty, writable, gone with the kernel   | private_tmpfs  |
| HOME (the account's, when HOME is not set)    | private: empty, writable; the entries named in   | private_tmpfs  |
|                                               | Sandbox.home_shared read-only                    | attach (ro)    |
| a directory the sandbox's uid cannot search,  | private: empty, writable (its contents were out  | private_tmpfs  |
| above the notebook directory or the kernel's  | of reach anyway), so that what lies below can be |                |
| Python                                        | attached                                         |                |
| the notebook directory, when it can be shared | read-write, files stored as its owner's          | attach         |
| the notebook directory, when it cannot        | what the rows above give its path (nothing more) |                |
| the kernel's package and Python, if covered   | read-only                                        | attach (ro)    |
| .git/hooks, .git/config of existing           | read-only, and the .git itself cannot be moved:  | protect_git    |
| repositories in the shared directory          | commits still work, planted hooks do not         |                |
| the shared directory's .ipynb_checkpoints     | pinned: it cannot be swapped for a link that the | pin            |
|                                               | server would then write its checkpoints through  |                |
| Jupyter's config, data and runtime dirs, the  | empty and read-only, by every path (masks come   | mask           |
| IPython dir, XDG_RUNTIME_DIR, /run/user/UID   | after every attach, so nothing brings them back) |                |
| the kernel's connection file                  | empty                                            | mask_file      |

A notebook directory is shared read-write only where that gives a cell nothing the host runs or
hides: never /, a system directory, /tmp or /var/tmp themselves, a home directory or an ancestor
of one, or a directory that holds or lies in a start-up, credential or Jupyter path below.
"""

import os
import pwd

from jupyter_core.paths import jupyter_config_path, jupyter_path, jupyter_runtime_dir

PRIVATE = ("/tmp", "/var/tmp")
# Where the host keeps what it runs or serves: a notebook directory here is never shared.
SYSTEM = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys",
          "/usr", "/var")
# Below every home: what the host runs without being asked (shell start-up files, autostart, user
# units, the user site directory, Jupyter's and IPython's config and data) and credentials.
HOME_PROTECTED = (".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".zshrc", ".zshenv",
                  ".zprofile", ".zlogin", ".pam_environment", ".xprofile", ".xsession", ".xinitrc", ".config/fish",
                  ".config/autostart", ".config/systemd", ".config/environment.d", ".config/gh", ".config/gcloud",
                  ".local/bin", ".local/lib", ".local/share/jupyter", ".jupyter", ".ipython", ".ssh", ".gnupg", ".aws",
                  ".azure", ".kube", ".docker", ".netrc", ".git-credentials", ".pgpass", ".pypirc", ".npmrc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}
# In a shared directory: what git runs on the host (hooks, config's core.fsmonitor, hooksPath).
GIT_PROTECTED = ("hooks", "config")
GIT_SEARCH_DEPTH, GIT_SEARCH_DIRS = 3, 2000


def _real(path):
    return os.path.realpath(path)


def inside(path, directory):
    """path is directory or below it (both absolute, resolved)."""
    return os.path.commonpath([path, directory]) == directory


def homes(home):
    """The kernel's HOME and every other account's: none may be shared, nor what lies below."""
    found = {_real(home)} if home and home != "/" else set()
    for entry in pwd.getpwall():
        d = _real(entry.pw_dir or "/")
        if d != "/" and os.path.isdir(d) and not any(inside(d, s) for s in SYSTEM):
            found.add(d)
    return sorted(found)


def protected(home):
    """Paths the host runs or keeps secrets in, below every home (whether they exist or not)."""
    return [os.path.join(h, p) for h in homes(home) for p in HOME_PROTECTED]


def hidden(uid, env):
    """What the sandbox must never see (nor write), as Jupyter and the session manager name it."""
    ipython = env.get("IPYTHONDIR") or os.path.join(home_of(uid, env) or "/", ".ipython")
    paths = [jupyter_runtime_dir(), *jupyter_config_path(), *jupyter_path(), ipython, f"/run/user/{uid}",
             env.get("XDG_RUNTIME_DIR", "")]
    return sorted({_real(p) for p in paths if p and _real(p) != "/"})


def why_not_shared(workspace, home, hidden_paths, kept):
    """'' if the notebook directory can be shared read-write, else the reason, for the user.
    kept: directories that stay read-only inside whatever holds them (the kernel's Python)."""
    if workspace == "/":
        return "it is /, the whole system"
    if workspace in PRIVATE:
        return f"it is {workspace}, shared by every user and program"
    guarded = [*hidden_paths, *protected(home)]
    for p in guarded:
        if inside(workspace, p):
            return f"it lies in {p}, which the sandbox hides or protects"
    if not any(inside(workspace, p) for p in PRIVATE):
        for s in SYSTEM:
            if inside(workspace, s):
                return f"it lies in {s}, a system directory"
    for h in homes(home):
        if inside(h, workspace):
            return f"it holds the home directory {h}"
    for p in guarded:
        if inside(p, workspace) and not any(inside(p, k) for k in kept):
            return f"it holds {p}, which the sandbox hides or protects"
    return ""


def git_protected(workspace):
    """The .git directories (and .git files of worktrees) of the repositories already in the
    shared directory, with what of each must stay read-only; a bounded walk that follows no link."""
    found, seen = [], 0
    for top, dirs, _files in os.walk(workspace):
        seen += 1
        depth = top[len(workspace):].count(os.sep)
        git = os.path.join(top, ".git")
        if os.path.islink(git):
            pass
        elif os.path.isdir(git):
            found.append((git, [os.path.join(git, p) for p in GIT_PROTECTED]))
        elif os.path.isfile(git):  # a worktree's or submodule's pointer to its repository
            found.append((git, [git]))
        dirs[:] = [] if depth >= GIT_SEARCH_DEPTH or seen >= GIT_SEARCH_DIRS else \
            sorted(d for d in dirs if not d.startswith(".") and d != "node_modules")
    return found


def home_of(uid, env):
    """HOME, or where the account's entry puts it when HOME is not set (as ~ does): a gateway
    may start the kernel with little more than PATH."""
    home = env.get("HOME")
    if not home:
        try:
            home = pwd.getpwuid(uid).pw_dir
        except KeyError:
            return ""
    home = _real(home)
    return home if home != "/" and os.path.isdir(home) else ""


def unsearchable_above(paths, searchable, private):
    """The highest directories above paths that the sandbox's uid cannot search, and that no
    private directory holds already."""
    found = []
    for path in paths:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if any(inside(d, p) for p in private + found):
                break
            if not searchable(d):
                found.append(d)
                break
    return sorted(set(found))


def plan(*, uid, env, workspace, connection_file, kept, home_shared, searchable):
    """The filesystem steps, in order, and what they claim (for %sandbox and the check inside).

    workspace: the notebook directory; kept: the kernel's own package and Python, which must stay
    readable; home_shared: names below HOME to show read-only; searchable(directory): whether the
    sandbox's uid outside may search it."""
    home = home_of(uid, env)
    workspace = _real(workspace)
    hidden_paths = hidden(uid, env)
    private = [*PRIVATE, *([home] if home else [])]
    kept = sorted({_real(d) for d in kept if os.path.isdir(d)})
    private = sorted(private + unsearchable_above([workspace, *kept], searchable, private))
    reason = why_not_shared(workspace, home, hidden_paths, kept)
    shared = [] if reason else [workspace]
    # Attached after the private tmpfs (or over the shared directory), in this order.
    kept = [d for d in kept if any(inside(d, p) for p in private + shared) and d not in shared
            and not any(inside(d, k) and d != k for k in kept)]  # one attach for a tree and what lies in it
    home_files = [os.path.join(home, n) for n in home_shared if home and os.path.lexists(os.path.join(home, n))]
    attached = [*shared, *kept, *home_files]

    def visible(path):  # still there inside once the private tmpfs are on and the trees attached
        return any(inside(path, a) for a in attached) or not any(inside(path, p) for p in private)

    masks = []
    for p in hidden_paths:  # sorted: a mask hides the masks below it
        if os.path.isdir(p) and visible(p) and not any(inside(p, m) for m in masks):
            masks.append(p)
    masked_files = [f for f in [connection_file and _real(connection_file)]
                    if f and os.path.isfile(f) and visible(f) and not any(inside(f, m) for m in masks)]
    gits = git_protected(workspace) if shared else []
    checkpoints = os.path.join(workspace, ".ipynb_checkpoints")
    pins = [checkpoints] if shared and os.path.isdir(checkpoints) and not os.path.islink(checkpoints) else []
    cwd = (home or "/tmp") if any(inside(workspace, m) for m in masks) else workspace
    steps = [
        *[["take", p] for p in attached],  # before anything covers them
        ["read_only_root"],
        ["private_dev", list(DEVICES), DEV_LINKS],
        *[["private_tmpfs", p] for p in private],
        *[["attach", p, p not in shared] for p in attached],
        *[["protect_git", git, ro] for git, ro in gits],
        *[["pin", p] for p in pins],
        *[["mask", p] for p in masks],
        *[["mask_file", f] for f in masked_files],
        ["ensure_dir", cwd],
    ]
    return {
        "steps": steps,
        "workspace": workspace,
        "shared": bool(shared),
        "not_shared_because": reason,
        "cwd": cwd,
        "private": private,
        "home_shared": home_files,
        "masked": masks + masked_files,
        "git_protected": [g for g, _ro in gits],
        "pinned": pins,
        # What the supervisor checks from inside once every step is applied.
        "verify": {"empty": masks, "empty_files": masked_files,
                   "read_only": ["/", *kept, *home_files, *(p for _g, ro in gits for p in ro), *masks],
                   "dev": sorted([*DEVICES, *DEV_LINKS, "pts", "shm"])},
    }
