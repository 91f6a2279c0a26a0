"""Terminals into the sandbox: a Jupyter comm (target `sandbox_kernel.terminal`) per terminal, each
an interactive bash on a terminal of the sandbox's own devpts, with the sandbox's isolation and
environment, starting in the cells' directory. Bytes pass through as text; the kernel never reads
them as anything else.

  frontend -> kernel: comm_open data {"rows", "cols"} (optional, 24 x 80); then {"stdin": text},
                      {"set_size": [rows, cols, ...]}; comm_close ends the terminal's processes.
  kernel -> frontend: {"stdout": text}; {"error": one line} for a request that was refused;
                      comm_close {"exited": status} when the shell has ended (or {"error"} when
                      it could not start).

Requests that come while the shell is starting (ipykernel hands comm messages over while
comm_open waits) are kept for it: typed text, the last size, a close.
"""

import asyncio
import codecs
import errno
import fcntl
import functools
import itertools
import os
import stat
import struct
import termios

from .comms import send
from .sandbox import SandboxError

TARGET = "sandbox_kernel.terminal"
SHELL = ["/bin/bash", "-i"]
TERM = "xterm-256color"  # what xterm.js is, whatever the kernel's own TERM
READ_BYTES = 1 << 16  # at most this much output per message ...
PAUSE = 0.01  # ... and one message per this many seconds: a flood cannot flood the frontend
MAX_SIZE = 1000  # rows or columns
PTMX = os.makedev(5, 2)  # what a pty's master is, on any devpts
SIZE_ERROR = "rows and cols must be whole numbers from 1 to 1000"
REQUEST_ERROR = 'terminal: expected {"stdin": text} or {"set_size": [rows, cols]}'


def _size(value):
    """(rows, cols) from a set_size or open request, or None."""
    if isinstance(value, dict):
        value = [value.get("rows", 24), value.get("cols", 80)]
    if not isinstance(value, list) or len(value) < 2:
        return None
    rows, cols = value[:2]
    if all(type(n) is int and 0 < n <= MAX_SIZE for n in (rows, cols)):
        return rows, cols
    return None


class Terminal:
    """One terminal: the master side of its pty (once its shell has started), and its state."""

    def __init__(self, sid, parent):
        self.sid, self.parent = sid, parent
        self.master = -1
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = b""  # input the pty has not taken yet
        self.size = None  # a size asked for while the shell was starting
        self.exited = None  # the shell's status, once the supervisor says so
        self.eof = False  # every process has closed the pty
        self.open = True  # the frontend has not closed the comm: messages still go out


