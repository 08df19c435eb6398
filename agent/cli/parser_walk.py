"""The command line as data, read from the argparse parser itself.

Shell completion (``bavard completion``) and the man page (``bavard man``) are
generated from this walk of :func:`agent.cli.main.build_parser`, so a command or
an option added to the parser is completed and documented without anyone
listing it again. Only argparse's documented attributes of an action are read
(``option_strings``, ``dest``, ``nargs``, ``choices``, ``metavar``, ``help``);
finding the actions and subcommands needs ``parser._actions``, as every
argparse-based generator does.

What a value completes to is guessed from its names: a metavar or dest that
says FILE, DIR, PATH, LOG, CONFIG, OUTPUT, DBC, SOCKET, CERT or KEY is a path
(a DIR is a directory); ``choices`` are offered as they are; anything else is
free text.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

FILE_WORDS = frozenset({"file", "files", "path", "log", "config", "output", "dbc", "socket",
                        "cert", "key", "ca", "png"})
DIR_WORDS = frozenset({"dir", "directory"})


@dataclass(frozen=True)
class Argument:
    """An option (``flags`` set) or a positional argument (``flags`` empty)."""

    flags: tuple[str, ...]
    dest: str
    metavar: str | None  # None: an option that takes no value
    help: str
    choices: tuple[str, ...] | None
    completes: str  # "none" (no value), "file", "dir", "choices", "text"
    repeatable: bool  # an option that may be given several times
    many: bool  # a positional taking several words (nargs + or *)
    optional: bool  # a positional that may be left out (nargs ? or *)
    required: bool  # an option that must be given


@dataclass
class Command:
    """One parser: ``bavard`` itself, a subcommand, or a nested one (``batch inspect``)."""

    path: tuple[str, ...]
    help: str
    description: str
    epilog: str
    usage: str
    options: list[Argument] = field(default_factory=list)
    positionals: list[Argument] = field(default_factory=list)
    subcommands: list[Command] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(("bavard", *self.path))

    def walk(self) -> list[Command]:
        """This command and every one below it, depth first."""
        out = [self]
        for sub in self.subcommands:
            out += sub.walk()
        return out


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def _completes(action: argparse.Action, metavar: str | None) -> str:
    if action.nargs == 0:
        return "none"
    if action.choices is not None:
        return "choices"
    words = _words(action.dest) | _words(metavar or "")
    if words & DIR_WORDS:
        return "dir"
    if words & FILE_WORDS:
        return "file"
    return "text"


def _metavar(action: argparse.Action) -> str | None:
    if action.nargs == 0:
        return None
    if isinstance(action.metavar, str):
        return action.metavar
    if isinstance(action.metavar, tuple):
        return " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _argument(action: argparse.Action, help_text: str) -> Argument:
    metavar = _metavar(action)
    return Argument(
        flags=tuple(action.option_strings), dest=action.dest, metavar=metavar, help=help_text,
        choices=tuple(map(str, action.choices)) if action.choices is not None else None,
        completes=_completes(action, metavar),
        repeatable=isinstance(action, argparse._AppendAction | argparse._CountAction),
        many=action.nargs in ("+", "*", argparse.REMAINDER),
        optional=action.nargs in ("?", "*"),
        required=bool(action.required) and bool(action.option_strings),
    )


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help
    if text is None or text == argparse.SUPPRESS:
        return ""
    if "%" in text:
        try:
            formatter = parser._get_formatter()
            return formatter._expand_help(action)
        except (KeyError, TypeError, ValueError):
            return text
    return text


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = (), help_text: str = ""
         ) -> Command:
    """The command tree under ``parser``."""
    command = Command(path=path, help=help_text, description=parser.description or "",
                      epilog=parser.epilog or "", usage=parser.format_usage().strip())
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                command.subcommands.append(walk(sub, (*path, name), helps.get(name, "")))
            continue
        argument = _argument(action, _help(parser, action))
        (command.options if action.option_strings else command.positionals).append(argument)
    return command


def command_tree() -> Command:
    """The whole ``bavard`` command line, every command imported."""
    from agent.cli.main import build_parser

    return walk(build_parser(None))
