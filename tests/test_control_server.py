"""The control socket's service side, over real Unix sockets in tmp_path.

Peers speak the protocol by hand (:class:`Raw`: bytes in, lines out) or through
the commands' :class:`~agent.control.client.ControlClient`. The stream tests
feed the tap from a real :class:`~agent.pipeline.Pipeline` replaying the sample
drive. The permission tests run as root and fork a child that becomes
``nobody`` before it connects. Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.control import protocol
from agent.control.client import ControlClient
from agent.control.server import ControlServer
from agent.control.tap import Tap
from agent.errors import ControlError, StoreError
from agent.frames import Event, Sample
from agent.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"
SAMPLE_FRAMES = 84_240
NOBODY = 65534
TIMEOUT = 5.0  # seconds a peer waits for one line
RUN_TIMEOUT = 120.0  # seconds for a replay of the sample drive

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")


class Raw:
    """A peer that writes bytes and reads protocol lines, by hand."""

    def __init__(self, path: Path, greet: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.hello = self.read() if greet else None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict[str, Any]:
        line = self.file.readline()
        assert line, "the service closed the connection"
        message: dict[str, Any] = json.loads(line)
        return message

    def request(self, request_id: Any, cmd: str, **args: Any) -> dict[str, Any]:
        self.send(protocol.encode({"v": 1, "id": request_id, "cmd": cmd, "args": args}))
        while True:  # stream lines of a subscription may come first
            message = self.read()
            if "stream" not in message:
                assert message["id"] == request_id, message
                return message

    def closed(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def sockdir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o755)  # nobody may look up the socket in it (the tests chdir there)
    return run


Make = Callable[..., ControlServer]


@pytest.fixture
def serve(sockdir: Path) -> Iterator[Make]:
    """Starts a server on ``sockdir/control``; every one is closed at the end."""
    started: list[ControlServer] = []

    def make(commands: dict[str, Any] | None = None, tap: Tap | None = None,
             **kw: Any) -> ControlServer:
        kw.setdefault("group", None)
        server = ControlServer(sockdir / "control", commands if commands is not None else {},
                               tap if tap is not None else Tap(),
                               hello={"version": "9.9"}, **kw)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()


def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"args": args}


# --- greeting, answers, errors


def test_the_greeting_and_answers_carry_the_request_ids(serve: Make) -> None:
    server = serve({"echo": echo})
    peer = Raw(server.path)
    assert peer.hello == {"v": 1, "hello": {"service": "bavard", "protocol": 1,
                                            "pid": os.getpid(), "version": "9.9"}}
    peer.send(protocol.encode({"v": 1, "id": "a", "cmd": "echo", "args": {"x": 1}})
              + protocol.encode({"v": 1, "id": 7, "cmd": "echo"}))
    assert peer.read() == {"v": 1, "id": "a", "ok": True, "result": {"args": {"x": 1}}}
    assert peer.read() == {"v": 1, "id": 7, "ok": True, "result": {"args": {}}}
    with ControlClient.connect(server.path) as client:
        assert client.hello["version"] == "9.9"
        assert client.call("echo", y="z") == {"args": {"y": "z"}}
    peer.close()


def test_an_unknown_command_names_the_commands(serve: Make) -> None:
    server = serve({"echo": echo, "status": echo})
    with ControlClient.connect(server.path) as client, pytest.raises(ControlError) as caught:
        client.call("stauts")
    assert caught.value.code == protocol.UNKNOWN_COMMAND
    assert str(caught.value) == ("unknown command 'stauts' (commands: echo, status, "
                                 "subscribe, unsubscribe)")


def test_malformed_lines_get_an_error_and_the_connection_goes_on(serve: Make) -> None:
    server = serve({"echo": echo})
    other = Raw(server.path)
    peer = Raw(server.path)
    bad = [
        (b"not json\n", None, protocol.BAD_REQUEST, "not JSON"),
        (b"[1, 2]\n", None, protocol.BAD_REQUEST, "a JSON object, not list"),
        (b'{"v": 1, "id": 3}\n', 3, protocol.BAD_REQUEST, "cmd: the command's name is missing"),
        (b'{"v": 2, "id": 4, "cmd": "echo"}\n', 4, protocol.BAD_REQUEST,
         "v: protocol version 2 is not spoken here (this service speaks 1)"),
        (b'{"id": 5, "cmd": "echo"}\n', 5, protocol.BAD_REQUEST, "protocol version None"),
        (b'{"v": 1, "id": 6, "cmd": "echo", "args": [1]}\n', 6, protocol.BAD_ARGS,
         "args: a JSON object, not list"),
        (b'{"v": 1, "id": [6], "cmd": "echo"}\n', None, protocol.BAD_REQUEST, "id:"),
        (b"\xff\xfe\x00\n", None, protocol.BAD_REQUEST, "not JSON"),
        (b'{"v": 1, "id": 8, "cmd": "nope"}\n', 8, protocol.UNKNOWN_COMMAND, "unknown command"),
    ]
    for line, request_id, code, says in bad:
        peer.send(line)
        answer = peer.read()
        assert answer["ok"] is False and answer["id"] == request_id, (line, answer)
        assert answer["error"]["code"] == code, (line, answer)
        assert says in answer["error"]["message"], (line, answer)
    peer.send(b"\n  \n")  # blank lines are nothing
    assert peer.request(9, "echo", n=1)["result"] == {"args": {"n": 1}}
    assert other.request(1, "echo")["ok"] is True  # nothing else was disturbed
    assert server.stats()["clients"] == 2


def test_a_handlers_exception_is_an_error_answer_and_the_server_goes_on(
        serve: Make, caplog: pytest.LogCaptureFixture) -> None:
    def bad_args(args: dict[str, Any]) -> dict[str, Any]:
        raise ControlError("class: one of samples, events", protocol.BAD_ARGS)

    def failed(args: dict[str, Any]) -> dict[str, Any]:
        raise StoreError("the buffer is closed")

    def bug(args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 1 // 0}

    def not_a_dict(args: dict[str, Any]) -> dict[str, Any]:
        return [1]  # type: ignore[return-value]

    def not_json(args: dict[str, Any]) -> dict[str, Any]:
        return {"x": object()}

    server = serve({"bad_args": bad_args, "failed": failed, "bug": bug,
                    "not_a_dict": not_a_dict, "not_json": not_json, "echo": echo})
    peer = Raw(server.path)
    expected = [("bad_args", protocol.BAD_ARGS, "class: one of samples, events"),
                ("failed", protocol.FAILED, "the buffer is closed"),
                ("bug", protocol.INTERNAL, "bug: internal error in the service "
                 "(ZeroDivisionError: integer division or modulo by zero)"),
                ("not_a_dict", protocol.INTERNAL, "TypeError: the handler returned list"),
                ("not_json", protocol.INTERNAL, "TypeError: not JSON: object")]
    with caplog.at_level(logging.ERROR, logger="agent.control.dispatch"):
        for n, (cmd, code, says) in enumerate(expected):
            answer = peer.request(n, cmd)
            assert answer["error"]["code"] == code, answer
            assert says in answer["error"]["message"], answer
    logged = [r for r in caplog.records if r.getMessage() == "control command bug failed"]
    assert logged and logged[0].exc_info is not None  # with its traceback
    assert peer.request(99, "echo")["ok"] is True


def test_a_request_line_too_large_is_refused_and_the_peer_closed(serve: Make) -> None:
    server = serve({"echo": echo}, max_request=1024)
    for line in (b'{"v":1,"id":1,"cmd":"echo","args":{"x":"' + b"y" * 2000,  # still coming
                 b"x" * 1025 + b"\n"):  # a whole line, too long
        peer = Raw(server.path)
        assert peer.request(0, "echo", x="y" * 900)["ok"] is True  # under the limit
        peer.send(line)
        answer = peer.read()
        assert answer == {"v": 1, "id": None, "ok": False, "error": {
            "code": protocol.TOO_LARGE, "message": "a request line is at most 1024 bytes"}}
        assert peer.closed()
        peer.close()
    with ControlClient.connect(server.path) as client:
        assert client.call("echo") == {"args": {}}
        with pytest.raises(ControlError) as caught:
            client.call("echo", x="y" * 2000)
    assert caught.value.code == protocol.TOO_LARGE
    assert str(caught.value) == "a request line is at most 1024 bytes"


def test_the_peer_after_max_clients_is_told_busy(serve: Make) -> None:
    server = serve({"echo": echo}, max_clients=2)
    first, second = Raw(server.path), Raw(server.path)
    with pytest.raises(ControlError) as caught:
        ControlClient.connect(server.path, timeout=TIMEOUT)
    assert caught.value.code == protocol.BUSY
    assert "2 clients are connected, the most it serves" in str(caught.value)
    assert second.request(1, "echo")["ok"] is True
    first.close()
    for _ in range(100):  # its end is seen by the server's thread
        if server.stats()["clients"] == 1:
            break
        time.sleep(0.02)
    with ControlClient.connect(server.path) as client:
        assert client.call("echo") == {"args": {}}
    assert server.stats()["busy"] == 1


def test_a_slow_command_stops_no_stream_and_answers_stay_in_order(serve: Make) -> None:
    """A command that takes its time (an OBD scan) runs in the commands' thread: other
    peers are greeted and streamed meanwhile; the commands run one at a time; each
    peer's answers keep the order of its requests."""
    release = threading.Event()
    order: list[str] = []

    def slow(args: dict[str, Any]) -> dict[str, Any]:
        order.append("slow")
        release.wait(10)
        return {"slow": True}

    def quick(args: dict[str, Any]) -> dict[str, Any]:
        order.append("quick")
        return {"quick": True}

    tap = Tap()
    server = serve({"slow": slow, "quick": quick}, tap=tap)
    first = Raw(server.path)
    first.send(protocol.encode({"v": 1, "id": 1, "cmd": "slow"})
               + protocol.encode({"v": 1, "id": 2, "cmd": "quick"}))
    other = Raw(server.path)  # greeted while the slow command runs
    assert other.request(1, "subscribe", topic="events")["ok"]
    tap.events([Event(1.0, "agent", "reload", "ok")])
    assert other.read()["items"][0]["kind"] == "reload"  # streamed meanwhile
    third = Raw(server.path)
    third.send(protocol.encode({"v": 1, "id": 9, "cmd": "quick"}))
    time.sleep(0.2)
    assert order == ["slow"]  # one command at a time
    release.set()
    assert first.read() == {"v": 1, "id": 1, "ok": True, "result": {"slow": True}}
    assert first.read() == {"v": 1, "id": 2, "ok": True, "result": {"quick": True}}
    assert third.read()["result"] == {"quick": True}
    assert order == ["slow", "quick", "quick"]


