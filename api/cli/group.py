"""How the CLI's command groups are made: help in click's plain format, which wraps each
paragraph to the terminal.

Typer's rich help (its default when rich is installed) imports rich's Markdown and syntax
highlighting (markdown-it, pygments) to print a page, which cost ``agentboard --help`` more
than the 0.25 s the whole command has (docs/cli.md, "Start time"), and it keeps the line
breaks of a docstring's later paragraphs. Click rewraps every paragraph to the width of the
terminal (at most ``HELP_WIDTH``), keeps a paragraph that starts with a ``\\b`` line as it
is written (the examples), and shows a command's first sentence in the list of commands.
"""

from __future__ import annotations

import typer

HELP_WIDTH = 120  # columns; prose wider than that is hard to read


def verb_group(help_text: str) -> typer.Typer:
    """A group of verbs (``agentboard execution``, ``keys`` ...)."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


def root_group(help_text: str) -> typer.Typer:
    """The ``agentboard`` command itself; its groups take their width from it."""
    return typer.Typer(
        name="agentboard",
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"max_content_width": HELP_WIDTH},
    )
