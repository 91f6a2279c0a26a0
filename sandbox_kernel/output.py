"""Turning a session's stdout or stderr bytes into Jupyter stream messages.

Bytes are decoded incrementally (a UTF-8 character split across two reads arrives whole; invalid
bytes become U+FFFD, NUL stays NUL) and coalesced: the first output after a quiet spell goes out
at once, output that keeps coming is sent at most every `interval` seconds or every
`max_message_bytes`, whichever comes first, so a flood becomes few large messages, none larger
than max_message_bytes, and the pending text never exceeds one message and a read. Past the per-cell cap, bytes are read and dropped.

A forwarder can be told byte strings to leave out wherever they occur (`hide`): the kernel's own
trap commands, which bash echoes under `set -v` (session.bash says when).
"""

import codecs
import time

OUTPUT_CAP_NOTICE = (
    "\n[sandbox-kernel: this cell's output passed the {cap} byte limit (SandboxKernel.max_output_bytes); "
    "the rest is discarded while the command runs on]\n"
)


class StreamForwarder:
    def __init__(self, name, emit, loop, *, cap, interval=0.02, max_message_bytes=1 << 20):
        self.name = name
        self.emit = emit  # emit(name, text)
        self.loop = loop
        self.cap = cap
        self.interval = interval
        self.max_message_bytes = max_message_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = []
        self.pending_bytes = 0
        self.seen = 0  # bytes since the cell began
        self.capped = False
        self.last_flush = 0.0
        self.timer = None
        self.hidden = ()
        self.held = b""  # the end of a read that may be the start of a hidden string
        self.release_timer = None

    def hide(self, strings):
        self.hidden = tuple(s for s in strings if s)
        self.firsts = {h[0] for h in self.hidden}
        self.longest = max(map(len, self.hidden), default=0)

    def begin_cell(self):
        self.flush()
        self.seen = 0
        self.capped = False

    def end_cell(self):
        """A cell ended: a character it left half-written is shown as U+FFFD, not held back."""
        self.release()
        if not self.capped:
            tail = self.decoder.decode(b"", final=True)
            if tail:
                self.pending.append(tail)
        self.decoder.reset()
        self.flush()

    def feed(self, data):
        if self.capped:
            return
        if self.hidden:
            data = self.leave_out(data)
        room = self.cap - self.seen
        self.seen += len(data)
        if len(data) > room:
            data = data[:room]
            self.capped = True
        text = self.decoder.decode(data)
        if text:
            self.pending.append(text)
            self.pending_bytes += len(data)
        if self.capped:
            self.pending.append(self.decoder.decode(b"", final=True))
            self.decoder.reset()
            self.pending.append(OUTPUT_CAP_NOTICE.format(cap=self.cap))
            self.flush()
            return
        now = time.monotonic()
        if self.pending_bytes >= self.max_message_bytes or now - self.last_flush >= self.interval:
            self.flush()
        elif self.timer is None and self.pending:
            self.timer = self.loop.call_at(self.loop.time() + self.interval - (now - self.last_flush), self.flush)

    def leave_out(self, data):
        data = self.held + data
        self.held = b""
        for h in self.hidden:
            if h in data:
                data = data.replace(h, b"")
        # A hidden string cut by the end of a read: the rest is already in the pipe (bash writes
        # each in one write), so the tail waits for the next read, or a moment at most.
        start = max(0, len(data) - self.longest + 1)
        for i in range(start, len(data)):
            if data[i] in self.firsts and any(h.startswith(data[i:]) for h in self.hidden):
                self.held, data = data[i:], data[:i]
                if self.release_timer is None:
                    self.release_timer = self.loop.call_later(self.interval, self.release)
                break
        return data

    def release(self):
        """What was held back as a possible start of a hidden string goes out as it is."""
        if self.release_timer is not None:
            self.release_timer.cancel()
            self.release_timer = None
        held, self.held = self.held, b""
        if held:
            hidden, self.hidden = self.hidden, ()
            self.feed(held)
            self.hidden = hidden

    def flush(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        text = "".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        if not text:
            return
        self.last_flush = time.monotonic()
        if len(text) * 4 <= self.max_message_bytes:  # no character is longer than 4 bytes
            self.emit(self.name, text)
            return
        # The last read may have carried pending text past the limit: cut at character bounds.
        raw = text.encode()
        while len(raw) > self.max_message_bytes:
            cut = self.max_message_bytes
            while raw[cut] & 0xC0 == 0x80:  # a continuation byte: back to the character's start
                cut -= 1
            self.emit(self.name, raw[:cut].decode())
            raw = raw[cut:]
        self.emit(self.name, raw.decode())
