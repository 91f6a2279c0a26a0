"""The sessions panel's channel: a Jupyter comm (target `sandbox_kernel.sessions`) over which a
frontend lists the kernel's sessions and asks to use, restart or delete one. Every answer is the
whole list, with a one-line error when a request could not be carried out."""

from .comms import send
from .magics import NAME, Magic, MagicError
from .shell import SessionError

TARGET = "sandbox_kernel.sessions"
ACTIONS = ("list", "use", "restart", "delete")


class SessionsComm:
    def __init__(self, kernel):
        self.kernel = kernel
        self.comm_ids = set()

    # Shell handlers, through comms.py (ipykernel dispatches comm messages even while a cell runs).

    async def comm_open(self, stream, ident, parent):
        comm_id = parent["content"]["comm_id"]
        self.comm_ids.add(comm_id)
        await self._answer(parent, comm_id, None)

    async def comm_msg(self, stream, ident, parent):
        comm_id = parent["content"].get("comm_id")
        if comm_id in self.comm_ids:
            await self._answer(parent, comm_id, await self._act(parent["content"].get("data")))

    async def comm_close(self, stream, ident, parent):
        self.comm_ids.discard(parent["content"].get("comm_id"))

    # -- requests -------------------------------------------------------------------------------

    async def _act(self, data):
        """Carry out one request; None, or the one line that says why it was not."""
        action = data.get("action") if isinstance(data, dict) else None
        if action not in ACTIONS:
            return f"unknown request {action!r}: expected one of {', '.join(ACTIONS)}"
        if action == "list":
            return None
        name = data.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            return f"{action}: {name!r} is not a session name"
        sessions = self.kernel.sessions
        # A cell may be using the session, or be changing the list itself (its magics).
        if action != "use" and self.kernel.executing:
            return f"{action} {name}: a cell is running; interrupt it or wait until it has finished"
        magic = Magic(action, name)
        try:
            sessions.check([magic])
            await sessions.apply(magic)
        except (MagicError, SessionError) as e:
            return str(e)
        return None

    async def _answer(self, parent, comm_id, error):
        sessions = self.kernel.sessions
        snapshot = {"sessions": await sessions.table(), "current": sessions.current, "error": error}
        send(self.kernel, parent, "comm_msg", {"comm_id": comm_id, "data": snapshot})
