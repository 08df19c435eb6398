"""One validation path (agent.validation.load_usable_config) for `run` and `config check`:
what `check` accepts, `run` accepts; every problem at once, keyed; ranges; warnings."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config import MAX_CONFIG_BYTES, MAX_RULES, load_config, number_ranges, parse_config
from agent.errors import ConfigError
from agent.validation import UsableConfig, load_usable_config
from tests.conftest import ROOT

DBC = ('VERSION ""\nBS_:\nBU_: X\nBO_ 100 Engine: 8 X\n'
       ' SG_ Rpm : 0|16@1+ (1,0) [0|8000] "" X\n'
       ' SG_ Engine_Counter : 16|4@1+ (1,0) [0|15] "" X\n')
CHANNEL = '[[channels]]\nname = "a"\nlog = "drive.log"\ndbc = ["car.dbc"]\n'


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "car.dbc").write_text(DBC)
    (tmp_path / "drive.log").write_text("(1.0) can0 064#01\n")
    return tmp_path


def write(workdir: Path, text: str, name: str = "bavard.toml") -> Path:
    path = workdir / name
    path.write_text(text)
    return path


def check_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_usable_config(path)
    return info.value.problems


def cli(path: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["config", "check", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- what `run` refused and `check` passed ------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe garbage \x01" * 50,
                                     b"this is not a DBC\n"])
def test_check_loads_every_dbc(workdir: Path, content: bytes,
                               capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "bad.dbc").write_bytes(content)
    path = write(workdir, '[[channels]]\nname = "a"\nlog = "drive.log"\n'
                          'dbc = ["car.dbc", "bad.dbc"]\n')
    (problem,) = check_problems(path)
    assert problem.startswith(f"channels[0].dbc[1]: {workdir / 'bad.dbc'}")
    assert "not a loadable DBC: " in problem and not problem.endswith(": ")
    status, out, _ = cli(path, capsys)
    assert status == 1
    assert out.startswith(f"{path}: channels[0].dbc[1]: ")


def test_a_single_dbc_is_keyed_without_index(workdir: Path) -> None:
    (workdir / "bad.dbc").write_bytes(b"")
    path = write(workdir, '[[channels]]\nname = "a"\nlog = "drive.log"\ndbc = "bad.dbc"\n')
    assert check_problems(path) == [
        f"channels[0].dbc: {workdir / 'bad.dbc'}: not a loadable DBC: the file is empty"]


def test_raw_channel_dbcs_are_not_loaded_like_run(workdir: Path) -> None:
    (workdir / "bad.dbc").write_bytes(b"")
    path = write(workdir, '[[channels]]\nname = "a"\nlog = "drive.log"\ndbc = "bad.dbc"\n'
                          'mode = "raw"\n')
    assert isinstance(load_usable_config(path), UsableConfig)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://", "upload.url: no host in 'https://'"),
    ("https://host:99999/x", "upload.url: the port must be from 1 to 65_535, got '99999'"),
    ("https://host:abc/x", "upload.url: the port must be from 1 to 65_535, got 'abc'"),
    ("mqtts://host:0", "upload.url: the port must be from 1 to 65_535, got '0'"),
    ("https://host/a b", "upload.url: the path '/a b' must be ASCII"),
])
def test_check_builds_the_upload_transport(workdir: Path, url: str, expected: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write(workdir, CHANNEL + f'[upload]\nurl = "{url}"\n')
    (problem,) = check_problems(path)
    assert problem.startswith(expected)
    status, out, _ = cli(path, capsys)
    assert status == 1 and expected in out


def test_check_refuses_unusable_tls_files_and_id_secret(workdir: Path) -> None:
    (workdir / "ca.pem").write_text("not a certificate\n")
    (workdir / "secret").write_bytes(b"short")
    path = write(workdir, CHANNEL + '[upload]\nurl = "https://h/x"\nca_file = "ca.pem"\n'
                                    '[vehicle]\nid_secret_file = "secret"\n')
    problems = check_problems(path)
    assert [p.split(":", 1)[0] for p in problems] == ["upload.ca_file",
                                                      "vehicle.id_secret_file"]


def test_every_problem_at_once(workdir: Path) -> None:
    (workdir / "bad.dbc").write_bytes(b"")
    path = write(workdir, '[[channels]]\nname = "a"\nlog = "drive.log"\ndbc = "bad.dbc"\n'
                          "speed = -1\n[upload]\nurl = \"https://h:99999\"\ntimeout = 1e308\n"
                          "[store]\nquota_bytes = 1180591620717411303424\n")
    keys = [p.split(":", 1)[0] for p in check_problems(path)]
    assert keys == ["channels[0].speed", "store.quota_bytes", "upload.url", "upload.timeout",
                    "channels[0].dbc"]


def test_good_file_passes_with_no_warning(workdir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write(workdir, CHANNEL + '[selection]\ninclude = ["Engine.*"]\n'
                                    '[[signals]]\nmatch = "Rpm"\non_change = true\n')
    usable = load_usable_config(path)
    assert usable.warnings == ()
    assert set(usable.databases) == {workdir / "car.dbc"}
    status, out, err = cli(path, capsys)
    assert (status, out) == (0, "")
    assert "warning" not in err and "ok: 1 channel(s)" in err


def test_example_and_demo_configs_are_usable(tmp_path: Path) -> None:
    assert load_usable_config(ROOT / "docs" / "bavard.example.toml").warnings == ()
    demo = tmp_path / "demo.toml"
    demo.write_text((ROOT / "agent" / "defaults" / "demo.toml").read_text())
    assert load_usable_config(demo).warnings == ()


# -- warnings ---------------------------------------------------------------------------


def test_globs_that_match_no_signal_are_warnings(workdir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write(workdir, CHANNEL + '[selection]\ninclude = ["Engine.*", "Nope*"]\n'
                                    'exclude = ["rpm"]\nvolatile = ["RPM", "!Typo"]\n'
                                    '[[signals]]\nmatch = "Engine.Rpm"\n'
                                    '[[signals]]\nmatch = "Gear.*"\n')
    usable = load_usable_config(path)
    assert usable.warnings == (
        "selection.include[1]: 'Nope*' matches no signal of the DBCs",
        "selection.exclude[0]: 'rpm' matches no signal of the DBCs",  # case-sensitive
        "selection.volatile[1]: 'Typo' matches no signal of the DBCs",  # 'RPM' matches
        "signals[1].match: 'Gear.*' matches no signal of the DBCs",
    )
    status, out, err = cli(path, capsys)
    assert (status, out) == (0, "")
    assert f"{path}: warning: selection.include[1]: 'Nope*' matches no signal" in err


def test_glob_warnings_are_bounded(workdir: Path) -> None:
    from agent.validation import MAX_GLOB_WARNINGS

    rules = "".join(f'[[signals]]\nmatch = "Typo{i}"\n' for i in range(MAX_GLOB_WARNINGS + 5))
    warnings = load_usable_config(write(workdir, CHANNEL + rules)).warnings
    assert len(warnings) == MAX_GLOB_WARNINGS + 1
    assert warnings[-1] == "... and 5 more globs that match no signal"


def test_a_dbc_without_messages_is_a_warning(workdir: Path) -> None:
    (workdir / "none.dbc").write_text('VERSION ""\n')
    path = write(workdir, '[[channels]]\nname = "a"\nlog = "drive.log"\ndbc = "none.dbc"\n')
    (warning,) = load_usable_config(path).warnings
    assert warning.startswith("channels[0].dbc: ") and "defines no message" in warning


# -- reading the file -------------------------------------------------------------------


def test_deeply_nested_toml_is_a_config_error(workdir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """505 bytes that made tomllib raise RecursionError out of load_config."""
    path = write(workdir, "x = " + "[" * 500)
    assert path.stat().st_size == 504
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)
    status, out, _ = cli(path, capsys)
    assert status == 1 and "nested too deeply" in out


def test_deeply_nested_but_valid_value_is_a_config_error(workdir: Path) -> None:
    text = CHANNEL + "[selection]\ninclude = " + "[" * 150 + "]" * 150 + "\n"
    problems = check_problems(write(workdir, text))
    assert problems == ["selection.include[0]: expected a glob, got an array"]


def test_dev_zero_and_huge_files_are_refused_without_reading_them(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"not a regular file \(a device\)"):
        load_config("/dev/zero")
    big = workdir / "big.toml"
    with big.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(ConfigError, match="over 1_048_576 bytes"):
        load_config(big)


def test_a_fifo_is_refused_without_hanging(workdir: Path) -> None:
    fifo = workdir / "fifo.toml"
    os.mkfifo(fifo)
    outcome = run_bounded(lambda: load_config(fifo), release=fifo)
    assert isinstance(outcome, ConfigError) and "not a regular file (a FIFO)" in str(outcome)


def run_bounded(call: Callable[[], object], release: Path) -> object:
    """``call()``'s exception (or result), failing the test if it blocks for 10 s (then the
    FIFO ``release`` is opened for writing, so that the thread ends)."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        with open(release, "wb"):
            pass
        thread.join(5)
        pytest.fail("blocked on a FIFO")
    return outcome[0]