def test_a_peer_that_sends_and_stops_writing_still_gets_its_answers(serve: Make) -> None:
    """``echo REQUEST | socat - UNIX-CONNECT:/run/bavard/control``: the request, then
    the end of what the peer writes; its answer comes, then the end."""
    server = serve({"echo": echo})
    peer = Raw(server.path)
    peer.send(protocol.encode({"v": 1, "id": 1, "cmd": "echo", "args": {"a": 1}})
              + protocol.encode({"v": 1, "id": 2, "cmd": "echo"}))
    peer.sock.shutdown(socket.SHUT_WR)
    assert peer.read()["result"] == {"args": {"a": 1}}
    assert peer.read()["result"] == {"args": {}}
    assert peer.closed()


# --- permissions


def as_nobody(cwd: Path, action: Callable[[], dict[str, Any]],
              groups: tuple[int, ...] = ()) -> dict[str, Any]:
    """``action()`` in a forked child that became nobody (uid and gid 65534, the
    supplementary ``groups``) in ``cwd``; what it returned or raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest from here on, and always os._exit
        try:
            os.close(read_end)
            os.chdir(cwd)
            os.setgroups(list(groups))
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out = action()
        except BaseException as exc:
            out = {"raised": type(exc).__name__, "message": str(exc)}
        try:
            os.write(write_end, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        for _ in range(200):
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child did not end within 10 s")
        result: dict[str, Any] = json.loads(pipe.read())
    return result


def connect_and_call() -> dict[str, Any]:
    with ControlClient.connect(Path("control"), timeout=TIMEOUT) as client:
        return {"hello": client.hello, "echo": client.call("echo")}


@root_only
def test_the_socket_file_is_0660_and_keeps_others_out(
        serve: Make, sockdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = "bavard-test-no-such-group"
    with caplog.at_level(logging.WARNING, logger="agent.control.listen"):
        server = serve({"echo": echo}, group=missing)
    assert caplog.messages == [f"control socket {server.path}: there is no group {missing} on "
                               "this system: only root and the service's user may use it"]
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    out = as_nobody(sockdir, connect_and_call)
    assert out["raised"] == "ControlRefusedError", out
    assert out["message"] == ("control: permission denied: the control socket is for root and "
                              "the group bavard (sudo usermod -aG bavard $USER, then log in "
                              "again)")
    assert server.stats()["refused"] == 0  # the kernel refused it: the server saw nothing


@root_only
def test_a_peer_outside_the_group_is_refused_by_its_credentials(
        serve: Make, sockdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    server = serve({"echo": echo}, group="daemon", clock=lambda: now[0])
    server.path.chmod(0o666)  # only the server's own check stands in the way
    with caplog.at_level(logging.WARNING, logger="agent.control.server"):
        outs = [as_nobody(sockdir, connect_and_call) for _ in range(3)]
        now[0] += 1.5
        outs.append(as_nobody(sockdir, connect_and_call))
    for out in outs:
        assert out["raised"] == "ControlRefusedError", out
        assert out["message"].startswith(
            "control: refused by the service: uid 65534 gid 65534 (pid "), out
        assert out["message"].endswith(
            "is not root nor in the group daemon (gid 1): sudo usermod -aG daemon USER, "
            "then log in again"), out
    assert server.stats()["refused"] == 4
    warnings = [r.getMessage() for r in caplog.records if "refused a peer" in r.getMessage()]
    assert len(warnings) == 2, warnings  # at most one a second
    assert "uid 65534 gid 65534" in warnings[0]
    assert warnings[1].endswith("(2 more refused since the last warning)")
    with ControlClient.connect(server.path) as client:  # root still may
        assert client.call("echo") == {"args": {}}


@root_only
def test_the_groups_gid_or_a_supplementary_group_lets_a_peer_in(
        serve: Make, sockdir: Path) -> None:
    server = serve({"echo": echo}, group="nogroup")  # gid 65534: nobody's own
    assert os.stat(server.path).st_gid == NOBODY  # the service gave the socket its group
    server.path.chmod(0o666)
    out = as_nobody(sockdir, connect_and_call)
    assert out.get("echo") == {"args": {}}, out
    server.close()
    server = serve({"echo": echo}, group="daemon")  # gid 1, not nobody's
    server.path.chmod(0o666)
    out = as_nobody(sockdir, connect_and_call, groups=(1,))  # but in its groups
    assert out.get("echo") == {"args": {}}, out
    assert server.stats()["refused"] == 0


# --- the socket file


def test_close_removes_the_socket_file_and_a_stale_one_is_replaced(
        serve: Make, sockdir: Path) -> None:
    path = sockdir / "control"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a service that died: its file is left, nobody listens
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    server = serve({"echo": echo})
    with ControlClient.connect(path) as client:
        assert client.call("echo") == {"args": {}}
    with pytest.raises(ControlError, match="another service is listening there"):
        serve({"echo": echo})
    server.close()
    assert not path.exists()
    assert list(sockdir.iterdir()) == []  # nor its temporary name
    server.close()  # again: nothing happens


def test_a_file_that_is_not_a_socket_is_left_alone(serve: Make, sockdir: Path) -> None:
    path = sockdir / "control"
    path.write_text("mine")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        serve()
    assert path.read_text() == "mine"


# --- streams

CONFIG = """
[[channels]]
name = "a"
log = "{log}"
dbc = "{dbc}"
speed = 0

