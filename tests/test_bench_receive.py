"""scripts/bench_receive.py runs real receiver processes on loopback, prints its rows,
and fails when a contender's output is not the batches sent.

Nothing here times anything: the script runs in its smoke mode (``--quick``: two
vehicles, the sample drive's first 20,000 frames); only its exit status and the rows
it prints are looked at. ``--wrong WHO:KIND`` spoils one contender's output before
the script's own checks (a value changed, a batch's file removed, a batch's file
copied beside it), which must then end the run with status 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_receive.py"
TIMEOUT = 120  # seconds; a smoke run takes about 5 on an idle machine
FLEET = "fleet: 2 vehicles x 3 batches = 6 batches, 45,748 samples"
# label, batches/s, samples/s, min-max batches/s over the rounds, CPU ms per batch (the
# receivers' from /proc, "-" without it), ratio to pyarrow,
# then for the receivers: [speed-up over 1 receiver,] sender CPU
ROW = re.compile(r"^  (?P<label>\S.*?\S) +(?P<batches>\d+\.\d) +(?P<samples>[\d,]+) +"
                 r"(?P<low>\d+\.\d)-(?P<high>\d+\.\d) +(?P<cost>\d+|-) +(?P<ratio>\d+\.\d\dx)"
                 r"(?: +(?P<speedup>\d+\.\d\dx))?(?: +(?P<cpu>\d+%))?$")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def rows(out: str) -> dict[str, re.Match[str]]:
    return {m["label"]: m for line in out.splitlines() if (m := ROW.match(line))}


def test_quick_run_prints_a_row_per_receiver_count_and_checks_the_lake() -> None:
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert FLEET in out
    assert re.search(r"os\.cpu_count\(\) = (\d+) \(shared\), so no receiver count can be "
                     r"more than \1x here", out)
    found = rows(out)
    baseline = found.pop("pyarrow: decode + pa.table + pq.write_table (1 process)")
    assert baseline["ratio"] == "1.00x" and baseline["speedup"] is None
    assert int(baseline["cost"]) > 0
    assert list(found) == ["1 receiver -> lake", "2 receivers -> lake", "4 receivers -> lake"]
    assert found["1 receiver -> lake"]["speedup"] == "1.00x"
    for row in found.values():
        assert float(row["batches"]) > 0 and row["cpu"] is not None
        assert row["cost"].isdigit() or not Path("/proc/self/stat").exists()
        assert row["low"] == row["high"] == row["batches"]  # one round: its own figure
    sizes = dict(re.findall(r"^  (encoded batches \(zstd 3\)|the lake's samples files "
                            r"\(raw column included\)|the pyarrow baseline's files) +"
                            r"(\d+\.\d\d)  \(", out, re.M))
    assert len(sizes) == 3 and all(float(v) > 0 for v in sizes.values()), out
    assert ("every batch exactly once, 6 batches with their 45,748 samples, equal to the "
            "baseline's") in out


def test_the_sqlite_receivers_are_checked_the_same_way() -> None:
    done = run("--sink", "sqlite", "--receivers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(rows(done.stdout)) == [
        "pyarrow: decode + pa.table + pq.write_table (1 process)", "2 receivers -> SQLite"]
    assert "6 batches with their 45,748 samples" in done.stdout


@pytest.mark.parametrize(("wrong", "says"), [
    ("receivers:value", r"1 receiver: batch [0-9a-f]{32} \(\d+ us \w+\.\w+\): value "),
    ("receivers:skip", r"1 receiver: 1 batches missing, the first [0-9a-f]{32}"),
    ("receivers:twice", r"1 receiver: holds batch [0-9a-f]{32} 2 times"),
    ("pyarrow:value", r"pyarrow: batch [0-9a-f]{32} .*: value .*, the batches sent: "),
])
def test_a_wrong_output_fails_the_run(wrong: str, says: str) -> None:
    done = run("--receivers", "1", "--wrong", wrong)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"CHECK FAILED: " + says, done.stderr), done.stderr
