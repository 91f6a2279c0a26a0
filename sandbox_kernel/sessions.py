"""Named bash sessions of one kernel: which exist, and which one a cell runs in."""

from .shell import BashShell


class Sessions:
    def __init__(self, sandbox, outputs, *, cwd, max_output_bytes, max_message_bytes):
        self.sandbox = sandbox
        self.outputs = outputs
        self.options = dict(max_output_bytes=max_output_bytes, max_message_bytes=max_message_bytes)
        self.shells = {}
        self.current = "default"
        self.create("default", cwd=cwd, env={})

    def create(self, name, *, cwd, env):
        shell = BashShell(name, self.sandbox, self.outputs, cwd=cwd, env=self.sandbox.session_env(env), **self.options)
        self.shells[name] = shell
        return shell

    def get(self, name=None):
        return self.shells[name or self.current]

    def busy(self):
        return next((s for s in self.shells.values() if s.busy), None)

    def interrupt(self):
        shell = self.busy()
        if shell is not None:
            shell.interrupt()

    async def end_all(self):
        for shell in self.shells.values():
            await shell.end()
