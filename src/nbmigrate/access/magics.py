"""IPython magic and shell-command text: the magic tables, path-looking tokens and a minimal transform.

The transformed cell spells every magic ``get_ipython().run_line_magic(name, line)`` /
``run_cell_magic(name, line, body)``; :mod:`.syntax` decides what each magic reads and binds with the
tables here, and parses raw magic bodies through :func:`_lite_transform` when they are not Python.
"""

from __future__ import annotations

import re
import shlex
from typing import Final

_PATH_EXT = re.compile(r"\.[A-Za-z][A-Za-z0-9_-]{0,9}$")


def _looks_like_path(s: str) -> bool:
    """A string that may name a file: contains ``/`` or ends in a ``.ext``; one line, < 4096 chars.

    URLs (``scheme://``) are not local paths and are left out.
    """
    if not s or len(s) >= 4096 or "\n" in s or "\r" in s or "\x00" in s or "://" in s:
        return False
    return "/" in s or _PATH_EXT.search(s) is not None


_SHELL_STRIP_LEAD = re.compile(r"^[0-9]*[<>|&]+")


def _shell_paths(text: str) -> set[str]:
    """Path-looking tokens of a shell command line (quotes removed, redirections and ``--opt=`` cut)."""
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError:
        tokens = text.split()
    out: set[str] = set()
    for tok in tokens:
        tok = _SHELL_STRIP_LEAD.sub("", tok).rstrip(";|&")
        if tok.startswith("-") and "=" in tok:
            tok = tok.split("=", 1)[1]
        if not tok or any(c in tok for c in "${}*?"):
            continue
        if _looks_like_path(tok):
            out.add(tok)
    return out


def _shell_label(text: str) -> str:
    return "shell command: " + " ".join(text.split())[:60]


# Magic tables. Magic names are those IPython registers; the transformed source always spells them
# ``get_ipython().run_line_magic(name, line)`` / ``run_cell_magic(name, line, cell)``.

_CONSERVATIVE_MAGICS: Final = frozenset({"who", "whos", "who_ls", "store", "reset", "reset_selective", "xdel"})
"""Magics that read or rewrite the namespace by enumeration: no syntax says which names."""

_NO_VAR_EXPAND_MAGICS: Final = frozenset({"time", "timeit", "prun"})
"""Magics IPython marks ``@no_var_expand``: ``$x``/``{x}`` in their line is code, not interpolation."""

_SHELL_CELL_MAGICS: Final = frozenset(
    {"bash", "sh", "script", "python", "python2", "python3", "pypy", "perl", "ruby", "system"}
)
"""Cell magics whose body runs in another process."""

_SHELL_LINE_MAGICS: Final = frozenset(
    {
        "sx", "system", "pip", "conda", "mamba", "micromamba", "uv",
        # IPython's default POSIX shell aliases (``%ls`` etc.; also reached by automagic ``ls``).
        "cat", "cp", "ldir", "lf", "lk", "ll", "ls", "lx", "mkdir", "mv", "rm", "rmdir",
        "clear", "less", "man", "more",
    }
)  # fmt: skip
"""Line magics that run a shell command (the name itself is the command for aliases and pip)."""


def _split_opts(line: str, spec: str) -> tuple[dict[str, str], str]:
    """Strip leading getopt-style options (``spec`` as in IPython's ``parse_options``) off ``line``.

    Returns the options seen and the rest of the line verbatim (it is code for ``%timeit``/``%prun``).
    Long options (``--no-raise-error``) are dropped. Parsing stops at the first token that is not an
    option of ``spec``.
    """
    opts: dict[str, str] = {}
    rest = line
    while True:
        m = re.match(r"\s*(-\S*)", rest)
        if m is None:
            break
        tok = m.group(1)
        if tok.startswith("--"):
            rest = rest[m.end() :]
            continue
        letters = tok[1:]
        if not letters or letters[0] not in spec:
            break
        consumed = m.end()
        i = 0
        while i < len(letters):
            ch = letters[i]
            k = spec.find(ch)
            if k < 0:
                break
            if k + 1 < len(spec) and spec[k + 1] == ":":
                value = letters[i + 1 :]
                if not value:
                    m2 = re.match(r"\s*(\S+)", rest[consumed:])
                    if m2 is not None:
                        value = m2.group(1)
                        consumed += m2.end()
                opts[ch] = value
                break
            opts[ch] = ""
            i += 1
        rest = rest[consumed:]
    return opts, rest.strip()


# Minimal IPython syntax → Python, only for the raw bodies that magics hand to IPython themselves
# (``%%capture``/``%%time``/``%%timeit`` bodies, ``run_cell`` literals), and only when they do not
# parse as Python. The real cell went through IPython's own transformer before reaching us.
_LITE_CELL_MAGIC = re.compile(r"^\s*%%(\w+)[ \t]*(.*)$")
_LITE_ASSIGN = re.compile(r"^(\s*)([\w.,\s\[\]()*]+?)\s*=\s*([!%])(?![=%])(.*)$")
_LITE_LINE_MAGIC = re.compile(r"^(\s*)%(\w+)[ \t]?(.*)$")
_LITE_SHELL = re.compile(r"^(\s*)(!!?)(.*)$")


def _lite_transform(src: str) -> str:
    lines = src.splitlines()
    if lines:
        m = _LITE_CELL_MAGIC.match(lines[0])
        if m is not None:
            body = "\n".join(lines[1:]) + "\n"
            return f"get_ipython().run_cell_magic({m.group(1)!r}, {m.group(2)!r}, {body!r})\n"
    out = []
    for line in lines:
        if (m := _LITE_ASSIGN.match(line)) is not None:
            ind, target, kind, rest = m.groups()
            if kind == "!":
                call = f"get_ipython().getoutput({rest.strip()!r})"
            else:
                name, _, arg = rest.partition(" ")
                call = f"get_ipython().run_line_magic({name!r}, {arg.strip()!r})"
            out.append(f"{ind}{target.strip()} = {call}")
        elif (m := _LITE_LINE_MAGIC.match(line)) is not None:
            ind, name, arg = m.groups()
            out.append(f"{ind}get_ipython().run_line_magic({name!r}, {arg.strip()!r})")
        elif (m := _LITE_SHELL.match(line)) is not None:
            ind, bang, cmd = m.groups()
            meth = "getoutput" if bang == "!!" else "system"
            out.append(f"{ind}get_ipython().{meth}({cmd.strip()!r})")
        else:
            out.append(line)
    return "\n".join(out) + "\n"