class Terminals:
    def __init__(self, kernel):
        self.kernel = kernel
        self.terminals = {}  # comm_id -> Terminal
        self._numbers = itertools.count(1)
        self._loop = None

    # Shell handlers (run while a cell runs, too).

    async def comm_open(self, stream, ident, parent):
        comm_id = parent["content"]["comm_id"]
        size = _size(parent["content"].get("data") or {})
        if size is None:
            send(self.kernel, parent, "comm_close", {"comm_id": comm_id, "data": {"error": f"terminal: {SIZE_ERROR}"}})
            return
        self._loop = asyncio.get_running_loop()
        sandbox = self.kernel.sandbox
        term = self.terminals[comm_id] = Terminal(f"terminal {next(self._numbers)}", parent)  # a space: no session's name
        env = sandbox.session_env({"TERM": TERM})
        env.pop("PAGER", None)  # a terminal can page
        try:
            master = await sandbox.spawn(term.sid, SHELL, env, sandbox.cwd, [], functools.partial(self._exited, comm_id),
                                         terminal=size)
            _check_master(master)
        except (SandboxError, OSError) as e:
            if isinstance(e, OSError):  # not a pty's master: nothing is done with it
                os.close(master)
                sandbox.signal(term.sid, "end")
            del self.terminals[comm_id]
            if term.open:
                reason = e.strerror if isinstance(e, OSError) else str(e)
                send(self.kernel, parent, "comm_close", {"comm_id": comm_id, "data": {"error": f"terminal: {reason}"}})
            return
        term.master = master
        os.set_blocking(master, False)
        if sandbox.warning:  # unprotected or isolation off: the terminal says so first, as cells do
            self._reply(term, comm_id, {"stdout": sandbox.warning + "\r\n"})
        if term.size:
            self._set_size(term, comm_id, term.size)
        self._loop.add_reader(master, self._read, comm_id)
        self._write(comm_id)

    async def comm_msg(self, stream, ident, parent):
        comm_id = parent["content"].get("comm_id")
        term = self.terminals.get(comm_id)
        if term is None or not term.open:
            return
        data = parent["content"].get("data")
        if isinstance(data, dict) and isinstance(data.get("stdin"), str):
            try:
                term.pending += data["stdin"].encode()
            except UnicodeEncodeError:
                self._reply(term, comm_id, {"error": "stdin: not valid text (a lone surrogate)"})
                return
            self._write(comm_id)
        elif isinstance(data, dict) and "set_size" in data:
            size = _size(data["set_size"])
            if size is None:
                self._reply(term, comm_id, {"error": f"set_size: {SIZE_ERROR}"})
            elif term.master < 0:
                term.size = size  # for when the shell has started
            else:
                self._set_size(term, comm_id, size)
        else:
            self._reply(term, comm_id, {"error": REQUEST_ERROR})

    async def comm_close(self, stream, ident, parent):
        term = self.terminals.get(parent["content"].get("comm_id"))
        if term is not None:
            term.open = False
            # Its exit then closes the rest; while it starts, the supervisor takes this after the
            # start (one channel, in order).
            self.kernel.sandbox.signal(term.sid, "end")

    # -- the pty --------------------------------------------------------------------------------

    def _set_size(self, term, comm_id, size):
        try:
            fcntl.ioctl(term.master, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        except OSError as e:
            self._reply(term, comm_id, {"error": f"set_size: {e.strerror}"})

    def _read(self, comm_id):
        """What the pty has, up to READ_BYTES, as one message; then a pause before the next."""
        term = self.terminals[comm_id]
        chunks, size = [], 0
        while size < READ_BYTES:
            try:
                chunk = os.read(term.master, READ_BYTES - size)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.EIO:  # EIO: every process of the terminal has closed it
                    self.kernel.log.warning("sandbox-kernel: %s: %s", term.sid, e)
                chunk = b""
            if not chunk:
                term.eof = True
                break
            chunks.append(chunk)
            size += len(chunk)
        text = term.decoder.decode(b"".join(chunks), final=term.eof)
        if text:
            self._reply(term, comm_id, {"stdout": text})
        self._loop.remove_reader(term.master)
        if term.eof:
            self._finish(comm_id)
        else:
            self._loop.call_later(PAUSE, self._resume, comm_id)

    def _resume(self, comm_id):
        term = self.terminals.get(comm_id)
        if term is not None and term.master >= 0:
            self._loop.add_reader(term.master, self._read, comm_id)

    def _write(self, comm_id):
        term = self.terminals.get(comm_id)
        if term is None or term.master < 0:
            return
        try:
            while term.pending:
                term.pending = term.pending[os.write(term.master, term.pending):]
        except BlockingIOError:
            pass
        except OSError:
            term.pending = b""
        self._loop.remove_writer(term.master)
        if term.pending:  # the line discipline is full: the rest when it has room
            self._loop.add_writer(term.master, self._write, comm_id)

    def _exited(self, comm_id, status):
        term = self.terminals.get(comm_id)
        if term is not None:
            term.exited = status
            self._finish(comm_id)

    def _finish(self, comm_id):
        """The comm closes once the pty is drained (EOF) and the shell's status is known."""
        term = self.terminals[comm_id]
        if term.master < 0 or not term.eof or term.exited is None:
            return  # still starting, or the other of the two is to come
        self._loop.remove_writer(term.master)
        os.close(term.master)
        term.master = -1
        del self.terminals[comm_id]
        if term.open:
            send(self.kernel, term.parent, "comm_close", {"comm_id": comm_id, "data": {"exited": term.exited}})

    def _reply(self, term, comm_id, data):
        if term.open:
            send(self.kernel, term.parent, "comm_msg", {"comm_id": comm_id, "data": data})



def _check_master(fd):
    """The fd the supervisor passed is a pty's master (it comes from inside the sandbox)."""
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != PTMX:
        raise OSError(errno.EINVAL, "the sandbox passed something other than a terminal")
