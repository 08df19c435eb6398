"""The demo: simulator -> agent -> receiver on loopback; everything reaches the receiver."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from agent.receiver.database import ReceiverDb

ROOT = Path(__file__).resolve().parents[1]


def test_demo_delivers_everything_it_read_to_the_receiver(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "agent", "demo", "--duration", "3", "--speed",
                          "10", "--dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "0 records waiting" in out.stdout, out.stdout
    sent = re.search(r"upload\s+(\d+) batches, ([\d,]+) records", out.stdout)
    assert sent is not None, out.stdout
    batches, records = int(sent[1]), int(sent[2].replace(",", ""))
    with ReceiverDb(tmp_path / "received", readonly=True) as db:
        assert len(db.batches()) == batches > 0
        assert len(db.samples()) + len(db.events()) == records > 1000
        assert [e.kind for e in db.events()] == ["service.start"]
        assert db.counters()["total"]["duplicates"] == 0
    assert "EngineData.EngineSpeed" in out.stdout  # the receiver's summary
