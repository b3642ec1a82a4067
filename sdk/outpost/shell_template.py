"""Filling a shell command template with values that stay values: no shell injection.

A :class:`~outpost.shell.ShellFunction` on a shared endpoint is the owner's command with the
submitter's values in its ``{placeholders}``, run by ``/bin/sh`` *as the owner*.  If a value
were pasted in as text, ``msg="hi; id > /tmp/X"`` would run ``id`` as the owner and the
endpoint's function allow-list would mean nothing.  So every value is quoted for the shell
context its placeholder sits in, and the command sees the literal string:

* outside quotes (also inside ``$( ... )``, even within ``"..."``): :func:`shlex.quote` -- one
  word, whatever it holds;
* inside ``'...'``: each ``'`` becomes ``'\\''``;
* inside ``"..."``: ``\\``, ``$``, `````` ` `````` and ``"`` are backslash-escaped (the only
  characters special there).

The context is found by scanning the template's own text (the owner's, fixed by the function
id).  A placeholder in a context whose quoting rules are not that simple is refused with an error
naming it rather than guessed at: inside backticks, ``${...}``, ``$((...))``, a ``#`` comment
or after a here-document (``<<``), and right after an unescaped ``\\`` or ``$``.

This runs where the command runs -- in the endpoint's worker, from the endpoint's installed
``outpost`` package (a ``ShellFunction`` is pickled by reference), so a client cannot skip it.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Collection, Mapping
from typing import Any

from outpost.errors import ConfigurationError

#: Contexts whose quoting is simple (``top`` and ``cmd``: unquoted words).
_UNQUOTED = ("top", "cmd")
#: Contexts a placeholder may not appear in (see the module docstring).
_REFUSED = {
    "bt": "inside backticks",
    "param": "inside ${...}",
    "arith": "inside $((...))",
    "aparen": "inside $((...))",
    "comment": "inside a # comment",
}
#: The character that ends each context left at one character.
_ENDS = {"sq": "'", "comment": "\n", "dq": '"', "param": "}"}
#: Characters a launcher option may never hold: they only make sense to a shell.
LAUNCHER_OPTION_FORBIDDEN = frozenset(";&|<>`$\n\r\\")


class _Scanner:
    """Tracks the shell context at the end of the literal text seen so far."""

    def __init__(self) -> None:
        self.stack = ["top"]
        self.heredoc = False
        self.escaped = False  # the last character was an unescaped backslash
        self.last = ""  # the last character seen (outside single quotes)

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            i = self._step(text, i)

    def _step(self, text: str, i: int) -> int:
        c, top = text[i], self.stack[-1]
        nxt = text[i + 1 : i + 3]
        if self.escaped:
            self.escaped, self.last = False, "x"
            return i + 1
        self.last = c
        if top in ("sq", "comment"):  # nothing is special inside them but their end
            self._close_at(c)
            return i + 1
        if c == "\\":
            self.escaped = True
            return i + 1
        if c == "`":  # ends a backtick substitution, or starts one
            if top == "bt":
                self.stack.pop()
            else:
                self.stack.append("bt")
            return i + 1
        if c == "$" and nxt[:2] == "((":
            self.stack.append("arith")
            return i + 3
        if c == "$" and nxt[:1] == "(":
            self.stack.append("cmd")
            return i + 2
        if c == "$" and nxt[:1] == "{":
            self.stack.append("param")
            return i + 2
        if top in ("dq", "param"):
            self._close_at(c)
            return i + 1
        if top in ("arith", "aparen"):
            if c == "(":
                self.stack.append("aparen")
            elif c == ")":
                self.stack.pop()
                if top == "arith" and text[i + 1 : i + 2] == ")":
                    return i + 2  # the closing "))" of $((...))
            return i + 1
        # unquoted: top level, inside $( ... ) or inside backticks
        if c == "'":
            self.stack.append("sq")
        elif c == '"':
            self.stack.append("dq")
        elif c == "(" and top != "bt":
            self.stack.append("cmd")
        elif c == ")" and top == "cmd":
            self.stack.pop()
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n;&|(") and top != "bt":
            self.stack.append("comment")
        elif c == "<" and text[i + 1 : i + 2] == "<":
            self.heredoc = True
        return i + 1

    def _close_at(self, c: str) -> None:
        """Leave the current context if ``c`` is the character that ends it."""
        if c == _ENDS[self.stack[-1]]:
            self.stack.pop()

    def problem(self) -> str | None:
        """Why a placeholder may not go here, or None."""
        if self.escaped:
            return "right after a backslash"
        if self.last == "$" and self.stack[-1] != "sq":
            return "right after '$'"
        if self.heredoc:
            return "after a here-document (<<)"
        for context in self.stack:
            if context in _REFUSED:
                return _REFUSED[context]
        return None

    def quote(self, text: str, *, prequoted: bool = False) -> str:
        """``text`` made literal here; ``prequoted`` text (already shell words) is kept as is
        where words are expected."""
        top = self.stack[-1]
        if top == "sq":
            return text.replace("'", "'\\''")
        if top == "dq":
            return "".join("\\" + c if c in '\\$`"' else c for c in text)
        return text if prequoted else shlex.quote(text)


def fill(template: str, values: Mapping[str, Any], *, prequoted: Collection[str] = ()) -> str:
    """``template`` with each ``{name}`` (``str.format`` syntax) replaced by ``values[name]``,
    quoted for its shell context.  Raises KeyError/IndexError for a missing value (as
    ``str.format``) and ConfigurationError for a placeholder where no quoting is safe.

    Fields named in ``prequoted`` hold text that is already shell words (the endpoint's own
    quoting, e.g. :func:`launcher_options`); chosen by the caller by name, never by the value's
    type, so no value a submitter sends can skip quoting."""
    formatter = string.Formatter()
    scanner = _Scanner()
    out: list[str] = []
    for literal, field, spec, conversion in formatter.parse(template):
        scanner.feed(literal)
        out.append(literal)
        if field is None:
            continue
        problem = scanner.problem()
        if problem is not None:
            raise ConfigurationError(
                f"shell command template {template!r}: placeholder {{{field}}} is {problem}, "
                "where its value cannot be quoted safely; put it outside quotes or inside plain "
                "'...' or \"...\" (values are quoted for you)"
            )
        value, _ = formatter.get_field(field, (), values)
        value = formatter.convert_field(value, conversion)
        if spec and "{" in spec:
            spec = formatter.vformat(spec, (), values)
        text = formatter.format_field(value, spec or "")
        out.append(scanner.quote(text, prequoted=field in prequoted))
    return "".join(out)


def check_template(template: str) -> None:
    """Raise ConfigurationError if a placeholder of ``template`` sits where values cannot be
    quoted (checked when a ShellFunction is made, so its owner hears of it at once)."""

    class _Any(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return ""

    try:
        fill(template, _Any())
    except ConfigurationError:
        raise
    except (KeyError, IndexError, AttributeError, TypeError, ValueError):
        pass  # {x.y}, {x[0]}, {0} or a bad format spec: only real values can tell


def launcher_options(options: str) -> str:
    """``launcher_options`` of a resource specification as safe argv words: split like a shell
    would (``shlex.split``), each word quoted, and shell metacharacters refused."""
    bad = sorted({c for c in options if c in LAUNCHER_OPTION_FORBIDDEN})
    if bad:
        raise ConfigurationError(
            f"'launcher_options' {options!r} holds shell metacharacter(s) {bad}: launcher "
            "options are passed to the MPI launcher as arguments, never to a shell; remove them"
        )
    try:
        words = shlex.split(options)
    except ValueError as exc:
        raise ConfigurationError(
            f"'launcher_options' {options!r} cannot be split into arguments ({exc}); "
            "balance its quotes"
        ) from exc
    return " ".join(shlex.quote(word) for word in words)
