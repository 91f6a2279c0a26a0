"""One bash session, seen from the kernel: start it, run a cell, stream its output, report its end
and status, interrupt it, ask it questions (completion, inspection, parsing).

The bash side is session.bash. Five pipes join the two: stdout and stderr (cell output, passed on
byte-exact), script (fixed lines per request), data (cell code, input replies, interrupt marks,
query arguments; NUL-terminated fields) and control (GATES once at the start, then DONE, INPUT, DISPLAY, REPLY messages;
NUL-terminated fields). Everything that arrives from bash is untrusted: it is parsed, bounded (a few
times max_message_bytes in all) and never used as a path, a PID or a size to act on; a cell can
write to the control pipe, so a DONE or REPLY counts only with the nonce of the request waiting.
"""

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import os
import secrets
import shlex
from pathlib import Path

from .output import StreamForwarder

SESSION_SCRIPT = Path(__file__).with_name("session.bash")
PIPE_SIZE = 1 << 20  # the unprivileged maximum: fewer, larger reads under a flood
READ_CHUNK = 1 << 20
DRAIN_LIMIT = 8 << 20  # what a cell may have left in the pipes when its DONE arrives
# How an interrupt escalates if the foreground command ignores SIGINT (seconds after it).
ESCALATION = (("term", 0.3), ("kill", 0.6), ("shell", 1.2))
SIGNAL_WAIT = 10  # seconds the next cell waits for the supervisor to carry out an interrupt
MESSAGE_FIELDS = {b"DONE": 5, b"INPUT": 3, b"DISPLAY": 3, b"CWD": 2, b"GATES": 6}
# bash starts with stderr parked on fd 6 (an interactive bash without a terminal prints job-control
# notices while it sets up); session.bash puts it back. `-a bash`: bash's messages say "bash:".
BASH_ARGV = ["/bin/bash", "-c", "exec 6>&2 2>/dev/null; exec -a bash /bin/bash --norc --noprofile --noediting -i /dev/fd/3"]
# One cell; the second line reports it if bash abandoned the first (an error that jumps back to the
# top level) and removes the kernel's own DEBUG and RETURN traps, at the top level where that holds.
# Quoted names are never the user's aliases. bash reads these byte by byte: keep them short.
CELL_LINES = '\\__sk_recv {nonce}; \\. "$__sk_cell"; \\__sk_done {nonce}\n\\__sk_lost {nonce}; [[ -z ${{__sk_untrap-}} ]] || \\builtin trap - "${{__sk_untrap[@]}}"\n'
DROPPED = None  # a field too large to keep, in place of its bytes


class SessionError(Exception):
    """A session could not start or answer; the message is for the user, one line."""


@dataclasses.dataclass
class CellResult:
    status: int = 0
    interrupted: bool = False
    syntax_error: bool = False
    exited: bool = False  # the shell itself ended during the cell
    escalation: str = ""  # how far an interrupt had to go: "", "term", "kill", "shell"


class Outputs:
    """Where a session's output goes; the kernel provides one."""

    def stream(self, name, text):
        raise NotImplementedError

    def display(self, mime, payload):
        raise NotImplementedError

    async def input(self, prompt, password):
        """The frontend's answer, or None for EOF."""
        raise NotImplementedError


