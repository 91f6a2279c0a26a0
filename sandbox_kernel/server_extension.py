"""A Jupyter Server extension for the server around sandbox kernels: the sandbox writes the
notebook's directory, the server acts on it with its own rights, so nothing the sandbox leaves
there may steer the server.

- Saves, uploads, checkpoints (create, restore, rename, delete), renames, deletes and new
  directories refuse any symbolic link on the way from the server's root to the file: the file
  itself, `.ipynb_checkpoints` or any directory between (403, with the link's name). Saves and
  checkpoints are written race-free: every directory is opened with O_NOFOLLOW from the root,
  the data goes to a new file made there with O_EXCL, which then replaces the old name (a link
  swapped in meanwhile is replaced, never followed). Renames, deletes, copies, uploaded chunks
  and new directories are checked just before jupyter_server acts.
- Every kernel the server starts gets PYTHONSAFEPATH=1: a stock python3 kernel starts as
  `python -m ipykernel_launcher` in the notebook's directory, which would otherwise come first on
  sys.path, so an `ipykernel_launcher.py` a cell wrote there would run as the server's user.

Enabled by etc/jupyter/jupyter_server_config.d/sandbox_kernel.json, installed with the package.
"""

import errno
import io
import os
import secrets
import shutil
import stat
import tempfile
from contextlib import contextmanager

from anyio.to_thread import run_sync
from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints, FileCheckpoints
from jupyter_server.services.contents.filemanager import FileContentsManager
from jupyter_server.utils import to_api_path
from tornado.web import HTTPError
from traitlets import default

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _jupyter_server_extension_points():
    return [{"module": __name__}]


def _link_jupyter_server_extension(serverapp):
    # Linking comes before the server makes its contents manager and starts any kernel.
    cls = serverapp.contents_manager_class
    if issubclass(cls, FileContentsManager) and not issubclass(cls, NoFollowContents):
        # traitlets takes a trait's @default only from a HasTraits class's own body: this one's.
        serverapp.contents_manager_class = type(f"NoFollow{cls.__name__}", (NoFollowContents, cls), {
            "__module__": __name__, "_no_follow_checkpoints": default("checkpoints")(_no_follow_checkpoints)})
    elif not issubclass(cls, NoFollowContents):
        serverapp.log.warning("sandbox_kernel: contents manager %s does not keep files through FileContentsManager; "
                              "its saves are not protected from links a sandbox made", cls.__name__)
    # Kernels inherit the server's environment (jupyter_server copies os.environ for each).
    os.environ["PYTHONSAFEPATH"] = "1"


def _load_jupyter_server_extension(serverapp):
    cm = serverapp.contents_manager
    if isinstance(cm, NoFollowContents) and not isinstance(cm.checkpoints, NoFollow):
        serverapp.log.warning("sandbox_kernel: checkpoints of class %s are not protected from links a sandbox made",
                              type(cm.checkpoints).__name__)
    if isinstance(cm, NoFollowContents):
        serverapp.log.info("sandbox_kernel: saves, checkpoints, renames and deletes refuse symbolic links; "
                           "kernels start with PYTHONSAFEPATH=1")
    else:
        serverapp.log.warning("sandbox_kernel: the contents manager was replaced after linking (%s); saves are "
                              "not protected from links a sandbox made", type(cm).__name__)


def _no_follow_checkpoints(contents_manager):
    """The contents manager's checkpoints, of its configured class with NoFollow mixed in."""
    cls = contents_manager.checkpoints_class
    if issubclass(cls, FileCheckpoints) and not issubclass(cls, NoFollow):
        base = AsyncNoFollowCheckpoints if issubclass(cls, AsyncFileCheckpoints) else NoFollowCheckpoints
        cls = type(f"NoFollow{cls.__name__}", (base, cls), {"__module__": __name__})
    return cls(**contents_manager.checkpoints_kwargs)


