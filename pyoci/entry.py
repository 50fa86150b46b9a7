"""Console entry point. For the commands that put processes into containers, seal the interpreter first
(class 1: /proc/self/exe becomes a sealed memfd copy), before anything heavy is imported: the re-exec then
costs one bare interpreter start-up instead of a second import of the CLI."""
from __future__ import annotations

import sys

SPAWNING = frozenset({"create", "run", "exec"})
_TAKES_VALUE = frozenset({"--root", "-root", "--log", "-log", "--log-format", "-log-format", "--rootless",
                          "-rootless"})


def command_word(argv: list[str]) -> str | None:
    """The first argument that is not a global flag or its value (the command name)."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in _TAKES_VALUE:
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def main() -> int:
    if command_word(sys.argv[1:]) in SPAWNING:
        from pyoci import confine_seal
        confine_seal.seal()
    from pyoci.cli import main as cli_main
    return cli_main()
