"""Named bash sessions of one kernel: create, use, list, restart, delete, and which one a cell
runs in. All of them live in the kernel's one sandbox."""

import datetime
import html

from .magics import USAGE, MagicError
from .shell import BashShell, SessionError

DEFAULT = "default"


class Sessions:
    def __init__(self, sandbox, outputs, *, cwd, max_output_bytes, max_message_bytes):
        self.sandbox = sandbox
        self.outputs = outputs
        self.home = cwd  # the notebook's directory: where `default` starts, and relative --cwd
        self.options = dict(max_output_bytes=max_output_bytes, max_message_bytes=max_message_bytes)
        self.shells = {}
        self.created = {}
        self.current = DEFAULT
        self._add(DEFAULT, cwd, {})

    def _add(self, name, cwd, env):
        shell = BashShell(name, self.sandbox, self.outputs, cwd=cwd, env=self.sandbox.session_env(env), **self.options)
        self.shells[name] = shell
        self.created[name] = datetime.datetime.now()
        return shell

    def get(self, name=None):
        return self.shells[name or self.current]

    def busy(self):
        return next((s for s in self.shells.values() if s.busy), None)

    def interrupt(self):
        shell = self.busy()
        if shell is not None:
            shell.interrupt()

    # -- magics ---------------------------------------------------------------------------------

    def check(self, magics):
        """Refuse a cell's magics before any of them acts, so that bad input changes nothing."""
        names = set(self.shells)
        for magic in magics:
            if magic.action == "create" and magic.name in names:
                raise MagicError(f"%session create: a session named {magic.name!r} already exists")
            if magic.action in ("use", "delete", "cell") and magic.name not in names:
                raise MagicError(f"%session: no session named {magic.name!r} (see %session list)")
            if magic.action == "restart" and magic.name is not None and magic.name not in names:
                raise MagicError(f"%session restart: no session named {magic.name!r}")
            if magic.action == "delete" and magic.name == DEFAULT:
                raise MagicError("%session delete: the session 'default' cannot be deleted (restart it instead)")
            if magic.action == "create":
                names.add(magic.name)
            if magic.action == "delete":
                names.discard(magic.name)

    async def apply(self, magic):
        """Carry out one session magic; the text to show the user, if any."""
        if magic.action == "show":
            return f"{self.current}\n"
        if magic.action == "help":
            return USAGE + "\n"
        if magic.action == "list":
            return await self.table()
        if magic.action == "create":
            cwd = magic.cwd if magic.cwd is not None else self.home
            if not cwd.startswith("/"):
                cwd = f"{self.home.rstrip('/')}/{cwd}"
            shell = self._add(magic.name, cwd, dict(magic.env))
            try:
                await shell.start()
            except Exception as e:
                del self.shells[magic.name], self.created[magic.name]
                raise SessionError(f"%session create {magic.name}: {e}") from None
            return None
        if magic.action == "use":
            self.current = magic.name
            return None
        if magic.action == "restart":
            shell = self.get(magic.name)
            await shell.end()
            try:
                await shell.start()
            except Exception as e:
                raise SessionError(f"%session restart {shell.name}: {e}") from None
            return f"session {shell.name!r} restarted in {shell.cwd}\n"
        if magic.action == "delete":
            shell = self.shells.pop(magic.name)
            del self.created[magic.name]
            await shell.end()
            if self.current == magic.name:
                self.current = DEFAULT
                return f"session {magic.name!r} deleted; cells now run in 'default'\n"
            return None
        raise AssertionError(magic.action)

    async def undo(self, created, current):
        """Take back what a cell's magics did before one of them failed: the sessions it created
        and the session it switched to."""
        for name in created:
            shell = self.shells.pop(name, None)
            self.created.pop(name, None)
            if shell is not None:
                await shell.end()
        self.current = current if current in self.shells else DEFAULT

    async def table(self):
        rows = []
        for name, shell in self.shells.items():
            jobs = await shell.job_count() if shell.alive and not shell.busy else None
            rows.append(
                {
                    "name": name,
                    "current": name == self.current,
                    "cwd": shell.live_cwd,
                    "state": shell.state,
                    "jobs": jobs,
                    "created": self.created[name].strftime("%H:%M:%S"),
                }
            )
        return rows

    async def end_all(self):
        for shell in self.shells.values():
            await shell.end()


def render_table(rows):
    """(text/plain, text/html) of `%session list`."""
    header = ("", "name", "cwd", "state", "jobs", "created")
    cells = [("*" if r["current"] else "", r["name"], r["cwd"], r["state"], "-" if r["jobs"] is None else str(r["jobs"]), r["created"]) for r in rows]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    text = "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header, *cells]) + "\n"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in cells)
    head = "".join(f"<th>{h}</th>" for h in header)
    return text, f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
