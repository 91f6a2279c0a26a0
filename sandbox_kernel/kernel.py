"""The Jupyter protocol for sandbox-kernel: execute, complete, inspect, is_complete, interrupt,
shutdown, comms. Every answer comes from a bash session inside the sandbox; nothing here touches the OS."""

import asyncio
import os
import subprocess

from ipykernel.kernelbase import Kernel
from traitlets import Bool, Int

from . import __version__, rich_output, sessions_comm, terminals
from .comms import Comms
from .completion import complete_request, word_at
from .sandbox import Sandbox, SandboxError
from .magics import MagicError, split_cell
from .sessions import Sessions, render_table
from .shell import Outputs, SessionError

# What session.bash says of code that a prompt would wait on (PS2) rather than reject.
INCOMPLETE = ("unexpected end of file", "unexpected EOF", "here-document not terminated", "line continuation")


def _bash_version():
    try:
        out = subprocess.run(["bash", "-c", "echo ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out or "unknown"


class KernelOutputs(Outputs):
    """Session output -> iopub messages, parented to the cell that is running (or ran last)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.parent = {}
        self.silent = False
        self.allow_stdin = False

    def _send(self, msg_type, content):
        if self.silent:
            return
        k = self.kernel
        k.session.send(k.iopub_socket, msg_type, content, self.parent, ident=k._topic(msg_type))

    def stream(self, name, text):
        self._send("stream", {"name": name, "text": text})

    def display(self, mime, payload):
        try:
            data = rich_output.bundle(mime, payload, trusted=self.kernel.trusted_rich_output)
        except ValueError as e:  # Refused, or data that is not what its type says
            self.stream("stderr", f"{e}\n")
            return
        self.display_bundle(data)

    def display_bundle(self, data):
        self._send("display_data", {"data": data, "metadata": {}, "transient": {}})

    async def input(self, prompt, password):
        if not self.allow_stdin:
            return None
        k = self.kernel
        while k.stdin_socket.poll(0):  # stale replies of an earlier, interrupted request
            k.stdin_socket.recv_multipart()
        ident = k._get_shell_context_var(k._shell_parent_ident)
        k.session.send(k.stdin_socket, "input_request", {"prompt": prompt, "password": password}, self.parent, ident=ident)
        while True:
            # The stdin socket belongs to ipykernel and has no asyncio hook; a human is typing.
            if k.stdin_socket.poll(0):
                _ident, reply = k.session.recv(k.stdin_socket)
                if reply is not None:
                    break
            await asyncio.sleep(0.02)
        try:
            value = reply["content"]["value"]
        except (KeyError, TypeError):
            return None
        return None if value == "\x04" else str(value)


class SandboxKernel(Kernel):
    implementation = "sandbox_kernel"
    implementation_version = __version__
    language = "bash"

    max_output_bytes = Int(
        256 << 20,
        help="""Bytes of stdout (and, separately, of stderr) a cell may send to the frontend. Past
        it the kernel says so once and discards the rest while the command runs on.""",
    ).tag(config=True)

    max_message_bytes = Int(
        1 << 20,
        help="""Largest stream message: output that keeps coming is coalesced into messages of at
        most this many bytes (or every 20 ms, whichever is first).""",
    ).tag(config=True)

    error_on_nonzero_exit = Bool(
        True,
        help="""A cell whose last command exits non-zero is reported as an error (ename
        'ExitCode'), which stops nbclient and papermill runs. False: reported as ok.""",
    ).tag(config=True)

    trusted_rich_output = Bool(
        False,
        help="""Send `display` output to the frontend as the cell gave it, any MIME type, HTML and
        SVG with their scripts. JupyterLab runs those in its page with the server's token: a
        cell can then act as the user on the server (open a terminal on the host). False: inert
        types only, HTML, SVG and Markdown sanitised, other types refused.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sandbox = Sandbox(parent=self)
        app = self.parent
        self.sandbox.start(os.getcwd(), getattr(app, "abs_connection_file", None))
        self.outputs = KernelOutputs(self)
        self.sessions = Sessions(
            self.sandbox,
            self.outputs,
            cwd=self.sandbox.cwd,
            max_output_bytes=self.max_output_bytes,
            max_message_bytes=self.max_message_bytes,
        )
        self._loop = None
        self.executing = False
        self._warned = False
        comms = Comms(self, {sessions_comm.TARGET: sessions_comm.SessionsComm(self), terminals.TARGET: terminals.Terminals(self)})
        for msg_type in ("comm_open", "comm_msg", "comm_close"):
            self.shell_handlers[msg_type] = getattr(comms, msg_type)
        self._ran_in = None
        bash = _bash_version()
        self.language_info = {
            "name": "bash",
            "version": bash,
            "mimetype": "text/x-sh",
            "file_extension": ".sh",
            "codemirror_mode": "shell",
            "pygments_lexer": "bash",
        }
        self.banner = f"sandbox-kernel {__version__}: bash {bash}, one persistent session per cell stream.\n"
        if self.sandbox.warning:
            self.banner += self.sandbox.warning + "\n"

    # -- execute --------------------------------------------------------------------------------

    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False, **_):
        self.executing = True
        try:
            return await self._execute(code, silent, allow_stdin)
        finally:
            self.executing = False

    async def _execute(self, code, silent, allow_stdin):
        self._loop = asyncio.get_running_loop()
        self.outputs.parent = self.get_parent("shell")
        self.outputs.silent = silent
        self.outputs.allow_stdin = allow_stdin
        if not self._warned and (self.sandbox.warning or self.sandbox.notice):
            self._warned = True
            self.outputs.stream("stderr", (self.sandbox.warning or self.sandbox.notice) + "\n")
        try:
            magics, bash = split_cell(code)
            self.sessions.check(magics)
        except MagicError as e:
            return self._error("MagicError", str(e))
        target = None
        made, current = [], self.sessions.current
        for magic in magics:
            try:
                if magic.action == "cell":
                    target = magic.name
                    continue
                if magic.action == "sandbox":
                    shown = self.sandbox.network_report() if magic.name == "network" else self.sandbox.describe()
                else:
                    shown = await self.sessions.apply(magic)
            except (SessionError, SandboxError) as e:
                await self.sessions.undo(made, current)  # a cell whose magics fail changes nothing
                return self._error("SessionError", str(e))
            if magic.action == "create":
                made.append(magic.name)
            if isinstance(shown, list):
                text, table = render_table(shown)
                self.outputs.display_bundle({"text/plain": text, "text/html": table})
            elif shown:
                self.outputs.stream("stdout", shown)
        shell = self.sessions.get(target)
        self._ran_in = shell.name
        if magics and not bash.strip():
            return self._ok()
        try:
            result = await shell.run(bash, allow_stdin)
        except (SessionError, SandboxError) as e:
            return self._error("SessionError", str(e))
        return self._report(shell, result)

    def _report(self, shell, result):
        if result.escalation == "shell":  # the kernel ended the shell: not the shell's own exit
            return self._error("Interrupted", f"the cell was interrupted (the shell ignored it: session {shell.name!r} was restarted)")
        if result.exited:
            how = f"exit status {result.status}" if result.status >= 0 else f"signal {-result.status}"
            message = f"session {shell.name!r} ended ({how}); the next cell starts a fresh shell in {shell.cwd}"
            if result.status != 0 and self.error_on_nonzero_exit:
                return self._error("ShellExited", message)
            self.outputs.stream("stderr", f"[{message}]\n")
        elif result.interrupted or result.escalation:
            how = {"": "", "term": " (it ignored SIGINT: ended with SIGTERM)", "kill": " (it ignored SIGINT and SIGTERM: killed)"}[result.escalation]
            return self._error("Interrupted", f"the cell was interrupted{how}")
        elif result.syntax_error:
            return self._error("SyntaxError", "bash could not parse the cell; nothing in it ran")
        elif result.status != 0 and self.error_on_nonzero_exit:
            return self._error("ExitCode", f"exit status {result.status}")
        return self._ok()

    def _ok(self):
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}

    def _error(self, ename, evalue):
        content = {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}
        self.outputs._send("error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}

    @property
    def kernel_info(self):
        return {**super().kernel_info, "sandbox": self.sandbox.status()}

    def finish_metadata(self, parent, metadata, reply_content):
        metadata = super().finish_metadata(parent, metadata, reply_content)
        metadata["sandbox"] = {"session": self._ran_in}
        return metadata

    # -- questions about code -------------------------------------------------------------------

    async def _ask(self, kind, arg):
        self._loop = asyncio.get_running_loop()
        shell = self.sessions.get()
        if self.sessions.busy() is not None:
            return None
        try:
            return await shell.query(kind, arg)
        except (SessionError, SandboxError):
            return None

    async def do_complete(self, code, cursor_pos):
        return await complete_request(code, cursor_pos, self._ask)

    async def do_inspect(self, code, cursor_pos, detail_level=0, omit_sections=()):
        word = word_at(code, cursor_pos)
        reply = await self._ask("inspect", word) if word else None
        text = "\n\n".join(reply or [])
        found = bool(text) and not text.endswith(": not found")
        return {"status": "ok", "found": found, "data": {"text/plain": text} if found else {}, "metadata": {}}

    async def do_is_complete(self, code):
        reply = await self._ask("parse", code)
        if reply is None:
            return {"status": "unknown"}
        errors = reply[0] if reply else ""
        if not errors:
            return {"status": "complete"}
        if any(s in errors for s in INCOMPLETE):
            return {"status": "incomplete", "indent": ""}
        return {"status": "invalid"}

    # -- control --------------------------------------------------------------------------------

    async def interrupt_request(self, stream, ident, parent):
        # Runs on the control thread; the sessions live on the main loop.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.sessions.interrupt)
        self.session.send(stream, "interrupt_reply", {"status": "ok"}, parent, ident=ident)

    async def do_shutdown(self, restart):
        # Runs on the control thread; the sandbox's pipes and sockets belong to the main loop.
        if self._loop is not None:
            ended = asyncio.run_coroutine_threadsafe(self._end_sandbox(), self._loop)
            try:
                await asyncio.wait_for(asyncio.wrap_future(ended), 5)
            except asyncio.TimeoutError:
                self.sandbox.stop()  # closing the supervisor's socket ends the sandbox anyway
        return {"status": "ok", "restart": restart}

    async def _end_sandbox(self):
        await self.sessions.end_all()
        self.sandbox.stop()
