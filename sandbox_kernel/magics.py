"""Parsing of the kernel's magics: `%session ...`, `%%session NAME` and `%sandbox [network]`. Pure functions.

Magic lines are recognised only at the top of a cell, before its first bash line; everything after
is bash, verbatim. A `%word` line that is not ours is bash (job specs such as `%1` or `%vim`).
"""

import dataclasses
import re
import shlex

NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OURS = re.compile(r"^(%%session|%session|%sandbox)(\s|$)")

USAGE = """\
%session                                   print the current session
%session list                              name, current, cwd, state, background jobs, created
%session create NAME [--cwd DIR] [--env KEY=VALUE]...
                                           a new bash session; DIR absolute or relative to the
                                           notebook's directory; KEY=VALUE added to its environment
%session use NAME                          following cells run in NAME
%session restart [NAME]                    a fresh shell with NAME's creation cwd and env
%session delete NAME                       end NAME and every process it started
%%session NAME                             (first line) run this cell in NAME only
%sandbox [status]                          the isolation in force
%sandbox network                           the network, and with Sandbox.network=proxy each
                                           request cells made through the proxy, allowed or not
NAME: 1 to 64 of A-Z a-z 0-9 _ . -; the session 'default' always exists."""


class MagicError(ValueError):
    """Bad magic input; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Magic:
    action: str  # show, list, create, use, restart, delete, help, cell, sandbox
    name: str | None = None
    cwd: str | None = None
    env: tuple = ()  # ((key, value), ...)


def split_cell(code):
    """(magics, bash): the magic lines at the top of a cell, parsed, and the rest verbatim."""
    lines = code.split("\n")
    magics = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line and not magics:
            i += 1
            continue
        if not OURS.match(line):
            break
        magics.append(parse_line(line, first=not magics))
        i += 1
    if not magics:
        return [], code
    return magics, "\n".join(lines[i:])


def _name(value, what="session name"):
    if not NAME.fullmatch(value):
        raise MagicError(f"%session: {value!r} is not a valid {what} (1-64 of A-Z a-z 0-9 _ . -)")
    return value


def parse_line(line, first=True):
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise MagicError(f"{line.split()[0]}: {e}") from None
    head, args = words[0], words[1:]
    if head == "%%session":
        if not first:
            raise MagicError("%%session NAME must be the first line of the cell")
        if len(args) != 1:
            raise MagicError("usage: %%session NAME (first line of the cell)")
        return Magic("cell", name=_name(args[0]))
    if head == "%sandbox":
        if args not in ([], ["status"], ["network"]):
            raise MagicError(f"%sandbox: unknown argument {' '.join(args)!r} (usage: %sandbox [status|network])")
        return Magic("sandbox", name="network" if args == ["network"] else None)
    if not args:
        return Magic("show")
    sub, rest = args[0], args[1:]
    if sub in ("--help", "-h", "help"):
        return Magic("help")
    if sub == "list":
        _no_more(sub, rest)
        return Magic("list")
    if sub in ("use", "delete"):
        if len(rest) != 1:
            raise MagicError(f"usage: %session {sub} NAME")
        return Magic(sub, name=_name(rest[0]))
    if sub == "restart":
        if len(rest) > 1:
            raise MagicError("usage: %session restart [NAME]")
        return Magic("restart", name=_name(rest[0]) if rest else None)
    if sub == "create":
        return _parse_create(rest)
    raise MagicError(f"%session: unknown subcommand {sub!r} (see %session --help)")


def _no_more(sub, rest):
    if rest:
        raise MagicError(f"%session {sub}: unexpected argument {rest[0]!r}")


def _parse_create(args):
    if not args or args[0].startswith("-"):
        raise MagicError("usage: %session create NAME [--cwd DIR] [--env KEY=VALUE]...")
    name, cwd, env = _name(args[0]), None, []
    i = 1
    while i < len(args):
        arg = args[i]
        option, eq, value = arg.partition("=")
        if option not in ("--cwd", "--env"):
            raise MagicError(f"%session create: unknown argument {arg!r} (expected --cwd DIR or --env KEY=VALUE)")
        if not eq:
            if i + 1 >= len(args):
                raise MagicError(f"%session create: {option} needs a value")
            value = args[i + 1]
            i += 1
        i += 1
        if option == "--cwd":
            if cwd is not None:
                raise MagicError("%session create: --cwd given twice")
            if not value or "\0" in value:
                raise MagicError("%session create: --cwd needs a directory")
            cwd = value
        else:
            key, has_eq, val = value.partition("=")
            if not has_eq:
                raise MagicError(f"%session create: --env {value!r} needs the form KEY=VALUE")
            if not ENV_KEY.fullmatch(key):
                raise MagicError(f"%session create: --env {key!r} is not a variable name")
            if "\0" in val:
                raise MagicError(f"%session create: --env {key} has a NUL character")
            env.append((key, val))
    return Magic("create", name=name, cwd=cwd, env=tuple(env))