class BashShell:
    def __init__(self, name, sandbox, outputs, *, cwd, env, max_output_bytes, max_message_bytes):
        self.name = name
        self.sandbox = sandbox
        self.outputs = outputs
        self.cwd = cwd  # where the shell starts, each time it starts
        self.live_cwd = cwd  # as bash last reported it (at the end of each cell)
        self.env = env
        self.max_output_bytes = max_output_bytes
        self.max_message_bytes = max_message_bytes
        self.generation = 0
        self.alive = False
        self.exit_status = None
        self._fds = {}
        self._cell = None  # (nonce, future, CellResult, allow_stdin)
        self._queries = {}  # nonce -> future
        self._ctl_fields = []
        self._ctl_buffered = 0  # bytes in _ctl_fields and _ctl_partial
        self._ctl_partial = bytearray()
        self._ctl_skipping = False
        self._gates_known = False  # session.bash's GATES message (its trap commands) was taken
        self._write_lock = asyncio.Lock()
        self._writers = set()
        self._input_task = None
        self._signalling = set()  # interrupts and escalations under way, which the next cell waits for
        self._loop = None
        self._forwarders = {}

    @property
    def sandbox_id(self):
        return f"{self.name}#{self.generation}"

    @property
    def busy(self):
        return self._cell is not None

    @property
    def state(self):
        if self._cell is not None:
            return "running"
        if not self.alive and self.exit_status is not None:
            return "exited"
        return "idle"

    async def job_count(self):
        return len(await self.query("jobs", ""))

    async def start(self):
        loop = self._loop = asyncio.get_running_loop()
        self.generation += 1
        self.live_cwd = self.cwd
        ends = {}
        for pipe in ("stdout", "stderr", "script", "data", "control"):
            r, w = os.pipe2(os.O_CLOEXEC)
            ends[pipe] = (r, w)
        for pipe in ("stdout", "stderr"):
            try:
                fcntl.fcntl(ends[pipe][0], fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
        for r, _w in ends.values():
            # The sandbox's uid may differ from ours: bash reopens its script as /dev/fd/3, and
            # cells write to /dev/stdout. Only holders of the fds can reach these pipes anyway.
            os.fchmod(r, 0o666)
        theirs = [ends["stdout"][1], ends["stderr"][1], ends["script"][0], ends["data"][0], ends["control"][1]]
        self._fds = {
            "stdout": ends["stdout"][0],
            "stderr": ends["stderr"][0],
            "control": ends["control"][0],
            "script": ends["script"][1],
            "data": ends["data"][1],
        }
        for fd in self._fds.values():
            os.set_blocking(fd, False)
        try:
            await self.sandbox.spawn(
                self.sandbox_id,
                BASH_ARGV,
                self.env,
                self.cwd,
                theirs,
                on_exit=functools.partial(self._on_exit, self.generation),
            )
        except Exception:
            self._close_fds()
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self.alive = True
        self.exit_status = None
        self._gates_known = False
        self._forwarders = {
            name: StreamForwarder(
                name, self.outputs.stream, loop, cap=self.max_output_bytes, max_message_bytes=self.max_message_bytes
            )
            for name in ("stdout", "stderr")
        }
        loop.add_reader(self._fds["stdout"], self._read_output, "stdout")
        loop.add_reader(self._fds["stderr"], self._read_output, "stderr")
        loop.add_reader(self._fds["control"], self._read_control)
        await self._send_script(f". {shlex.quote(str(SESSION_SCRIPT))}\n")

    # -- requests -------------------------------------------------------------------------------

    async def run(self, code, allow_stdin):
        """Run one cell; returns a CellResult once bash says the cell is done (or bash died)."""
        if "\0" in code:
            raise SessionError("the cell contains a NUL character, which bash cannot take")
        if not self.alive:
            await self.start()
        await self._signalling_done()
        nonce = secrets.token_hex(8)
        done = self._loop.create_future()
        result = CellResult()
        self._cell = (nonce, done, result, allow_stdin)
        for forwarder in self._forwarders.values():
            forwarder.begin_cell()
        try:
            await self._send_script(CELL_LINES.format(nonce=nonce))
            await self._send_data([nonce, "1" if allow_stdin else "", code])
            return await done
        finally:
            self._cell = None

    async def query(self, kind, arg):
        """Ask the idle session: completions, inspection text or parse errors. A list of strings."""
        if "\0" in arg:
            return []
        if not self.alive:
            await self.start()
        await self._signalling_done()
        nonce = secrets.token_hex(8)
        reply = self._queries[nonce] = self._loop.create_future()
        try:
            await self._send_script(f"\\__sk_query {nonce}\n")
            await self._send_data([nonce, kind, arg])
            return await asyncio.wait_for(reply, 10)
        except asyncio.TimeoutError:
            raise SessionError(f"session {self.name!r} did not answer") from None
        finally:
            self._queries.pop(nonce, None)

    def interrupt(self):
        """SIGINT to the cell; SIGTERM, SIGKILL of the foreground command, then of bash itself, if
        it does not end. Background jobs are not touched."""
        if self._cell is None:
            return
        if self._input_task is not None:
            self._input_task.cancel()
            self._input_task = None
        nonce = self._cell[0]
        self._under_way(self._interrupt(nonce, self.sandbox.signal(self.sandbox_id, "int")))

    async def _interrupt(self, nonce, delivered):
        # A mark on the data pipe: it ends a builtin read of it (which SIGINT does not), and tells
        # bash of the interrupt when the command ignored SIGINT (see __sk_err); stray marks are
        # skipped by the next request.
        with contextlib.suppress(SessionError):  # the shell ended meanwhile
            await self._send_data(["I"])
        # The supervisor may carry the SIGINT out late (a busy machine), after the mark has ended the
        # cell: the next cell waits for it (bash drops a SIGINT that comes between cells), and the
        # escalation counts from it.
        await delivered
        for what, delay in ESCALATION:
            self._loop.call_later(delay, self._escalate, nonce, what)

    def _escalate(self, nonce, what):
        if self._cell is None or self._cell[0] != nonce or not self.alive:
            return
        self._cell[2].escalation = what
        self._under_way(self.sandbox.signal(self.sandbox_id, what))

    def _under_way(self, awaitable):
        task = asyncio.ensure_future(awaitable)
        self._signalling.add(task)
        task.add_done_callback(self._signalling.discard)

    async def _signalling_done(self):
        """Before a cell or query starts: an interrupt of the last cell must not reach it."""
        if self._signalling:
            _done, late = await asyncio.wait(set(self._signalling), timeout=SIGNAL_WAIT)
            if late:
                for task in late:
                    task.cancel()  # the next cell tries again
                raise SessionError(f"the sandbox did not deliver an interrupt of session {self.name!r} "
                                   f"within {SIGNAL_WAIT} s")

    async def end(self):
        """End bash and every process it started."""
        if self.alive:
            self.sandbox.signal(self.sandbox_id, "end")
        self._teardown()

    # -- bash -> kernel -------------------------------------------------------------------------

    def _read(self, fd):
        """What fd has now: None if nothing yet, b"" at its end (then it is no longer watched)."""
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(fd)
        return data

    def _read_output(self, name, limit=READ_CHUNK * 4):
        if name == "stderr" and not self._gates_known:
            self._read_control()  # sent before any cell could write to stderr: known first
        fd = self._fds.get(name)
        got = 0
        while fd is not None and got < limit:
            data = self._read(fd)
            if not data:
                return
            got += len(data)
            self._forwarders[name].feed(data)

    @property
    def _ctl_limit(self):
        """What the kernel keeps of the control channel at most (a cell can write anything to it)."""
        return 4 * self.max_message_bytes + (1 << 16)

    def _read_control(self):
        fd = self._fds.get("control")
        data = self._read(fd) if fd is not None else None
        if not data:
            return
        pieces = data.split(b"\0")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if not self._ctl_skipping:
                self._ctl_partial += piece
                self._ctl_buffered += len(piece)
            if not self._ctl_skipping and self._ctl_buffered > self._ctl_limit:
                # A field too large (a display past the limit, or garbage): dropped to its end.
                self._ctl_buffered -= len(self._ctl_partial)
                self._ctl_partial.clear()
                self._ctl_skipping = True
            if not last:
                # (bash starts each message with an empty field, which ends any fragment a cell left)
                self._ctl_fields.append(DROPPED if self._ctl_skipping else bytes(self._ctl_partial))
                self._ctl_partial.clear()
                self._ctl_skipping = False
        self._take_messages()
        while self._ctl_fields and self._ctl_buffered > self._ctl_limit:
            self._drop_field()

    def _drop_field(self):
        field = self._ctl_fields.pop(0)
        if field is not DROPPED:
            self._ctl_buffered -= len(field)

    def _expected(self, kind, fields):
        """Whether fields (kind, nonce, ...) start a message that a request of the kernel waits for."""
        if kind == b"DONE":
            return fields[1] == self._cell[0].encode() if self._cell is not None else False
        if kind == b"REPLY":
            return fields[1] is not DROPPED and fields[1].decode("ascii", "replace") in self._queries
        return True

    def _take_messages(self):
        # Anything a cell wrote to the channel is skipped one field at a time, so that a forged or
        # cut message never swallows the real one after it: a DONE or REPLY is only taken with the
        # nonce of the request that waits for it.
        fields = self._ctl_fields
        while fields:
            kind = fields[0]
            need = MESSAGE_FIELDS.get(kind) if kind is not DROPPED else None
            if kind == b"REPLY":
                if len(fields) < 3:
                    return
                try:
                    need = 3 + int(fields[2])
                except (TypeError, ValueError):
                    need = None
                if need is not None and need > self._ctl_limit // 2:
                    need = None
            if need is None:  # not a message start: resynchronise on the next field
                self._drop_field()
                continue
            if len(fields) < 2:
                return
            if not self._expected(kind, fields):
                self._drop_field()
                continue
            if len(fields) < need:
                return
            message = fields[1:need]
            for _ in range(need):
                self._drop_field()
            if DROPPED in message and kind != b"DISPLAY":
                continue
            self._handle(kind, message)

    def _handle(self, kind, message):
        text = [m.decode("utf-8", "replace") for m in message] if kind != b"DISPLAY" else None
        if kind == b"DONE":
            nonce, status, flags, cwd = text
            if self._cell is None or self._cell[0] != nonce:
                return
            self.live_cwd = cwd
            result = self._cell[2]
            try:
                result.status = max(0, min(int(status), 255))
            except ValueError:
                result.status = 1
            result.interrupted = "i" in flags
            result.syntax_error = "s" in flags
            self._finish_cell()
        elif kind == b"INPUT":
            prompt, password = text
            if self._cell is not None:
                self._input_task = asyncio.ensure_future(self._answer_input(self._cell[0], prompt, password == "1"))
        elif kind == b"CWD":
            self.live_cwd = text[0]
        elif kind == b"GATES":
            # The first comes from session.bash before any cell runs; one a cell forges is ignored.
            if not self._gates_known:
                self._gates_known = True
                self._forwarders["stderr"].hide(message)
        elif kind == b"DISPLAY":
            if message[0] is DROPPED:
                return
            mime = message[0].decode("ascii", "replace")
            if message[1] is DROPPED:
                self.outputs.stream("stderr", f"display: the {mime} data is larger than the kernel takes "
                                              f"({self._ctl_limit >> 20} MB)\n")
                return
            self.outputs.display(mime, message[1])
        elif kind == b"REPLY":
            nonce = text[0]
            future = self._queries.get(nonce)
            if future is not None and not future.done():
                future.set_result(text[2:])

    async def _answer_input(self, nonce, prompt, password):
        allow = self._cell is not None and self._cell[0] == nonce and self._cell[3]
        value = await self.outputs.input(prompt, password) if allow else None
        if self._cell is None or self._cell[0] != nonce or not self.alive:
            return  # the cell ended meanwhile (interrupt): bash is no longer waiting
        payload = "E" if value is None else "V" + value.replace("\0", "")
        await self._send_data([payload])

    def _drain_outputs(self):
        for name in ("stdout", "stderr"):
            self._read_output(name, limit=DRAIN_LIMIT)
            if name in self._forwarders:
                self._forwarders[name].end_cell()

    def _finish_cell(self):
        if self._input_task is not None:
            self._input_task.cancel()  # an unanswered input_request must not take a later reply
            self._input_task = None
        self._drain_outputs()
        if self._cell is not None and not self._cell[1].done():
            self._cell[1].set_result(self._cell[2])

    def _on_exit(self, generation, status):
        """The supervisor saw bash end (exit, exec, a signal)."""
        if generation != self.generation or not self.alive:
            return  # a shell already ended and replaced
        self._read_control()  # a DONE written just before the end still counts
        self.alive = False
        self.exit_status = status
        if self._cell is not None and not self._cell[1].done():
            result = self._cell[2]
            result.exited = True
            result.status = status
            self._finish_cell()
        for future in self._queries.values():
            if not future.done():
                future.set_exception(SessionError(f"session {self.name!r} ended while answering"))
        # The supervisor has ended what the shell left running, as closing a terminal would; the
        # next request starts a fresh shell.
        self._teardown()

    def _teardown(self):
        self.alive = False
        if self._loop is not None:
            for name in ("stdout", "stderr"):
                if name in self._fds:
                    self._read_output(name, limit=DRAIN_LIMIT)
            for forwarder in self._forwarders.values():
                forwarder.end_cell()
        self._close_fds()
        self._ctl_fields.clear()
        self._ctl_partial.clear()
        self._ctl_buffered = 0
        self._ctl_skipping = False

    def _close_fds(self):
        for fd in self._fds.values():
            if self._loop is not None:
                self._loop.remove_reader(fd)
                self._loop.remove_writer(fd)
            os.close(fd)
        self._fds = {}
        for future in self._writers:
            if not future.done():
                future.set_result(None)  # the writer loop then sees the pipe gone

    # -- kernel -> bash -------------------------------------------------------------------------

    async def _send_script(self, line):
        await self._write("script", line.encode())

    async def _send_data(self, fields):
        await self._write("data", b"".join(f.encode("utf-8", "surrogateescape") + b"\0" for f in fields))

    async def _write(self, pipe, data):
        async with self._write_lock:
            view = memoryview(data)
            while view:
                fd = self._fds.get(pipe)
                if fd is None:
                    raise SessionError(f"session {self.name!r} has ended")
                try:
                    view = view[os.write(fd, view) :]
                    continue
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    raise SessionError(f"session {self.name!r} has ended") from None
                writable = self._loop.create_future()
                self._writers.add(writable)
                self._loop.add_writer(fd, lambda f=writable: f.done() or f.set_result(None))
                try:
                    await writable
                finally:
                    self._writers.discard(writable)
                    if fd in self._fds.values():
                        self._loop.remove_writer(fd)
