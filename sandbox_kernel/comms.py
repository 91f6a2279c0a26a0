"""The kernel's comms, routed by target name to the channel that serves it (the sessions panel,
terminals); a comm opened to any other target is closed at once."""


def send(kernel, parent, msg_type, content):
    """A comm message of the kernel's, on iopub, in answer to parent."""
    kernel.session.send(kernel.iopub_socket, msg_type, content, parent, ident=kernel._topic(msg_type))


class Comms:
    def __init__(self, kernel, channels):
        """channels: {target name: object with async comm_open, comm_msg, comm_close}"""
        self.kernel = kernel
        self.channels = channels
        self.owners = {}  # comm_id -> its channel

    async def comm_open(self, stream, ident, parent):
        content = parent["content"]
        comm_id = content.get("comm_id")
        if not isinstance(comm_id, str):
            return
        if comm_id in self.owners:  # a frontend's bug; the comm that has this id goes on
            self.kernel.log.warning("sandbox-kernel: ignoring a comm_open for comm %s, which is open", comm_id)
            return
        channel = self.channels.get(content.get("target_name"))
        if channel is None:
            send(self.kernel, parent, "comm_close", {"comm_id": comm_id, "data": {}})
            return
        self.owners[comm_id] = channel
        await channel.comm_open(stream, ident, parent)

    async def comm_msg(self, stream, ident, parent):
        channel = self.owners.get(parent["content"].get("comm_id"))
        if channel is not None:
            await channel.comm_msg(stream, ident, parent)

    async def comm_close(self, stream, ident, parent):
        channel = self.owners.pop(parent["content"].get("comm_id"), None)
        if channel is not None:
            await channel.comm_close(stream, ident, parent)