[[channels]]
name = "b"
log = "{log}"
dbc = "{dbc}"
speed = 0

[[signals]]
match = "*"
on_change = true
"""

ONE_CHANNEL = """
[[channels]]
name = "can0"
log = "{log}"
dbc = "{dbc}"
speed = 0

[[signals]]
match = "*"
on_change = true
"""


def two_channels(tmp_path: Path, lines: int) -> Pipeline:
    """A pipeline of two replay channels, ``a`` and ``b``, each the first ``lines``
    frames of the sample drive, every signal kept on change."""
    log = tmp_path / "drive.log"
    log.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:lines]))
    return Pipeline.from_config(parse_config(CONFIG.format(log=log, dbc=DBC), base_dir=ROOT))


def run(pipeline: Pipeline, sink: Callable[[list[Sample]], None]) -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            pipeline.run(sink, threading.Event())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(RUN_TIMEOUT)
    assert not thread.is_alive(), f"the pipeline did not finish within {RUN_TIMEOUT} s"
    if errors:
        raise errors[0]


def read_stream(peer: Raw, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Stream lines until none comes for ``quiet`` seconds (at most 10,000)."""
    peer.sock.settimeout(quiet)
    lines = []
    try:
        for _ in range(10_000):
            lines.append(peer.read())
    except TimeoutError:
        pass
    peer.sock.settimeout(TIMEOUT)
    return lines


