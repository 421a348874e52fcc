"""The write-behind queue: batches, spool while the database is down, replay, full queue,
drain on stop, files left by dead processes, bad data set aside."""

from __future__ import annotations

import asyncio
import fcntl

import msgspec
import pytest

from veena.platform.db import StoreUnavailable
from veena.platform.db.queue import DurableQueue, replay_rejected


class Item(msgspec.Struct):
    id: int


class FakeDb:
    def __init__(self) -> None:
        self.rows: dict[int, Item] = {}
        self.batches: list[int] = []
        self.down = False
        self.poison: set[int] = set()
        self.delay = 0.0

    async def write(self, batch: list[Item]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise StoreUnavailable("down")
        if any(i.id in self.poison for i in batch):
            raise ValueError("bad row")
        self.batches.append(len(batch))
        for i in batch:
            self.rows[i.id] = i  # idempotent by id, like the adapters


def queue(db, tmp_path, **kw) -> DurableQueue[Item]:
    opts = dict(batch_size=50, flush_interval=0.01, retry_interval=0.05)
    return DurableQueue("t", db.write, Item, tmp_path / "spool", **{**opts, **kw})


def test_batches_and_drain_on_stop(tmp_path):
    async def main():
        db = FakeDb()
        q = queue(db, tmp_path)
        await q.start()
        for i in range(120):
            q.put(Item(i))
        await q.stop()
        assert sorted(db.rows) == list(range(120))
        assert max(db.batches) == 50 and len(db.batches) <= 4
        assert q.stats["written"] == 120 and q.stats["spooled"] == 0
    asyncio.run(main())


def test_outage_spools_then_replays(tmp_path):
    async def main():
        db = FakeDb()
        q = queue(db, tmp_path)
        await q.start()
        db.down = True
        for i in range(30):
            q.put(Item(i))
        await q.flush()
        assert q.database_down and q.stats["spooled"] == 30 and not db.rows
        assert list((tmp_path / "spool").glob("t-*.jsonl"))
        for i in range(30, 40):  # while down, new items go to the spool too
            q.put(Item(i))
        await q.flush()
        db.down = False
        assert await q.wait_recovered(5)
        assert sorted(db.rows) == list(range(40))
        assert q.stats["replayed"] == 40 and not list((tmp_path / "spool").glob("t-*.jsonl"))
        q.put(Item(99))
        await q.stop()
        assert 99 in db.rows
    asyncio.run(main())


def test_full_queue_spills_counts_and_loses_nothing(tmp_path, caplog):
    async def main():
        db = FakeDb()
        db.delay = 0.05
        q = queue(db, tmp_path, maxsize=5, batch_size=5)
        await q.start()
        for i in range(100):
            q.put(Item(i))  # never blocks, never raises
        assert q.stats["queue_full"] >= 90
        await q.stop()
        # what spilled is replayed by the next start (or by recovery while running)
        db.delay = 0
        q2 = queue(db, tmp_path)
        await q2.start()
        assert await q2.wait_recovered(5)
        await q2.stop()
        assert sorted(db.rows) == list(range(100))
    asyncio.run(main())
    assert "queue full" in caplog.text


def test_stop_while_down_keeps_everything_for_the_next_start(tmp_path):
    async def main():
        db = FakeDb()
        db.down = True
        q = queue(db, tmp_path)
        await q.start()
        for i in range(10):
            q.put(Item(i))
        await q.stop()
        db.down = False
        q2 = queue(db, tmp_path)
        await q2.start()
        assert await q2.wait_recovered(5)
        await q2.stop()
        assert sorted(db.rows) == list(range(10))
    asyncio.run(main())


def test_files_of_live_processes_are_left_alone(tmp_path):
    async def main():
        spool = tmp_path / "spool"
        spool.mkdir()
        orphan = spool / "t-111-dead.jsonl"
        orphan.write_bytes(b'{"id":1}\n{"id":2}\n')
        live = spool / "t-222-live.jsonl"
        live.write_bytes(b'{"id":3}\n')
        holder = open(live, "ab")
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # "another process"
        db = FakeDb()
        q = queue(db, tmp_path)
        await q.start()
        await asyncio.sleep(0.3)
        assert sorted(db.rows) == [1, 2] and not orphan.exists() and live.exists()
        holder.close()
        await q.stop()
    asyncio.run(main())


def test_bad_data_is_set_aside_not_retried_forever(tmp_path):
    async def main():
        db = FakeDb()
        db.poison = {7}
        q = queue(db, tmp_path)
        await q.start()
        q.put(Item(7))
        await q.flush()
        q.put(Item(8))
        await q.stop()
        assert 8 in db.rows and q.stats["rejected"] == 1
        [line] = (tmp_path / "spool" / "t.rejected").read_bytes().splitlines()
        entry = msgspec.json.decode(line)
        assert entry["row"] == {"id": 7} and entry["reason"] == "ValueError: bad row"
        (tmp_path / "spool" / "t-1-x.jsonl").write_bytes(b'{"id":9}\nnot json\n')
        q2 = queue(db, tmp_path)
        await q2.start()
        assert await q2.wait_recovered(5)
        await q2.stop()
        assert 9 in db.rows and b"not json" in (tmp_path / "spool" / "t.rejected").read_bytes()
    asyncio.run(main())


@pytest.mark.parametrize("n", [1, 3])
def test_put_before_start_and_after_stop_is_spooled(tmp_path, n):
    async def main():
        db = FakeDb()
        q = queue(db, tmp_path)
        for i in range(n):
            q.put(Item(i))
        assert q.stats["spooled"] == n
        await q.start()
        assert await q.wait_recovered(5)
        await q.stop()
        q.put(Item(50))
        assert q.stats["spooled"] == n + 1
    asyncio.run(main())


def test_a_bad_row_sets_aside_only_itself_not_its_batch(tmp_path):
    """One unwritable row in a batch of 50: the other 49 (other users' requests) are written."""
    async def main():
        db = FakeDb()
        db.poison = {13}
        q = queue(db, tmp_path, flush_interval=0.2)
        await q.start()
        for i in range(50):
            q.put(Item(i))
        await q.stop()
        assert sorted(db.rows) == [i for i in range(50) if i != 13]
        assert q.stats["rejected"] == 1 and q.stats["written"] == 49
        lines = (tmp_path / "spool" / "t.rejected").read_bytes().splitlines()
        assert [msgspec.json.decode(x)["row"] for x in lines] == [{"id": 13}]
    asyncio.run(main())


def test_a_bad_row_in_a_spool_file_does_not_block_its_replay(tmp_path):
    async def main():
        db = FakeDb()
        db.poison = {2}
        (tmp_path / "spool").mkdir()
        (tmp_path / "spool" / "t-1-x.jsonl").write_bytes(b'{"id":1}\n{"id":2}\n{"id":3}\n')
        q = queue(db, tmp_path)
        await q.start()
        assert await q.wait_recovered(5)
        await q.stop()
        assert sorted(db.rows) == [1, 3] and q.stats["rejected"] == 1
    asyncio.run(main())


def test_set_aside_rows_are_replayed_after_a_fix(tmp_path):
    async def main():
        db = FakeDb()
        db.poison = {5, 6}
        q = queue(db, tmp_path)
        await q.start()
        for i in range(8):
            q.put(Item(i))
        await q.stop()
        path = tmp_path / "spool" / "t.rejected"
        with open(path, "ab") as f:
            f.write(b'{"id":9}\nnot json\n')  # the older bare format, and garbage
        db.poison = {6}  # "the fix" covers 5 only
        assert await replay_rejected(path, db.write, Item) == (2, 2)
        assert 5 in db.rows and 9 in db.rows and 6 not in db.rows
        lines = path.read_bytes().splitlines()
        assert b"not json" in lines and len(lines) == 2
        db.poison = set()
        assert await replay_rejected(path, db.write, Item) == (1, 1)  # garbage stays
        assert 6 in db.rows
        db.down = True
        assert await replay_rejected(path, db.write, Item) == (0, 1)
        path.write_bytes(b'{"id":20}\n')
        with pytest.raises(StoreUnavailable):
            await replay_rejected(path, db.write, Item)
        assert path.read_bytes() == b'{"id":20}\n'  # kept for the next try
        assert not list((tmp_path / "spool").glob("*.replaying-*"))
    asyncio.run(main())
