"""sd_notify client, progress watchdog and journal logging (agent/service).

The notification socket is a real AF_UNIX datagram socket bound where systemd
would put it (a path, or an abstract ``@name``); the watchdog runs on a
virtual clock whose ``wait`` advances time instead of sleeping.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.service.journal import (
    JournalFormatter,
    configure_logging,
    is_journal_stream,
    syslog_priority,
)
from agent.service.notify import Notifier, notify_address, watchdog_interval
from agent.service.watchdog import Watchdog

# ---------------------------------------------------------------- the socket


class NotifySocket:
    """The systemd end: a bound datagram socket and the NOTIFY_SOCKET value naming it."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def messages(self) -> list[str]:
        """Every datagram received so far, without blocking."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096, socket.MSG_DONTWAIT).decode())
            except BlockingIOError:
                return out


def _path_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield NotifySocket(sock, str(path))
    finally:
        sock.close()


def _abstract_socket() -> Iterator[NotifySocket]:
    name = f"bavard-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield NotifySocket(sock, "@" + name)
    finally:
        sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    if request.param == "path":
        yield from _path_socket(tmp_path)
    else:
        yield from _abstract_socket()


# ---------------------------------------------------------------- notify


def test_without_notify_socket_everything_is_a_quiet_no_op(
    caplog: pytest.LogCaptureFixture,
) -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.watchdog_interval() is None
    assert not n.ready("up")
    assert not n.status("x")
    assert not n.watchdog()
    assert not n.reloading()
    assert not n.stopping()
    n.close()
    assert caplog.records == []


def test_messages_arrive_as_systemd_expects(notify_socket: NotifySocket) -> None:
    n = Notifier(notify_socket.env(), monotonic_ns=lambda: 1_234_567_891)
    assert n.enabled
    assert n.ready("running: 3 channels")
    assert n.status("line one\nline two")
    assert n.watchdog()
    assert n.reloading("reloading")
    assert n.ready()
    assert n.stopping()
    assert n.extend_timeout(2.5)
    n.close()
    assert notify_socket.messages() == [
        "READY=1\nSTATUS=running: 3 channels",
        "STATUS=line one line two",
        "WATCHDOG=1",
        "RELOADING=1\nMONOTONIC_USEC=1234567\nSTATUS=reloading",
        "READY=1",
        "STOPPING=1",
        "EXTEND_TIMEOUT_USEC=2500000",
    ]


def test_a_failed_send_returns_false_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.DEBUG, logger="agent.service.notify"):
        assert not n.ready()
        assert not n.watchdog()
        assert not n.watchdog()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "nobody-listens" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2


def test_the_socket_may_come_back_after_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "late"
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    assert not n.watchdog()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert n.watchdog()
        assert sock.recv(4096, socket.MSG_DONTWAIT) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@abstract/name", "\0abstract/name"),
        ("@", None),
        ("relative/path", None),
        ("vsock:2:1234", None),
        ("", None),
    ],
)
def test_notify_address(value: str, address: str | None) -> None:
    assert notify_address({"NOTIFY_SOCKET": value}) == address


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert watchdog_interval(env, pid=4242) == interval


def test_watchdog_pid_defaults_to_this_process() -> None:
    env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) == 0.5
    assert Notifier({**env, "NOTIFY_SOCKET": "@x"}).watchdog_interval() == 0.5
    # without a socket there is nobody to ping
    assert Notifier(env).watchdog_interval() is None


# ---------------------------------------------------------------- watchdog


class VirtualTime:
    """A monotonic clock and a stop whose ``wait`` advances it, running a hook each time."""

    def __init__(self, end: float, on_tick: Callable[[float], None]) -> None:
        self.now = 0.0
        self.end = end
        self.on_tick = on_tick
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.on_tick(self.now)  # what the check at self.now sent is attributed to now
        self.now += timeout
        return self.now > self.end


def run_scripted(
    sock: NotifySocket,
    beats: Callable[[Watchdog, float], None],
    *,
    end: float,
    names: dict[str, float],
    status: Callable[[], str] | None = None,
) -> tuple[dict[float, list[str]], Watchdog]:
    """Run the watchdog on virtual time; the datagrams received after each check, by time."""
    received: dict[float, list[str]] = {}

    def on_tick(now: float) -> None:
        received[now] = sock.messages()

    vt = VirtualTime(end, on_tick)
    # WATCHDOG_USEC=2 s: one check a second
    notifier = Notifier(sock.env(WATCHDOG_USEC="2000000"))
    dog = Watchdog(notifier, status=status, clock=vt.clock, wall_clock=lambda: 1.7e9)

    for name, silence in names.items():
        dog.register(name, silence)
    original_wait = vt.wait

    def wait(timeout: float | None = None) -> bool:
        stopped = original_wait(timeout)
        if not stopped:
            beats(dog, vt.now)  # threads beat before the next check
        return stopped

    vt.wait = wait  # type: ignore[method-assign]
    dog.run(vt)
    assert set(vt.waits) == {1.0}
    return received, dog


def test_pings_while_fresh_stop_exactly_when_stale_and_resume(
    notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    # the writer beats every second until t=20, is stuck until t=40, then beats again;
    # the uploader is idle but alive and beats every 5 s throughout.
    def beats(dog: Watchdog, now: float) -> None:
        if now <= 20 or now >= 40:
            dog.beat("store-writer")
        if now % 5 == 0:
            dog.beat("uploader")

    with caplog.at_level(logging.INFO, logger="agent.service.watchdog"):
        received, dog = run_scripted(
            notify_socket,
            beats,
            end=50,
            names={"store-writer": 12.0, "uploader": 6.0},
            status=lambda: "frames/s 3900",
        )
    pinged = sorted(t for t, msgs in received.items() if any("WATCHDOG=1" in m for m in msgs))
    silent = sorted(t for t in received if t not in pinged)
    # last beat at 20; silent 12 s at t=32 is still fresh, 13 s at t=33 is stale
    assert silent == [float(t) for t in range(33, 40)]
    assert pinged == [float(t) for t in range(51) if not 33 <= t < 40]
    assert dog.pings == len(pinged)
    # every ping carries the status line; a stall replaces it with what is stuck
    assert received[0.0] == ["WATCHDOG=1\nSTATUS=frames/s 3900"]
    assert received[33.0] == ["STATUS=STALLED: store-writer silent 13s; frames/s 3900"]
    assert received[39.0] == ["STATUS=STALLED: store-writer silent 19s; frames/s 3900"]
    # logged once when it stalls, once when it comes back
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "'store-writer' silent for 13.0 s (max 12.0 s)" in errors[0]
    backs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert backs == ["watchdog: beat 'store-writer' is back; pinging systemd again"]


def test_one_stale_beat_is_enough_and_an_unregistered_one_no_longer_counts(
    notify_socket: NotifySocket,
) -> None:
    def beats(dog: Watchdog, now: float) -> None:
        dog.beat("pipeline")
        if now == 10:
            dog.unregister("uploader")  # its thread ended on purpose

    received, _ = run_scripted(
        notify_socket, beats, end=15, names={"pipeline": 3.0, "uploader": 3.0}
    )
    pinged = sorted(t for t, msgs in received.items() if "WATCHDOG=1" in msgs)
    assert pinged == [0.0, 1.0, 2.0, 3.0, *[float(t) for t in range(10, 16)]]


def test_a_failing_status_callback_does_not_stop_the_pings(
    notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    def status() -> str:
        raise RuntimeError("buffer closed")

    received, _ = run_scripted(
        notify_socket,
        lambda dog, now: dog.beat("pipeline"),
        end=3,
        names={"pipeline": 5.0},
        status=status,
    )
    assert all(msgs == ["WATCHDOG=1"] for msgs in received.values())
    assert len(received) == 4
    assert sum("status callback failed" in r.getMessage() for r in caplog.records) == 1


def test_run_in_a_thread_stops_promptly_with_a_real_event(notify_socket: NotifySocket) -> None:
    dog = Watchdog(Notifier(notify_socket.env()), interval=0.01)
    beat = dog.register("pipeline", 60.0)
    stop = threading.Event()
    thread = threading.Thread(target=dog.run, args=(stop,))
    thread.start()
    for _ in range(5):
        beat()
        stop.wait(0.01)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    msgs = notify_socket.messages()
    assert msgs and set(msgs) == {"WATCHDOG=1"}
    assert len(msgs) == dog.pings


def test_watchdog_defaults_and_errors() -> None:
    assert Watchdog(Notifier({})).interval == 10.0
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000"}
    assert Watchdog(Notifier(env)).interval == 15.0
    dog = Watchdog(Notifier({}), clock=lambda: 0.0)
    with pytest.raises(ValueError):
        dog.register("x", 0)
    with pytest.raises(KeyError):
        dog.beat("never-registered")
    with pytest.raises(ValueError):
        Watchdog(Notifier({}), interval=0)
    # without a socket the check still runs (and tells whether it would ping)
    dog.register("x", 1.0)
    assert dog.check()


# ---------------------------------------------------------------- journal


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
        (5, 7),
        (25, 6),
    ],
)
def test_syslog_priority(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority


def test_every_line_of_a_traceback_keeps_the_priority() -> None:
    logger = logging.getLogger("bavard.test")
    try:
        raise ValueError("bad\nframe")
    except ValueError:
        record = logger.makeRecord(
            "bavard.test", logging.ERROR, __file__, 1, "decode failed", (), sys.exc_info()
        )
    lines = JournalFormatter().format(record).split("\n")
    assert lines[0] == "<3>bavard.test: decode failed"
    assert len(lines) > 4
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>frame"


def _journal_env(stream: io.TextIOWrapper) -> dict[str, str]:
    st = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_journal_stream_is_recognised_only_for_its_own_file(tmp_path: Path) -> None:
    with open(tmp_path / "journal", "w") as journal, open(tmp_path / "tty", "w") as other:
        env = _journal_env(journal)
        assert is_journal_stream(journal, env)
        assert not is_journal_stream(other, env)
        assert not is_journal_stream(journal, {})
        assert not is_journal_stream(journal, {"JOURNAL_STREAM": "garbage"})
        assert not is_journal_stream(io.StringIO(), env)


def test_configure_logging_for_the_journal(tmp_path: Path, root_logger: logging.Logger) -> None:
    with open(tmp_path / "stderr", "w+") as stream:
        configure_logging("DEBUG", stream, environ=_journal_env(stream))
        log = logging.getLogger("agent.test")
        log.debug("dbc cache hit")
        log.info("ready")
        log.warning("bus-off on can0")
        log.critical("disk gone")
        stream.flush()
        stream.seek(0)
        assert stream.read().splitlines() == [
            "<7>agent.test: dbc cache hit",
            "<6>agent.test: ready",
            "<4>agent.test: bus-off on can0",
            "<2>agent.test: disk gone",
        ]


def test_configure_logging_for_humans_and_only_once(root_logger: logging.Logger) -> None:
    first = io.StringIO()
    configure_logging(logging.INFO, first, environ={"JOURNAL_STREAM": "1:2"})
    stream = io.StringIO()
    handler = configure_logging(logging.WARNING, stream, environ={})
    assert handler in root_logger.handlers
    ours = [h for h in root_logger.handlers if getattr(h, "_bavard_handler", False)]
    assert ours == [handler]
    log = logging.getLogger("agent.test")
    log.info("not shown")
    log.warning("line one\nline two")
    text = stream.getvalue()
    assert "not shown" not in text
    assert " WARNING agent.test: line one\nline two\n" in text
    assert not text.startswith("<")
    assert first.getvalue() == ""
    # forced journal format, whatever the environment says
    forced = io.StringIO()
    configure_logging(logging.INFO, forced, journal=True)
    log.error("x\ny")
    assert forced.getvalue() == "<3>agent.test: x\n<3>y\n"