def test_streams_are_filtered_by_channel_and_signal_glob(serve: Make, tmp_path: Path) -> None:
    pipeline = two_channels(tmp_path, 3000)
    tap = Tap(channels={"a", "b"}, depth=10**7)  # deep enough: nothing is dropped
    pipeline.tap = tap
    server = serve(tap=tap, out_limit=10**8)
    samples, frames = Raw(server.path), Raw(server.path)
    assert samples.request("s", "subscribe", topic="samples", channel="b",
                           signals="EngineData.Engine*")["result"] == {
        "topic": "samples", "channel": "b", "signals": "EngineData.Engine*"}
    assert frames.request("f", "subscribe", topic="frames", channel="a")["ok"]
    kept: list[Sample] = []
    run(pipeline, kept.extend)

    lines = read_stream(frames)
    assert {(m["id"], m["stream"], m["dropped"]) for m in lines} == {("f", "frames", 0)}
    got = [item for m in lines for item in m["items"]]
    log = SAMPLE.read_text().splitlines()[:3000]
    assert len(got) == 3000
    for item, line in zip(got, log, strict=True):  # (1767225600.000064) can0 0C0#0000000000
        ts, _, frame = line.split()
        ident, data = frame.split("#")
        assert item == {"t": float(ts.strip("()")), "ch": "a", "id": int(ident, 16),
                        "ext": len(ident) == 8, "fd": False, "data": data.lower()}

    lines = read_stream(samples)
    assert {(m["id"], m["stream"], m["dropped"]) for m in lines} == {("s", "samples", 0)}
    got = [item for m in lines for item in m["items"]]
    assert {(i["ch"], i["msg"]) for i in got} == {("b", "EngineData")}
    assert {i["sig"] for i in got} == {"EngineSpeed", "EngineLoad", "EngineTorque"}
    # kept: exactly what the policy gave the sink ...
    expected = [(s.timestamp, s.signal, s.value, s.unit) for s in kept
                if s.channel == "b" and s.message == "EngineData"
                and s.signal.startswith("Engine")]
    assert [(i["t"], i["sig"], i["v"], i["unit"]) for i in got if i["kept"]] == expected
    # ... and each sample it dropped has the value last kept (the rule is on-change)
    last: dict[str, Any] = {}
    for item in got:
        if item["kept"]:
            last[item["sig"]] = item["v"]
        else:
            assert last[item["sig"]] == item["v"], item
    assert sum(not i["kept"] for i in got) > 0
    assert server.stats()["dropped"] == 0


