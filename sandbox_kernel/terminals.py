"""Terminals into the sandbox: a Jupyter comm (target `sandbox_kernel.terminal`) per terminal, each
an interactive bash on a terminal of the sandbox's own devpts, with the sandbox's isolation and
environment, starting in the cells' directory. Bytes pass through as text; the kernel never reads
them as anything else.

  frontend -> kernel: comm_open data {"rows", "cols"} (optional, 24 x 80); then {"stdin": text},
                      {"set_size": [rows, cols, ...]}; comm_close ends the terminal's processes.
  kernel -> frontend: {"stdout": text}; {"error": one line} for a request that was refused;
                      comm_close {"exited": status} when the shell has ended (or {"error"} when
                      it could not start).
"""

import asyncio
import codecs
import errno
import fcntl
import itertools
import os
import struct
import termios

from .sandbox import SandboxError

TARGET = "sandbox_kernel.terminal"
SHELL = ["/bin/bash", "-i"]
READ_BYTES = 1 << 16
PAUSE = 0.01  # after a full read: a flooding program cannot flood the frontend's channel
MAX_SIZE = 1000  # rows or columns


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
    """One terminal: the master side of its pty, and what is still to be written to it."""

    def __init__(self, sid, master, parent):
        self.sid, self.master, self.parent = sid, master, parent
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = b""  # input the pty would not take yet
        self.exited = None  # the shell's status, once the supervisor says so


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
            self._send(parent, "comm_close", {"comm_id": comm_id, "data": {"error": "terminal: rows and cols must be whole numbers from 1 to 1000"}})
            return
        sandbox = self.kernel.sandbox
        sid = f"terminal {next(self._numbers)}"  # a space: never a session's name
        env = sandbox.session_env()
        env.pop("PAGER", None)  # a terminal can page
        try:
            master = await sandbox.spawn(sid, SHELL, env, sandbox.cwd, [], lambda status: self._exited(comm_id, status), terminal=size)
        except SandboxError as e:
            self._send(parent, "comm_close", {"comm_id": comm_id, "data": {"error": f"terminal: {e}"}})
            return
        os.set_blocking(master, False)
        term = self.terminals[comm_id] = Terminal(sid, master, parent)
        if sandbox.warning:  # unprotected or isolation off: the terminal says so first, as cells do
            self._reply(term, comm_id, {"stdout": sandbox.warning + "\r\n"})
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._read, comm_id)

    async def comm_msg(self, stream, ident, parent):
        comm_id = parent["content"].get("comm_id")
        term = self.terminals.get(comm_id)
        if term is None:
            return
        data = parent["content"].get("data")
        if isinstance(data, dict) and isinstance(data.get("stdin"), str):
            term.pending += data["stdin"].encode("utf-8", "surrogateescape")
            self._write(comm_id)
        elif isinstance(data, dict) and "set_size" in data:
            size = _size(data["set_size"])
            if size is None:
                self._reply(term, comm_id, {"error": "set_size: rows and cols must be whole numbers from 1 to 1000"})
            else:
                fcntl.ioctl(term.master, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        else:
            self._reply(term, comm_id, {"error": "terminal: expected {\"stdin\": text} or {\"set_size\": [rows, cols]}"})

    async def comm_close(self, stream, ident, parent):
        term = self.terminals.get(parent["content"].get("comm_id"))
        if term is not None:
            self.kernel.sandbox.signal(term.sid, "end")  # its exit then closes the rest

    # -- the pty --------------------------------------------------------------------------------

    def _read(self, comm_id):
        term = self.terminals[comm_id]
        try:
            chunk = os.read(term.master, READ_BYTES)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: every process of the terminal has closed it
                self.kernel.log.warning("sandbox-kernel: %s: %s", term.sid, e)
            chunk = b""
        if not chunk:
            self._loop.remove_reader(term.master)
            self._finish(comm_id)
            return
        text = term.decoder.decode(chunk)
        if text:
            self._reply(term, comm_id, {"stdout": text})
        if len(chunk) == READ_BYTES:
            self._loop.remove_reader(term.master)
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
        """The comm closes once the pty is drained and the shell's status is known."""
        term = self.terminals[comm_id]
        if term.master >= 0 and term.exited is None:
            return  # the pty said EOF first; the supervisor's word follows
        if term.master >= 0:
            self._read_rest(term, comm_id)
        del self.terminals[comm_id]
        self._send(term.parent, "comm_close", {"comm_id": comm_id, "data": {"exited": term.exited}})

    def _read_rest(self, term, comm_id):
        for _ in range(64):
            try:
                chunk = os.read(term.master, READ_BYTES)
            except OSError:
                break
            if not chunk:
                break
            self._reply(term, comm_id, {"stdout": term.decoder.decode(chunk)})
        rest = term.decoder.decode(b"", final=True)
        if rest:
            self._reply(term, comm_id, {"stdout": rest})
        self._loop.remove_reader(term.master)
        self._loop.remove_writer(term.master)
        os.close(term.master)
        term.master = -1

    def _reply(self, term, comm_id, data):
        self._send(term.parent, "comm_msg", {"comm_id": comm_id, "data": data})

    def _send(self, parent, msg_type, content):
        k = self.kernel
        k.session.send(k.iopub_socket, msg_type, content, parent, ident=k._topic(msg_type))