def test_nul_in_paths_and_strings(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="NUL"):
        load_config(str(workdir / "a\x00b.toml"))
    problems = check_problems(write(workdir, CHANNEL + '[store]\nstate_dir = "/var/\\u0000x"\n'
                                                      '[vehicle]\nvin = "\\u0000"\n'))
    assert problems == ["store.state_dir: must not contain a NUL character",
                        "vehicle.vin: must not contain a NUL character"]


def test_not_utf8_is_a_config_error(workdir: Path) -> None:
    (workdir / "latin.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(workdir / "latin.toml")


# -- messages ---------------------------------------------------------------------------


def test_unknown_key_suggests_the_closest(workdir: Path) -> None:
    problems = check_problems(write(workdir, '[[channels]]\nname = "a"\nintreface = "virtual"\n'
                                             'simulate = true\n[selection]\nincluded = []\n'
                                             '[upload]\nurl = "https://h"\ntimout = 3\n'
                                             '[stroe]\n'))
    assert problems == [
        "stroe: unknown key (did you mean store?)",
        "channels[0].intreface: unknown key (did you mean interface?)",
        "selection.included: unknown key (did you mean include?)",
        "upload.timout: unknown key (did you mean timeout?)",
    ]


def test_a_relative_path_not_found_says_where_it_was_looked_for(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    with pytest.raises(ConfigError) as info:
        load_config("missing.toml")
    assert info.value.problems == [
        f"cannot read file: No such file or directory (looked for {workdir / 'missing.toml'})"]
    problems = check_problems(write(workdir, '[[channels]]\nname = "a"\nlog = "logs/x.log"\n'
                                             'dbc = "/nonexistent/abs.dbc"\n'))
    assert problems == [
        "channels[0].dbc: file not found: /nonexistent/abs.dbc",
        f"channels[0].log: log file not found: logs/x.log (looked for "
        f"{workdir / 'logs' / 'x.log'})"]
    # a configuration named by a relative path: where is still absolute
    (workdir / "etc").mkdir()
    write(workdir / "etc", '[[channels]]\nname = "a"\nlog = "x.log"\ndbc = "x.dbc"\n')
    with pytest.raises(ConfigError) as info:
        load_config("etc/bavard.toml")
    assert info.value.problems[0] == (
        f"channels[0].dbc: file not found: x.dbc (looked for {workdir / 'etc' / 'x.dbc'})")


def test_min_period_above_max_period_is_an_error(workdir: Path) -> None:
    problems = check_problems(write(workdir, CHANNEL + '[[signals]]\nmatch = "*"\n'
                                                       "on_change = true\nmin_period = 10\n"
                                                       "max_period = 5\n"))
    assert problems == ["signals[0].max_period: must be at least min_period (10), got 5"]


def test_too_many_rules_are_refused_at_once(workdir: Path) -> None:
    rules = '[[signals]]\nmatch = "Engine.Rpm"\n' * (MAX_RULES + 1)
    problems = check_problems(write(workdir, CHANNEL + rules))
    assert problems == [f"signals: at most {MAX_RULES:_} entries, got {MAX_RULES + 1:_}"]


# -- ranges: every number, one rule whatever the side ------------------------------------


TABLE = re.compile(r"^(channels|signals)\[\]\.(\w+)$|^(store|upload)\.(\w+)$")


def number_text(key: str, value: str) -> str:
    """A configuration that sets the number ``key`` to ``value`` (TOML), else valid."""
    match = TABLE.match(key)
    assert match, key
    if match.group(1) == "channels":
        name = match.group(2)
        source = ('interface = "virtual"\nmode = "raw"\n' if name == "channel" else
                  'interface = "virtual"\nmode = "raw"\nchannel = "x"\n'
                  if name.endswith("bitrate") and name != "baudrate" else
                  'obd = true\nport = "/dev/ttyUSB0"\n' if name in OBD_NUMBERS else
                  'simulate = true\n')
        return f'[[channels]]\nname = "a"\n{source}{name} = {value}\n'
    if match.group(1) == "signals":
        return ('[[channels]]\nname = "a"\nsimulate = true\n[[signals]]\nmatch = "*"\n'
                f"on_change = true\n{match.group(2)} = {value}\n")
    table, name = match.group(3), match.group(4)
    extra = 'url = "https://h/x"\n' if table == "upload" else ""
    return f'[[channels]]\nname = "a"\nsimulate = true\n[{table}]\n{extra}{name} = {value}\n'


NUMBERS = sorted(k for k in number_ranges() if TABLE.match(k))
OBD_NUMBERS = ("baudrate", "dtc_interval", "timeout")


@pytest.mark.parametrize("key", NUMBERS)
def test_zero_and_negatives_share_one_rule(workdir: Path, key: str) -> None:
    allowed = number_ranges()[key]
    said = {}
    for value in ("-1", "0", "1e300", "nan", "inf", "99999999999999999"):
        integers = ("bitrate", "seed", "items", "bytes", "corrupt", "baudrate")
        if key.endswith(integers) or key.endswith("channels[].channel"):
            value = {"1e300": "2000000000000000000", "nan": "-5", "inf": "-999"}.get(value,
                                                                                    value)
        text = number_text(key, value)
        try:
            parse_config(text, workdir)
        except ConfigError as exc:
            name = "." + key.split(".")[-1]
            (problem,) = [p for p in exc.problems if p.split(":")[0].endswith(name)]
            said[value] = problem
    assert said, key
    rules = {p.split(", got ")[0] for p in said.values()}
    assert len(rules) == 1, said
    (rule,) = rules
    assert rule.endswith(f"must be {allowed.rule}") or rule.endswith(
        f"must be {allowed.rule} (or false for no limit)"), rule


@pytest.mark.parametrize(("text", "expected"), [
    ("[store]\nquota_bytes = 1180591620717411303424",
     "store.quota_bytes: must be from 262_144 to 1_099_511_627_776, got "
     "1_180_591_620_717_411_303_424"),
    ('[upload]\nurl = "https://h"\ntimeout = 1e308',
     "upload.timeout: must be > 0 and at most 3_600, got 1e+308"),
    ('[upload]\nurl = "https://h"\nretry_initial = 10\nretry_max = 5',
     "upload.retry_initial: must be at most retry_max (5), got 10"),
    ("[store]\ncommit_items = 100\nqueue_items = 10",
     "store.queue_items: must be at least commit_items (100), got 10"),
])
def test_out_of_range_values_that_used_to_pass(workdir: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[[channels]]\nname = "a"\nsimulate = true\n' + text, workdir)
    assert info.value.problems == [expected]


def test_docs_list_every_range() -> None:
    docs = (ROOT / "docs" / "config.md").read_text()
    for key, allowed in number_ranges().items():
        rows = [line for line in docs.splitlines() if line.startswith(f"| `{key}` |")]
        assert rows, f"docs/config.md has no row for {key}"
        assert allowed.rule in rows[0], (key, allowed.rule, rows[0])


# -- anything at all: a Config or a ConfigError, never another exception ----------------

KEYS = ["channels", "selection", "signals", "store", "upload", "vehicle", "name", "dbc",
        "interface", "channel", "bitrate", "data_bitrate", "log", "simulate", "seed", "start",
        "speed", "mode", "include", "exclude", "volatile", "include_volatile", "match",
        "min_period", "on_change", "deadband", "max_period", "state_dir", "quota_bytes",
        "url", "timeout", "ca_file", "interfaces", "vin", "id_secret_file",
        "max_age_samples", "metered_daily_bytes", "retry_max", "mqtt_version"]


def toml_value(value: object) -> str:
    """A TOML inline value (arrays and inline tables) of what hypothesis made."""
    import json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else "inf" if value == math.inf else (
            "-inf" if value == -math.inf else repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def test_any_document_gives_a_config_or_a_config_error(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from agent.config import Config

    scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(),
                        st.text(max_size=4), st.sampled_from(["", "\x00", "*", "virtual"]))
    values = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3), inner, max_size=4)),
        max_leaves=16)

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
    def check(document: dict[str, object]) -> None:
        text = "".join(f"{key} = {toml_value(v)}\n" for key, v in document.items())
        with contextlib.suppress(ConfigError):  # any other exception fails the test
            assert isinstance(parse_config(text, tmp_path), Config)

    check()