def test_subscribe_refuses_bad_arguments(serve: Make) -> None:
    server = serve(tap=Tap(channels={"can0"}))
    peer = Raw(server.path)
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "topic: a string"),
        ({"topic": "bits"}, "topic: 'bits' is not one of frames, samples, events"),
        ({"topic": "frames", "channel": "can9"}, "channel: no channel 'can9' (channels: can0)"),
        ({"topic": "frames", "signals": "A.*"},
         "signals: a glob filters the samples topic, not frames"),
        ({"topic": "samples", "channel": 3}, "channel: a string or nothing"),
        ({"topic": "samples", "every": 2},
         "unknown argument 'every' (subscribe takes topic, channel, signals)"),
    ]
    for args, says in cases:
        answer = peer.request(1, "subscribe", **args)
        assert answer["error"] == {"code": protocol.BAD_ARGS, "message": says}, answer
    assert peer.request(2, "subscribe", topic="events")["ok"]
    answer = peer.request(3, "subscribe", topic="samples")
    assert answer["error"]["message"] == ("this connection is subscribed to events already "
                                          "(one subscription per connection: unsubscribe first)")


def test_unsubscribe_ends_the_stream_and_the_connection_goes_on(serve: Make) -> None:
    tap = Tap()
    server = serve({"echo": echo}, tap=tap)
    peer = Raw(server.path)
    assert peer.request(1, "subscribe", topic="events", channel="obd")["ok"]
    assert tap.active
    tap.events([Event(1.5, "obd", "dtc.set", "P0301", 2), Event(1.6, "can0", "gap", "1 s")])
    line = peer.read()
    assert line == {"v": 1, "id": 1, "stream": "events", "dropped": 0, "items": [
        {"t": 1.5, "ch": "obd", "kind": "dtc.set", "detail": "P0301", "prio": 2}]}
    assert peer.request(2, "unsubscribe")["result"] == {"topic": "events", "sent": 1,
                                                        "dropped": 0}
    assert not tap.active
    tap.events([Event(2.0, "obd", "dtc.cleared", "P0301")])  # nobody sees it
    assert peer.request(3, "echo") == {"v": 1, "id": 3, "ok": True, "result": {"args": {}}}
    assert peer.request(4, "unsubscribe")["result"]["topic"] is None
    assert peer.request(5, "subscribe", topic="frames")["ok"]  # a new one may follow


