"""``bavard man``: the manual page bavard(1), in roff, generated from the parser.

Every command, nested command and option comes from the walk of
:func:`agent.cli.main.build_parser` (:mod:`agent.cli.parser_walk`), with each
command's help, description and epilog as the ``--help`` output shows them, so
the page never lists a command or option that ``bavard`` does not have, nor
misses one. ``SOURCE_DATE_EPOCH`` dates the page when set (reproducible
builds); otherwise it carries the version only, so that generating it again
changes nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

from agent import __version__
from agent.cli.parser_walk import Argument, Command, command_tree

HELP = "print the manual page bavard(1) (roff): bavard man | man -l -"
EPILOG = """\
install (scripts/install.sh does this):
  bavard man > /usr/local/share/man/man1/bavard.1
read it without installing:  bavard man | man -l -
"""

DESCRIPTION = (
    "bavard is an open on-board edge agent for connected vehicles. On a Raspberry Pi "
    "with a CAN interface or an ELM327 OBD-II adapter, it decodes the vehicle's bus "
    "through DBC files, keeps what matters in a durable local buffer, and uploads "
    "compact batches when a connection is there.",
    "The same command serves the service (bavard run, started by systemd), developers "
    "(decode, simulate, replayed logs) and the field technician on the box, with or "
    "without the cloud: status, live, record, doctor, obd, dbc, export and plot. The "
    "commands that talk to the running service do so through its control socket; where "
    "a command makes sense without the service, it works directly on a bus, a log or "
    "the buffer and says so.",
)
EXIT_STATUS = (
    ("0", "success"),
    ("1", "an error, printed as \"bavard COMMAND: message\" on standard error (a bad "
          "file, a service that is not running, a failed check)"),
    ("2", "a bad command line"),
    ("130", "interrupted (Ctrl-C)"),
)
FILES = (
    ("/etc/bavard/bavard.toml", "the configuration of the service (see bavard config check)"),
    ("/var/lib/bavard", "the state directory: the buffer buffer.sqlite3 and its WAL, the "
                        "vehicle pseudonym's secret, the upload pause flag"),
    ("/run/bavard/control", "the running service's control socket (mode 0660, group "
                            "bavard; BAVARD_SOCKET overrides the path)"),
)
SEE_ALSO = "candump(1), canplayer(1), cansniffer(1), systemctl(1), journalctl(1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="the sections of the page as JSON instead of roff")


def run(args: argparse.Namespace) -> int:
    tree = command_tree()
    if args.json:
        import json

        print(json.dumps({"commands": [c.name for c in tree.walk()],
                          "sections": ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS",
                                       "EXIT STATUS", "FILES", "SEE ALSO"]}, indent=2))
        return 0
    sys.stdout.write(man_page(tree))
    return 0


def escape(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line starting with a
    control character, one line per input line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        line = line.rstrip()
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _paragraph(text: str) -> str:
    return escape(" ".join(text.split()))


def _option(arg: Argument) -> str:
    flags = ", ".join(f"\\fB{escape(f)}\\fR" for f in arg.flags)
    if arg.metavar is not None:
        flags += f" \\fI{escape(arg.metavar)}\\fR"
    body = " ".join(arg.help.split())
    extra = []
    if arg.choices and not (arg.metavar or "").startswith("{"):
        extra.append("one of: " + ", ".join(arg.choices))
    if arg.repeatable and "repeat" not in body.lower():
        extra.append("may be repeated")
    if arg.required:
        extra.append("required")
    if extra:
        body += f" ({'; '.join(extra)})" if body else "; ".join(extra)
    return f".TP\n{flags}\n{escape(body) or '.'}"


def _positional(arg: Argument) -> str:
    name = f"\\fI{escape(arg.metavar or arg.dest)}\\fR" + (" ..." if arg.many else "")
    body = " ".join(arg.help.split())
    if arg.choices:
        body += f" (one of: {', '.join(arg.choices)})"
    return f".TP\n{name}\n{escape(body) or '.'}"


def _epilog(text: str) -> list[str]:
    """An epilog as written for ``--help``: paragraphs of unindented lines are filled;
    indented lines (lists, examples) are kept as they are."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        lines = block.rstrip().split("\n")
        head: list[str] = []
        while lines and not lines[0][:1].isspace():
            head.append(lines.pop(0))
        if head:
            out += [".PP", _paragraph(" ".join(head))]
        if lines:
            out += [".PP", ".nf", escape("\n".join(lines)), ".fi"]
    return out


def _command(command: Command) -> list[str]:
    out = [f'.SS "{escape(command.name)}"']
    text = command.description or command.help
    if text:
        out.append(_paragraph(text))
    usage = " ".join(command.usage.removeprefix("usage: ").split())
    out += [".PP", f"\\fB{escape(command.name)}\\fR{escape(usage.removeprefix(command.name))}"]
    out += [_positional(a) for a in command.positionals]
    out += [_option(a) for a in command.options if a.flags[0] not in ("-h", "-v", "-q")]
    if command.epilog:
        out += _epilog(command.epilog)
    if command.subcommands:
        names = ", ".join(f"\\fB{escape(s.name)}\\fR" for s in command.subcommands)
        out += [".PP", f"Subcommands: {names}."]
    return out


def man_page(tree: Command) -> str:
    stamp = os.environ.get("SOURCE_DATE_EPOCH", "")
    date = time.strftime("%Y-%m-%d", time.gmtime(int(stamp))) if stamp.isdigit() else ""
    commands = [c for c in tree.walk() if c.path]
    lines = [
        f'.TH BAVARD 1 "{date}" "bavard {__version__}" "User Commands"',
        ".nh",  # option names and paths are not hyphenated
        ".ad l",
        ".SH NAME",
        "bavard \\- open on\\-board edge agent for connected vehicles",
        ".SH SYNOPSIS",
        ".B bavard",
        "[\\fB\\-v\\fR|\\fB\\-q\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
        ".br",
        ".B bavard",
        "\\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
    ]
    for text in DESCRIPTION:
        lines += [_paragraph(text), ".PP"]
    lines.pop()
    lines += [".SH OPTIONS",
              "These are accepted before the command; \\fB\\-v\\fR and \\fB\\-q\\fR after it "
              "too, and every command has \\fB\\-h\\fR, \\fB\\-\\-help\\fR."]
    lines += [_option(a) for a in tree.options]
    lines += [".SH COMMANDS",
              "Each command with \\fB\\-\\-json\\fR prints one JSON document on standard "
              "output instead of text."]
    for command in commands:
        lines += _command(command)
    lines.append(".SH \"EXIT STATUS\"")
    for code, text in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", _paragraph(text)]
    lines += [".PP", "Some commands say more in their own section (doctor, decode)."]
    lines.append(".SH FILES")
    for path, text in FILES:
        lines += [".TP", f"\\fI{escape(path)}\\fR", _paragraph(text)]
    lines += [".SH \"SEE ALSO\"", escape(SEE_ALSO)]
    return "\n".join(lines) + "\n"
