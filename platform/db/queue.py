"""A bounded write-behind queue that never loses what it is given.

``put`` never blocks and never raises, so request paths can hand records over for free. A
background task writes them in batches. When the database is unreachable (``StoreUnavailable``),
batches go to a local spool file (JSON lines) and a recovery loop replays every spool file of
this queue once the database answers again, including files left by processes that died (each
live process holds an exclusive ``flock`` on its own file, so nobody replays a file still being
written). A full queue spills straight to the spool and is counted and logged, never refused.
``stop`` drains what is queued (to the database, else to the spool).

Writes must be idempotent per item (every adapter skips an ``id`` it already has), because a
batch that failed half-way, or a replay cut short, is written again.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from veena.platform.db.base import StoreUnavailable

T = TypeVar("T", bound=msgspec.Struct)


class _Interrupted(Exception):
    """The database went away part-way through a batch: ``remaining`` was not written."""

    def __init__(self, remaining: list[Any], cause: StoreUnavailable, written: int) -> None:
        super().__init__(str(cause))
        self.remaining, self.cause, self.written = remaining, cause, written
log = logging.getLogger("veena.queue")
_STOP = object()


class DurableQueue(Generic[T]):
    """Batched background writes with a spool file for outages; see the module docstring."""

    def __init__(self, name: str, write: Callable[[list[T]], Awaitable[Any]], item_type: type[T],
                 spool_dir: Path, *, maxsize: int = 10_000, batch_size: int = 200,
                 flush_interval: float = 0.2, retry_interval: float = 5.0) -> None:
        self.name = name
        self.write = write
        self.item_type = item_type
        self.spool_dir = Path(spool_dir)
        self.maxsize, self.batch_size = maxsize, batch_size
        self.flush_interval, self.retry_interval = flush_interval, retry_interval
        self.stats: dict[str, int] = dict.fromkeys(
            ("enqueued", "written", "spooled", "replayed", "queue_full", "rejected", "lost",
             "write_errors"), 0)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._decoder = msgspec.json.Decoder(item_type)
        self._encoder = msgspec.json.Encoder()
        self._spool_file: Any = None
        self._spool_path: Path | None = None
        self._down = False
        self._writer: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._recovered = asyncio.Event()
        self._last_full_log = 0.0
        self._full_since_log = 0

    # --- producer side --------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Items waiting in memory."""
        return self._queue.qsize()

    @property
    def database_down(self) -> bool:
        return self._down

    def put(self, item: T) -> None:
        """Hands ``item`` over; never blocks, never raises."""
        self.stats["enqueued"] += 1
        if self._queue.qsize() < self.maxsize and self._writer is not None:
            self._queue.put_nowait(item)
            return
        if self._writer is not None:
            self.stats["queue_full"] += 1
            self._full_since_log += 1
            now = time.monotonic()
            if now - self._last_full_log > 10:
                log.warning("%s queue full: spilling to the spool file", self.name,
                            extra={"queue": self.name, "spilled": self._full_since_log,
                                   "maxsize": self.maxsize})
                self._last_full_log, self._full_since_log = now, 0
        self._spool([item])
        if self._writer is not None:
            self._start_recovery(delay=self.retry_interval)  # replays the spill later

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._writer = asyncio.get_running_loop().create_task(self._run(), name=f"{self.name}-writer")
        if self._spool_files():
            self._start_recovery(delay=0.0)

    async def stop(self, timeout: float = 10.0) -> None:
        """Writes what is queued (to the database, else the spool) and stops."""
        if self._writer is None:
            return
        self._queue.put_nowait(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        self._writer = None
        leftovers = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP:
                leftovers.append(item)
        if leftovers:
            self._spool(leftovers)
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        self._close_spool()

    async def flush(self, timeout: float = 10.0) -> None:
        """Waits until everything queued so far has been written or spooled (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while (self._queue.qsize() or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def wait_recovered(self, timeout: float = 30.0) -> bool:
        """Waits until no spool file of this queue is left (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._down and not self._spool_files() and not self._queue.qsize() \
                    and not self._busy and (self._recovery is None or self._recovery.done()):
                return True
            await asyncio.sleep(0.05)
        return False

    # --- writer -------------------------------------------------------------------------------
    _busy = False

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is _STOP:
                break
            self._busy = True  # from here until written or spooled (flush() waits on it)
            batch = [item]
            deadline = time.monotonic() + self.flush_interval
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            try:
                await self._deliver(batch)
            finally:
                self._busy = False

    async def _deliver(self, batch: list[T]) -> None:
        if self._down:
            self._spool(batch)
            return
        try:
            self.stats["written"] += await self._write_checked(batch)
        except asyncio.CancelledError:
            self._spool(batch)  # shutdown timed out mid-write: keep it (replay is idempotent)
            raise
        except _Interrupted as exc:
            self.stats["written"] += exc.written
            self._spool(exc.remaining)
            self._mark_down(exc.cause)

    async def _write_checked(self, batch: list[T]) -> int:
        """Writes ``batch``; when it fails for a reason other than StoreUnavailable, writes it
        again row by row so that only a row that fails on its own is set aside (with its
        reason). Returns how many rows were written; raises ``_Interrupted`` with the rows not
        yet written when the database goes away."""
        try:
            await self.write(batch)
            return len(batch)
        except StoreUnavailable as exc:
            raise _Interrupted(batch, exc, 0) from exc
        except Exception as exc:
            self.stats["write_errors"] += 1
            if len(batch) == 1:
                self.reject(batch, exc)
                return 0
            log.warning("%s batch of %d failed (%s); writing it row by row", self.name,
                        len(batch), type(exc).__name__, extra={"queue": self.name})
        written = 0
        for i, item in enumerate(batch):
            try:
                await self.write([item])
                written += 1
            except StoreUnavailable as exc:
                raise _Interrupted(batch[i:], exc, written) from exc
            except Exception as exc:
                self.reject([item], exc)
        return written

    def _mark_down(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("%s database unavailable, spooling to disk: %s", self.name, exc,
                        extra={"queue": self.name})
            self._down = True
        self._start_recovery(delay=self.retry_interval)

    # --- spool --------------------------------------------------------------------------------
    def _spool(self, items: list[T]) -> None:
        try:
            if self._spool_file is None:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
                path = self.spool_dir / f"{self.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
                f = open(path, "ab")
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._spool_file, self._spool_path = f, path
            self._spool_file.write(b"".join(self._encoder.encode(i) + b"\n" for i in items))
            self._spool_file.flush()
            self.stats["spooled"] += len(items)
        except Exception:
            self.stats["lost"] += len(items)
            log.exception("%s: could not spool %d item(s)", self.name, len(items),
                          extra={"queue": self.name})

    def _close_spool(self) -> None:
        if self._spool_file is not None:
            self._spool_file.close()  # releases the lock; the file stays for replay
            self._spool_file = self._spool_path = None

    def _spool_files(self) -> list[Path]:
        if not self.spool_dir.exists():
            return []
        return sorted(self.spool_dir.glob(f"{self.name}-*.jsonl"),
                      key=lambda p: p.stat().st_mtime if p.exists() else 0)

    @property
    def rejected_path(self) -> Path:
        """Where rows that cannot be written are set aside: JSON lines ``{"reason", "at",
        "row"}`` (``"raw"`` instead of ``"row"`` for an unreadable spool line)."""
        return self.spool_dir / f"{self.name}.rejected"

    def reject(self, items: list[T], exc: BaseException) -> None:
        """Sets ``items`` aside in ``rejected_path`` with ``exc`` as the reason."""
        self.stats["rejected"] += len(items)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        log.error("%s: %d row(s) cannot be written and are set aside in %s (%s)", self.name,
                  len(items), self.rejected_path, type(exc).__name__, extra={"queue": self.name})
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            with open(self.rejected_path, "ab") as f:
                f.write(b"".join(self._encoder.encode(
                    {"reason": reason, "at": time.time(), "row": i}) + b"\n" for i in items))
        except OSError:
            self.stats["lost"] += len(items)
            log.exception("%s: could not set aside %d item(s)", self.name, len(items))

    # --- recovery -------------------------------------------------------------------------------
    def _start_recovery(self, delay: float) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.get_running_loop().create_task(
                self._recover(delay), name=f"{self.name}-recovery")

    async def _recover(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            try:
                await self._replay_all()
                was_down, self._down = self._down, False
                await self._replay_all()  # what was spilled while the first pass ran
                if was_down:
                    log.info("%s database back; spool replayed", self.name,
                             extra={"queue": self.name, "replayed": self.stats["replayed"]})
                return
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("%s replay failed", self.name, extra={"queue": self.name})
            self._down = True
            await asyncio.sleep(self.retry_interval)

    async def _replay_all(self) -> None:
        """Replays every spool file no live process holds (raises StoreUnavailable)."""
        self._close_spool()  # our own file becomes replayable; new spills start a new one
        for path in self._spool_files():
            try:
                f = open(path, "rb+")
            except FileNotFoundError:
                continue
            with f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process is still writing it and will replay it
                if not path.exists():  # replayed and removed by someone else meanwhile
                    continue
                items, bad = [], []
                for line in f.read().splitlines():
                    if not line.strip():
                        continue
                    try:
                        items.append(self._decoder.decode(line))
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        bad.append(line)
                for i in range(0, len(items), self.batch_size):
                    batch = items[i:i + self.batch_size]
                    try:
                        self.stats["replayed"] += await self._write_checked(batch)
                    except _Interrupted as exc:  # stop here, keep the file (replay is idempotent)
                        raise exc.cause from None
                if bad:
                    log.error("%s: %d unreadable spool line(s) set aside", self.name, len(bad),
                              extra={"queue": self.name})
                    with open(self.rejected_path, "ab") as r:
                        r.write(b"".join(self._encoder.encode(
                            {"reason": "unreadable spool line", "at": time.time(),
                             "raw": b.decode("utf-8", "replace")}) + b"\n" for b in bad))
                path.unlink(missing_ok=True)


async def replay_rejected(path: Path, write: Callable[[list[T]], Awaitable[Any]],
                          item_type: type[T]) -> tuple[int, int]:
    """Writes every row set aside in ``path`` again, one by one (``veena db replay``, after the
    cause was fixed). Rows that still fail go back to ``path`` with their new reason; when the
    database goes away, what was not tried yet goes back unchanged and StoreUnavailable is
    raised. Returns (written, still set aside). Lines of the older bare-row format are read too.
    """
    if not path.exists():
        return 0, 0
    work = path.with_name(f"{path.name}.replaying-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.replace(path, work)  # servers appending meanwhile start a fresh file
    decoder, encoder = msgspec.json.Decoder(item_type), msgspec.json.Encoder()
    lines = [line for line in work.read_bytes().splitlines() if line.strip()]
    written, failed, keep = 0, 0, []
    try:
        for n, line in enumerate(lines):
            try:
                entry = msgspec.json.decode(line)
                raw = msgspec.json.encode(entry["row"]) if isinstance(entry, dict) and "row" in entry \
                    else entry["raw"].encode() if isinstance(entry, dict) and "raw" in entry else line
                item = decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError, KeyError, AttributeError):
                keep.append(line)  # still unreadable: left as it was
                failed += 1
                continue
            try:
                await write([item])
                written += 1
            except StoreUnavailable:
                keep.extend(lines[n:])
                raise
            except Exception as exc:
                failed += 1
                keep.append(encoder.encode({"reason": f"{type(exc).__name__}: {str(exc)[:200]}",
                                            "at": time.time(), "row": item}))
    finally:
        if keep:
            with open(path, "ab") as f:
                f.write(b"".join(k + b"\n" for k in keep))
        work.unlink(missing_ok=True)
    return written, failed
