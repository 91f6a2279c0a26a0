"""What to complete at the cursor (pure text work); the candidates come from the session itself,
so they see its cwd, PATH, functions and variables."""

import re

WORD_BREAKS = " \t\n;|&()<>`\"'="
COMMAND_STARTS = ("", ";", "|", "&", "(", "`", "$(", "{", "then", "do", "else", "elif", "!", "time")


def current_token(code, cursor_pos):
    """(start, token) of the word that ends at the cursor."""
    start = cursor_pos
    while start > 0 and code[start - 1] not in WORD_BREAKS:
        start -= 1
    return start, code[start:cursor_pos]


def in_command_position(code, start):
    before = code[:start].rstrip(" \t")
    if not before or before.endswith("\n"):
        return True
    last = re.search(r"(\$\(|&&|\|\||[;|&(`{!]|\b\w+)$", before)
    return bool(last) and last.group(1) in COMMAND_STARTS + ("&&", "||")


def word_at(code, cursor_pos):
    """The word under or just before the cursor, for inspection."""
    left = re.search(r"[\w.:+@%-]*$", code[:cursor_pos]).group(0)
    right = re.match(r"[\w.:+@%-]*", code[cursor_pos:]).group(0)
    return left + right


async def complete_request(code, cursor_pos, ask):
    """A complete_reply; `ask(kind, prefix)` queries the session (None if it cannot answer)."""
    start, token = current_token(code, cursor_pos)
    matches = []
    dollar = token.rfind("$")
    if dollar >= 0:
        brace = token[dollar + 1 : dollar + 2] == "{"
        lead = token[: dollar + (2 if brace else 1)]
        names = await ask("variables", token[len(lead):]) or []
        matches = [lead + n + ("}" if brace else "") for n in names]
    else:
        if in_command_position(code, start) and "/" not in token:
            matches = await ask("commands", token) or []
        if not matches or "/" in token:
            matches += await ask("files", token) or []
    return {
        "status": "ok",
        "matches": sorted(set(matches)),
        "cursor_start": start,
        "cursor_end": cursor_pos,
        "metadata": {},
    }
