"""Shell completion and the man page, generated from the parser: bash driven through its
completion variables, zsh in a real interactive shell on a pty, the page rendered by
groff and man with warnings on; and scripts/install.sh installing all three."""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli.completion_cmd import bash_script, zsh_script
from agent.cli.main import COMMANDS, build_parser
from agent.cli.man_cmd import escape, man_page
from agent.cli.parser_walk import command_tree, walk
from tests.conftest import ROOT


def generated(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def bash_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "bavard.bash"
    path.write_text(generated("completion", "bash"))
    return path


def bash_complete(script: Path, *words: str) -> list[str]:
    """COMPREPLY of the script's function for the command line ``words`` (the last one
    is the word being completed), in ``bash --norc``."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (f"source '{script}'\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
               "COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}\n"
               "_bavard; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_commands_nested_commands_options_and_choices(bash_file: Path,
                                                                     tmp_path: Path) -> None:
    assert bash_complete(bash_file, "bavard", "st") == ["status"]
    assert bash_complete(bash_file, "bavard", "") == list(COMMANDS)
    assert bash_complete(bash_file, "bavard", "buffer", "") == ["purge", "retry-dead-letters"]
    assert bash_complete(bash_file, "bavard", "export", "--format", "") == [
        "csv", "jsonl", "parquet"]
    assert bash_complete(bash_file, "bavard", "export", "--format", "=", "js") == ["jsonl"]
    assert bash_complete(bash_file, "bavard", "-v", "export", "--f") == ["--format", "--force"]
    assert bash_complete(bash_file, "bavard", "buffer", "purge", "--class", "") == [
        "events", "samples", "frames"]
    assert bash_complete(bash_file, "bavard", "completion", "") == ["bash", "zsh"]
    # options after an option's value, and before the command
    assert bash_complete(bash_file, "bavard", "export", "--since", "-2h", "--unt") == ["--until"]
    # paths: files for FILE, directories only for DIR
    (tmp_path / "drive.dbc").write_text("")
    (tmp_path / "dirs").mkdir()
    prefix = str(tmp_path) + "/d"
    assert sorted(bash_complete(bash_file, "bavard", "dbc", "list", prefix)) == [
        str(tmp_path / "dirs"), str(tmp_path / "drive.dbc")]
    assert bash_complete(bash_file, "bavard", "export", "-o", prefix) == [str(tmp_path / "dirs")]


def test_the_scripts_follow_the_parser_not_a_list(tmp_path: Path) -> None:
    """A command added to a parser is completed and documented with nothing else to do."""
    parser = argparse.ArgumentParser(prog="bavard")
    sub = parser.add_subparsers(dest="command")
    tool = sub.add_parser("frobnicate", help="a command nobody listed")
    tool.add_argument("--level", choices=("low", "high"), help="how much")
    tool.add_argument("--into", metavar="DIR", help="where")
    nested = tool.add_subparsers(dest="action").add_parser("twice", help="again")
    nested.add_argument("--json", action="store_true")
    tree = walk(parser)
    script = tmp_path / "bash"
    script.write_text(bash_script(tree))
    assert bash_complete(script, "bavard", "fro") == ["frobnicate"]
    assert bash_complete(script, "bavard", "frobnicate", "--level", "") == ["low", "high"]
    assert bash_complete(script, "bavard", "frobnicate", "") == ["twice"]
    assert bash_complete(script, "bavard", "frobnicate", "twice", "--j") == ["--json"]
    assert "_bavard__frobnicate__twice()" in zsh_script(tree)
    page = man_page(tree)
    assert '.SS "bavard frobnicate twice"' in page and "\\fB\\-\\-level\\fR" in page
    # and the real parser: every command and nested command is in both
    real = command_tree()
    names = {c.name for c in real.walk()}
    assert {"bavard buffer purge", "bavard batch inspect", "bavard dbc show"} <= names
    assert {f"bavard {name}" for name in COMMANDS} <= names
    zsh = generated("completion", "zsh")
    page = generated("man")
    for command in real.walk()[1:]:
        assert f'.SS "{escape(command.name)}"' in page
        assert "_bavard" + "".join("__" + p.replace("-", "_") for p in command.path) in zsh


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_script_parses(tmp_path: Path) -> None:
    script = tmp_path / "_bavard"
    script.write_text(generated("completion", "zsh"))
    done = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == "", done.stderr


class Zsh:
    """An interactive ``zsh -f`` on a pty, with the generated completion in its fpath."""

    def __init__(self, fpath: Path) -> None:
        self.master, slave = pty.openpty()
        env = {"HOME": str(fpath), "TERM": "dumb", "PATH": os.environ.get("PATH", ""),
               "COLUMNS": "200", "LINES": "50"}
        self.proc = subprocess.Popen(["zsh", "-f", "-i"], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.send(f"PS1='%% '; fpath=({fpath} $fpath); autoload -U compinit; "
                  "compinit -u -D; echo READY-$((6*7))\n")
        self.expect("READY-42")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, *texts: str, timeout: float = 10.0) -> str:
        """What the terminal showed until every one of ``texts`` appeared (bounded)."""
        out = ""
        deadline = time.monotonic() + timeout
        while not all(t in out for t in texts):
            left = deadline - time.monotonic()
            assert left > 0, f"no {texts} in {out!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                out += re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", os.read(self.master, 65536)
                              .decode(errors="replace"))
        return out

    def complete(self, line: str, *texts: str) -> str:
        self.send("\x15" + line + "\t")  # ^U: a fresh line
        return self.expect(*texts)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_completes_in_a_real_shell(tmp_path: Path) -> None:
    (tmp_path / "_bavard").write_text(generated("completion", "zsh"))
    zsh = Zsh(tmp_path)
    try:
        zsh.complete("bavard st", "bavard status ")
        shown = zsh.complete("bavard buffer ", "purge", "retry-dead-letters")
        assert "move the batches the receiver refused" in shown  # the subcommand's help
        zsh.complete("bavard export --format ", "csv", "jsonl", "parquet")
        zsh.complete("bavard dbc sh", "bavard dbc show ")
        zsh.complete("bavard export --cla", "bavard export --class ")
    finally:
        zsh.close()


def test_man_page_renders_without_warnings(tmp_path: Path) -> None:
    page = tmp_path / "bavard.1"
    page.write_text(generated("man"))
    text = page.read_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", '"EXIT STATUS"', "FILES", '"SEE ALSO"'):
        assert f"\n.SH {section}\n" in text
    if shutil.which("groff") is None:
        pytest.skip("groff not installed")
    groff = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                           capture_output=True, text=True, timeout=60)
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr
    if shutil.which("man") is None:
        pytest.skip("man not installed")
    rendered = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "MANWIDTH": "80",
                                                          "MANPAGER": "cat", "PAGER": "cat"})
    assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr
    out = rendered.stdout
    assert out.startswith("BAVARD(1)")
    for needle in ("bavard export", "bavard buffer purge", "--since T", "/run/bavard/control",
                   "/etc/bavard/bavard.toml", "/var/lib/bavard", "EXIT STATUS"):
        assert needle in out, needle
    # an epilog's paragraph is filled, its lists kept as written
    export = out[out.index("   bavard export\n"):]
    assert "it is UTC, and a note says so)" in " ".join(export.split())
    assert "bavard[parquet]" in export  # never hyphenated
    assert "\n         0  the bundle was written (warnings, e.g. a --signals glob that" in export


def test_install_puts_completion_and_man_page_in_place(tmp_path: Path) -> None:
    """scripts/install.sh generates the three files with the installed bavard (here a
    stand-in virtualenv running this checkout), a second run changes nothing, and
    uninstall.sh removes them."""
    dest = tmp_path / "root"
    venv_bin = dest / "opt/bavard/venv/bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "bavard").write_text(f"#!/bin/sh\ncd '{ROOT}' && exec '{sys.executable}' "
                                     "-m agent \"$@\"\n")
    (venv_bin / "bavard").chmod(0o755)
    env = {**os.environ, "DESTDIR": str(dest)}
    first = subprocess.run(["bash", str(ROOT / "scripts/install.sh"), "--skip-venv"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    installed = {
        "usr/share/bash-completion/completions/bavard": generated("completion", "bash"),
        "usr/share/zsh/vendor-completions/_bavard": generated("completion", "zsh"),
        "usr/local/share/man/man1/bavard.1": generated("man"),
    }
    for path, content in installed.items():
        assert (dest / path).read_text() == content, path
        assert f"installed /{path}" in first.stdout
    second = subprocess.run(["bash", str(ROOT / "scripts/install.sh"), "--skip-venv"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "nothing to change" in second.stdout, second.stdout
    gone = subprocess.run(["bash", str(ROOT / "scripts/uninstall.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 0, gone.stderr
    for path in installed:
        assert not (dest / path).exists()


def test_help_of_the_generators(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser("completion")
    with pytest.raises(SystemExit):
        parser.parse_args(["completion", "fish"])
    assert "invalid choice: 'fish'" in capsys.readouterr().err
