"""Text read from records, logs and manifests, made safe to print on a terminal.

A progress record, a manifest or a log is written by a process on some node, or by whoever can
write to a shared folder; what it says must not drive the terminal that shows it. An escape
sequence such as ``"\\x1b]0;title\\x07\\x1b[2J"`` (retitle the window, clear the screen) is
neutralised by escaping its control characters visibly: the text is shown as
``\\x1b]0;title\\x07\\x1b[2J``, nothing is dropped.

Escaped: the C0 controls (``\\x00``-``\\x1f``), DEL (``\\x7f``), the C1 controls
(``\\x80``-``\\x9f``, among them the 8-bit CSI ``\\x9b``), the line and paragraph separators
(U+2028, U+2029), the bidirectional overrides and isolates (which reorder what is shown), and
lone surrogates (undecodable bytes, which would also make the write fail). Tab, newline and
carriage return are shown as ``\\t``, ``\\n`` and ``\\r``; :func:`printable_lines` keeps the
newlines (and tabs) of a message of several lines and indents its continuation lines, so that no
line of it can pass for a line of the program's own output. A backslash is left as it is.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["printable", "printable_lines"]

_BIDI: Final = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROLS: Final = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff" + _BIDI
# One line: every control character, tab and newline included.
_UNSAFE_IN_LINE: Final = re.compile(f"[\t\n{_CONTROLS}]")
# Several lines: the same but newline and tab.
_UNSAFE_IN_LINES: Final = re.compile(f"[{_CONTROLS}]")

_NAMED: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` as one line safe to print: every control character escaped, tab and newline too.

    >>> printable("node-1\\x1b]0;pwned\\x07\\n")
    'node-1\\\\x1b]0;pwned\\\\x07\\\\n'
    """
    return _UNSAFE_IN_LINE.sub(_escape, text)


def printable_lines(text: str, indent: str = "  ") -> str:
    """``text`` safe to print as several lines: control characters escaped but newline and tab,
    every line after the first prefixed with ``indent``.

    >>> printable_lines("failed:\\nline 2\\r\\x1b[2J")
    'failed:\\n  line 2\\\\r\\\\x1b[2J'
    """
    return _UNSAFE_IN_LINES.sub(_escape, text).replace("\n", "\n" + indent)
