"""Text from outside (label names from a Hub repository, file names, library and torch messages) made harmless for a
terminal, at the point where the command line prints it.

A terminal interprets escape sequences and other control characters: a label name could clear the screen, set the
window title, write to the clipboard (OSC 52) or reorder the line (bidirectional overrides), and torch's messages
carry ANSI colour codes. ``terminal_text`` removes ANSI CSI sequences (colours, cursor moves) and writes every other
character Python does not print (controls, format characters, separators) as its escape, as ``repr`` writes it.
JSON output needs none of this: ``json.dumps`` escapes control characters itself.
"""
import re

__all__ = ['terminal_text']

# ESC [ parameters intermediates final: colours, cursor moves, erasing (ECMA-48 control sequences).
_CSI = re.compile(r'\x1b\[[0-?]*[ -/]*[@-~]')


def _escape(char: str) -> str:
    code = ord(char)
    return f'\\x{code:02x}' if code < 0x100 else f'\\u{code:04x}' if code < 0x10000 else f'\\U{code:08x}'


def terminal_text(text: object) -> str:
    """``str(text)`` as a terminal may print it: ANSI CSI sequences removed, other unprintable characters escaped
    (``\\x1b``, ``\\u202e``); printable text, non-ASCII letters included, unchanged."""
    return ''.join(c if c.isprintable() else _escape(c) for c in _CSI.sub('', str(text)))