class NoFollow:
    """Path handling shared by the contents manager and its checkpoints (both have root_dir)."""

    def _bases(self):
        return [os.path.abspath(self.root_dir)]

    def _refused(self, os_path, why):
        return HTTPError(403, f"Refused: {why} (the server does not write through links in its directories, "
                              f"which a sandboxed cell can make; remove or replace it): {to_api_path(os_path, root=self.root_dir)}")

    @contextmanager
    def _parent(self, os_path, create=False):
        """(fd of os_path's directory, last name), every directory below the root opened with
        O_NOFOLLOW; create: make missing directories (of a checkpoint)."""
        os_path = os.path.abspath(os_path)
        for base in self._bases():
            rel = os.path.relpath(os_path, base)
            if rel != os.curdir and rel.split(os.sep)[0] != os.pardir:
                break
        else:
            raise self._refused(os_path, "outside the server's root directory")
        parts = rel.split(os.sep)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    if create:
                        try:
                            os.mkdir(part, 0o755, dir_fd=fd)
                        except FileExistsError:
                            pass
                    sub = os.open(part, DIRECTORY, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR) and self._is_link(fd, part):
                        raise self._refused(os.path.join(base, *parts[:i + 1]), f"'{part}' is a symbolic link") from None
                    raise
                os.close(fd)
                fd = sub
            yield fd, parts[-1]
        finally:
            os.close(fd)

    @staticmethod
    def _is_link(fd, name):
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def _existing(self, fd, name, os_path):
        """lstat of name in fd, None if absent; refuses a link."""
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise self._refused(os_path, f"'{name}' is a symbolic link")
        return st

    def _open(self, dir_fd, name, flags, os_path):
        """os.open of name in dir_fd with O_NOFOLLOW; a link found there (swapped in since the
        check) is refused like one found by the check."""
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self._refused(os_path, f"'{name}' is a symbolic link") from None
            raise

    def _check(self, *os_paths):
        """Refuses each path with a link on its way (for jupyter_server's own rename and delete)."""
        for os_path in os_paths:
            try:
                with self._parent(os_path) as (fd, name):
                    self._existing(fd, name, os_path)
            except FileNotFoundError:
                pass  # a missing directory: jupyter_server says so

    @contextmanager
    def atomic_writing(self, os_path, text=True, encoding="utf-8", log=None, **kwargs):
        """FileManagerMixin.atomic_writing's contract (a file object to write; the old content
        stays unless the block ends well), never following a link."""
        mode = ("w" if text else "wb")
        if text:
            kwargs.setdefault("newline", "\n")
        else:
            encoding = None
        with self.perm_to_403(os_path), self._parent(os_path, create=isinstance(self, FileCheckpoints)) as (dir_fd, name):
            old = self._existing(dir_fd, name, os_path)
            tmp = f".~{name}.{secrets.token_hex(4)}"
            in_place = not self.use_atomic_writing
            if not in_place:
                try:
                    fd = self._open(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, os_path)
                except PermissionError:
                    if old is None:
                        raise
                    in_place = True  # as jupyter_server: a writable file in a directory that is not
            if in_place:
                fd = self._open(dir_fd, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os_path)
                with io.open(fd, mode, encoding=encoding, **kwargs) as f:
                    yield f
                return
            try:
                with io.open(fd, mode, encoding=encoding, **kwargs) as f:
                    yield f
                    f.flush()
                    if old is not None:
                        os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
                        try:
                            os.fchown(fd, old.st_uid, old.st_gid)
                        except PermissionError:
                            pass
                    os.fsync(fd)
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
                raise

    def _copy_nofollow(self, src, dest):
        with self.perm_to_403(src), self._parent(src) as (dir_fd, name):
            self._existing(dir_fd, name, src)
            fd = self._open(dir_fd, name, os.O_RDONLY, src)
            with io.open(fd, "rb") as f_in, self.atomic_writing(dest, text=False) as f_out:
                shutil.copyfileobj(f_in, f_out)
                times = os.fstat(fd)
            os.utime(dest, ns=(times.st_atime_ns, times.st_mtime_ns), follow_symlinks=False)


class NoFollowContents(NoFollow):
    """Mixed in before the server's FileContentsManager class (sync or async): every method
    here either writes race-free (atomic_writing) or checks, then hands over to jupyter_server."""

    def rename_file(self, old_path, new_path):
        self._check(self._get_os_path(old_path.strip("/")), self._get_os_path(new_path.strip("/")))
        return super().rename_file(old_path, new_path)

    def delete_file(self, path):
        self._check(self._get_os_path(path.strip("/")))
        return super().delete_file(path)

    def _save_directory(self, os_path, model, path=""):
        self._check(os_path)
        return super()._save_directory(os_path, model, path)

    def _save_large_file(self, os_path, content, format):
        self._check(os_path)
        return super()._save_large_file(os_path, content, format)

    def copy(self, from_path, to_path=None):
        # A copy is a read through the link (a host file) and a write into the directory.
        self._check(self._get_os_path(from_path.strip("/")))
        return super().copy(from_path, to_path)

    def _copy_dir(self, from_path, to_path_original, to_name, to_path):
        # copytree would copy what links inside point to (a host file) into the new directory.
        source = self._get_os_path(from_path.strip("/"))
        self._check(source, os.path.join(self._get_os_path(to_path_original.strip("/")), to_name))
        for top, dirs, files in os.walk(source):
            for name in dirs + files:
                if os.path.islink(os.path.join(top, name)):
                    raise self._refused(os.path.join(top, name), f"'{name}' is a symbolic link")
        return super()._copy_dir(from_path, to_path_original, to_name, to_path)


class NoFollowCheckpoints(NoFollow):
    def _bases(self):
        # Checkpoints of a read-only directory go to the system's temporary directory.
        return [os.path.abspath(self.root_dir), os.path.join(tempfile.gettempdir(), "jupyter_checkpoints")]

    def checkpoint_path(self, checkpoint_id, path):
        # Checked before jupyter_server makes the checkpoint directory (which follows links).
        parent = ("/" + path.strip("/")).rsplit("/", 1)[0].strip("/")
        self._check(os.path.join(self._get_os_path(parent), self.checkpoint_dir))
        return super().checkpoint_path(checkpoint_id, path)

    def _copy(self, src, dest):
        self._copy_nofollow(src, dest)

    def rename_checkpoint(self, checkpoint_id, old_path, new_path):
        self._check(self.checkpoint_path(checkpoint_id, old_path), self.checkpoint_path(checkpoint_id, new_path))
        return super().rename_checkpoint(checkpoint_id, old_path, new_path)

    def delete_checkpoint(self, checkpoint_id, path):
        self._check(self.checkpoint_path(checkpoint_id, path))
        return super().delete_checkpoint(checkpoint_id, path)


class AsyncNoFollowCheckpoints(NoFollowCheckpoints):
    async def _copy(self, src, dest):
        await run_sync(self._copy_nofollow, src, dest)