def test_a_stuck_subscriber_does_not_slow_the_pipeline(serve: Make, tmp_path: Path) -> None:
    """Two peers subscribe and never read while the whole sample drive is replayed at
    full speed: the pipeline finishes and keeps what it keeps without them, their
    losses are counted, and another peer is answered promptly all along."""
    config = parse_config(ONE_CHANNEL.format(log=SAMPLE, dbc=DBC), base_dir=ROOT)
    alone: list[Sample] = []
    run(Pipeline.from_config(config), alone.extend)

    pipeline = Pipeline.from_config(config)
    tap = Tap()
    pipeline.tap = tap
    server = serve({"status": lambda args: {"frames_in": pipeline.frames_in}}, tap=tap,
                   out_limit=256 * 1024)
    stuck = [Raw(server.path), Raw(server.path)]
    stuck[0].send(protocol.encode({"v": 1, "id": 1, "cmd": "subscribe",
                                   "args": {"topic": "frames"}}))
    stuck[1].send(protocol.encode({"v": 1, "id": 1, "cmd": "subscribe",
                                   "args": {"topic": "samples"}}))
    for _ in range(100):
        if len(tap.subscriptions()) == 2:
            break
        time.sleep(0.02)
    assert len(tap.subscriptions()) == 2
    kept: list[Sample] = []
    thread = threading.Thread(target=pipeline.run, args=(kept.extend, threading.Event()),
                              daemon=True)
    thread.start()
    latencies = []
    with ControlClient.connect(server.path, timeout=TIMEOUT) as client:
        for _ in range(10_000):
            if not thread.is_alive():
                break
            start = time.perf_counter()
            client.call("status")
            latencies.append(time.perf_counter() - start)
            time.sleep(0.02)
        thread.join(RUN_TIMEOUT)
        assert not thread.is_alive(), "the pipeline did not finish"
        assert client.call("status") == {"frames_in": SAMPLE_FRAMES}
    assert kept == alone
    assert len(latencies) >= 3 and max(latencies) < 1.0, latencies
    peers = {p["topic"]: p for p in server.stats()["peers"]}
    assert peers["frames"]["dropped"] > 0 and peers["samples"]["dropped"] > 0, peers
    # the stuck peers read at last: what they were sent, then what was left, each line
    # saying what was lost before it; at the end every item was either sent or counted
    for peer, total in zip(stuck, (SAMPLE_FRAMES, pipeline.samples_decoded), strict=True):
        answer = peer.read()
        assert answer["ok"] and answer["id"] == 1
        sent = dropped = 0
        for _ in range(100_000):
            line = peer.read()
            sent += len(line["items"])
            dropped += line["dropped"]
            if sent + dropped == total:
                break
        assert sent + dropped == total
    peers = {p["topic"]: p for p in server.stats()["peers"]}
    assert peers["frames"]["sent"] + peers["frames"]["dropped"] == SAMPLE_FRAMES
    assert peers["samples"]["sent"] + peers["samples"]["dropped"] == pipeline.samples_decoded
