"""How a `corral` verb is registered, so that its ``--help`` says what it does and shows it.

Every verb and nested verb (``rollout undo``, ``node drain``, ``delete
gitsource``) is added with :func:`add_verb`: a one-sentence description, and
an epilog with at least one example that starts with ``corral`` and the
verb. tests/unit/test_cli_help.py walks the parser and holds every verb (and
every flag's help string) to that, and to docs/CLI.md.
"""
import argparse

EXAMPLE = "example:"


class VerbHelp(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples (the epilog) as written, one command a line; wraps the description to the terminal."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        # argparse makes a formatter for every argument added, and its own would import shutil (and with it
        # three compression modules) for the terminal's width on every command: asked here without it.
        super().__init__(prog, indent_increment, max_help_position, terminal_columns() - 2 if width is None else width)

    def _fill_text(self, text, width, indent):
        if text.startswith(EXAMPLE):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def terminal_columns():
    """The terminal's width as ``shutil.get_terminal_size`` decides it: ``$COLUMNS``, else stdout's
    terminal, else 80."""
    import os
    import sys
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def add_verb(sub, name, summary, examples, description=None, **kw):
    """Add verb ``name`` to the subparsers ``sub`` and return its parser.

    ``summary`` is its line in the parent's list of verbs and, unless
    ``description`` says more, its description; ``examples`` (command lines)
    are its epilog, kept as written.
    """
    return sub.add_parser(name, help=summary, description=description or _sentence(summary),
                          epilog=EXAMPLE + "\n" + "\n".join(f"  {line}" for line in examples),
                          formatter_class=VerbHelp, **kw)


def _sentence(text):
    """``text`` with a capital first letter and a full stop: a summary read as a description."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def nested(parser, dest, metavar):
    """Nested verbs under ``parser`` (its choice lands in ``args.<dest>``), required."""
    sub = parser.add_subparsers(dest=dest, metavar=metavar, title="commands")
    sub.required = True
    return sub
