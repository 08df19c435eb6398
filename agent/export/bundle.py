"""Writing an export bundle: all of it, or nothing.

The bundle is written into a temporary directory beside the target
(``.NAME.export-PID.tmp``), fsynced, then renamed to the target in one step.
Any failure (a full disk, a chunk that cannot be read, Ctrl-C) removes the
temporary directory and leaves the target as it was: a technician never gets a
bundle that looks whole and is not. A target that exists and is not empty is
refused unless ``force``; then the old one is replaced only once the new one
is complete. (A bundle process killed with SIGKILL leaves its ``.tmp``
directory behind: it can be deleted.)
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import BavardError
from agent.export import manifest as mf
from agent.export.context import Context
from agent.export.reader import BufferReader
from agent.export.times import When, iso_utc
from agent.export.writers import ClassWriter, import_pyarrow, open_writer
from agent.globs import glob_matches
from agent.store import Kind
from agent.store.schema import is_disk_full
from agent.units import human_bytes

ALL_CLASSES = (Kind.SAMPLE, Kind.EVENT, Kind.FRAME)
FORMATS = ("csv", "jsonl", "parquet")
SLICE = 2000  # items handed to a writer at a time


@dataclass(frozen=True)
class ExportRequest:
    db_path: Path
    out_dir: Path
    fmt: str
    since: When
    until: When
    signals: tuple[str, ...] = ()  # globs over samples (Message.Signal or Signal)
    channels: tuple[str, ...] = ()
    classes: tuple[Kind, ...] = ALL_CLASSES
    force: bool = False


@dataclass
class Progress:
    """How far a bundle got: what the disk-full message reports."""

    estimate: int = 0  # items in the chunks of the range: an upper bound
    done: int = 0
    warnings: list[str] = field(default_factory=list)


class _Selection:
    """Which samples the ``--signals`` globs keep, and which globs kept any."""

    def __init__(self, globs: tuple[str, ...]) -> None:
        self.globs = globs
        self.used: set[str] = set()
        self.seen: set[str] = set()
        self._cache: dict[tuple[str, str], bool] = {}

    def keep(self, samples: list[Any]) -> list[Any]:
        if not self.globs:
            return samples
        cache = self._cache
        out = []
        for s in samples:
            key = (s[2], s[3])
            kept = cache.get(key)
            if kept is None:
                self.seen.add(f"{s[2]}.{s[3]}")
                hits = [g for g in self.globs if glob_matches(g, s[2], s[3])]
                self.used.update(hits)
                kept = cache[key] = bool(hits)
            if kept:
                out.append(s)
        return out

    def unused(self, known: Collection[tuple[str, str]]) -> list[str]:
        """A warning for each glob that kept nothing; ``known``: (message, signal) of
        the DBCs, to tell a misspelt name from a signal that was not recorded."""
        out = []
        for glob in self.globs:
            if glob in self.used:
                continue
            if any(glob_matches(glob, m, s) for m, s in known):
                out.append(f"--signals {glob!r}: the DBC files have such signals, but the "
                           f"buffer holds no sample of them in that time range")
                continue
            names = sorted(self.seen | {f"{m}.{s}" for m, s in known})
            close = difflib.get_close_matches(glob, names, n=3, cutoff=0.5)
            hint = f" (close: {', '.join(close)})" if close else ""
            what = ("no signal of the DBC files and no sample" if known else
                    "no sample in that time range")
            out.append(f"--signals {glob!r} matched {what}{hint}")
        return out


def export_bundle(request: ExportRequest, context: Context,
                  clock: Callable[[], float] = time.time,
                  on_progress: Callable[[Progress], None] | None = None,
                  ) -> tuple[Path, dict[str, Any]]:
    """Write the bundle of ``request`` and return its path and manifest."""
    out = request.out_dir
    if request.since.epoch >= request.until.epoch:
        raise BavardError(f"--since {request.since.text} ({request.since.iso}) is not before "
                          f"--until {request.until.text} ({request.until.iso})")
    _check_target(out, request.force)
    if request.fmt == "parquet":
        import_pyarrow()
    temp = out.parent / f".{out.name}.export-{os.getpid()}.tmp"
    progress = Progress(warnings=list(context.warnings))
    try:
        temp.mkdir()
    except OSError as exc:
        raise _failure(exc, out, temp, progress) from None
    try:
        manifest = _write(request, context, temp, progress, clock, on_progress)
        _sync_tree(temp)
        _install(temp, out)
    except BaseException as exc:
        error = _failure(exc, out, temp, progress) if isinstance(exc, OSError) else None
        shutil.rmtree(temp, ignore_errors=True)
        if error is not None:
            raise error from None
        raise
    return out, manifest


def _write(request: ExportRequest, context: Context, temp: Path, progress: Progress,
           clock: Callable[[], float],
           on_progress: Callable[[Progress], None] | None) -> dict[str, Any]:
    tally = mf.Tally()
    selection = _Selection(request.signals)
    since, until = request.since.epoch, request.until.epoch
    files: list[dict[str, Any]] = []
    with BufferReader(request.db_path) as reader:
        reader.snapshot()
        span = reader.span()
        progress.estimate = reader.estimate(request.classes, since, until)
        for kind in request.classes:
            writer: ClassWriter | None = None
            try:
                for items in reader.items(kind, since, until, request.channels):
                    if kind == Kind.SAMPLE:
                        items = selection.keep(items)
                    if not items:
                        continue
                    if writer is None:
                        writer = open_writer(request.fmt, kind, temp)
                    tally.add(kind, items)
                    for at in range(0, len(items), SLICE):  # progress: what a full disk says
                        part = items[at:at + SLICE]
                        writer.write(part)
                        progress.done += len(part)
                        if on_progress is not None:
                            on_progress(progress)
            finally:
                if writer is not None:
                    writer.close()
            if writer is not None:
                files.append(mf.file_entry(writer.path, kind, writer.rows, writer.columns))
    warnings = progress.warnings
    warnings += selection.unused({(m, s) for _, m, s in context.metadata})
    if tally.total == 0:
        held = ("the buffer is empty" if span is None else
                f"the buffer holds {iso_utc(span[0])} to {iso_utc(span[1])}")
        warnings.append(f"nothing to export from {request.since.iso} to "
                        f"{request.until.iso} with these filters ({held})")
    filters = {"signals": list(request.signals), "channels": list(request.channels),
               "classes": [k.label for k in request.classes]}
    mf.write_checksums(temp, files)
    manifest = mf.build(context=context, since=request.since, until=request.until,
                        filters=filters, fmt=request.fmt, tally=tally, files=files,
                        created_at=clock(), span=span, warnings=warnings)
    (temp / mf.README).write_text(mf.readme(manifest), encoding="utf-8")
    mf.write_manifest(temp, manifest)
    return manifest


def _check_target(out: Path, force: bool) -> None:
    if not out.parent.is_dir():
        raise BavardError(f"-o {out}: {out.parent} is not a directory")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BavardError(f"-o {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise BavardError(f"-o {out}: exists and is not empty (--force replaces it once "
                          f"the new bundle is complete)")


def _install(temp: Path, out: Path) -> None:
    """Rename ``temp`` to ``out``; a non-empty ``out`` is moved aside first and
    deleted once the new bundle is in place."""
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
    try:
        os.rename(temp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    _fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _failure(exc: OSError, out: Path, temp: Path, progress: Progress) -> BavardError:
    """The error to show for ``exc``, measured before ``temp`` is removed."""
    written = _size(temp)
    if not (is_disk_full(exc) or "No space left" in str(exc)):
        return BavardError(f"-o {out}: cannot write: {exc.strerror or exc}; the partial "
                           f"export was removed")
    free = None
    with contextlib.suppress(OSError):
        st = os.statvfs(out.parent)
        free = st.f_bavail * st.f_frsize + written  # what is free once it is removed
    text = f"-o {out}: the disk is full; the partial export was removed"
    if progress.done and progress.estimate:
        needed = written * progress.estimate // progress.done
        text += (f": it had written {human_bytes(written)} for {progress.done:,} of at most "
                 f"{progress.estimate:,} items, so the whole export needs about "
                 f"{human_bytes(needed)}")
    elif written:
        text += f" after {human_bytes(written)}"
    if free is not None:
        text += f"; {human_bytes(free)} are free there"
    return BavardError(text + " (export less: --since/--until, --signals, --class; or "
                              "choose another -o)")


def _size(directory: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            with contextlib.suppress(OSError):
                total += path.lstat().st_size
    return total
