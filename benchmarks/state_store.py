"""Which local store keeps the account state on disk: the measurement behind ``worker.state``'s choice.

Each candidate holds N accounts (key -> a real serialized :class:`inference.history.AccountHistory`
of about 1.3 KB, varied per account) and is timed at what the worker asks of it:

* ``load``: writing N records in batches of 10,000 (a restore from the changelog, or a first fill);
* ``get``: random point reads of accounts (an event whose account is not in the memory cache);
* ``commit``: an atomic batch of 1,000 changed accounts plus the changelog position (a commit fold);
* ``scan``: reading every record (what an in-memory-only design pays at every start);
* ``disk``: bytes on disk after the load.

Run: ``.venv/bin/python benchmarks/state_store.py [--accounts 1000000]`` (prints a table and the load
average; nothing else should be running). Figures are in ``docs/state.md``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from inference.history import AccountHistory
from inference.synthetic import generate

BATCH = 10_000
COMMIT = 1_000
GETS = 50_000


def sample_values(count: int) -> list[bytes]:
    events = [labelled.event for labelled in generate(4_000, seed=7)]
    values = []
    for index in range(count):
        history = AccountHistory(32)
        for event in events[index * 37 % 3_000 : index * 37 % 3_000 + 8 + index % 40]:
            history.observe(event)
        values.append(history.to_bytes())
    return values


class Store:
    name = ""

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def get(self, key: bytes) -> bytes | None:
        raise NotImplementedError

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Sqlite(Store):
    name = "sqlite3 (WAL)"

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path / "state.db")
        self.db.execute("pragma journal_mode=wal")
        self.db.execute("pragma synchronous=normal")
        self.db.execute("create table s (k blob primary key, v blob) without rowid")

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        with self.db:
            self.db.executemany("insert or replace into s values (?, ?)", items)

    def get(self, key: bytes) -> bytes | None:
        row = self.db.execute("select v from s where k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self.db.execute("select k, v from s")

    def close(self) -> None:
        self.db.close()


class Lmdb(Store):
    name = "lmdb"

    def __init__(self, path: Path) -> None:
        import lmdb

        self.env = lmdb.open(str(path), map_size=64 << 30, sync=False, metasync=False)

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            for key, value in items:
                txn.put(key, value)

    def get(self, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            value: bytes | None = txn.get(key)
            return value

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        with self.env.begin() as txn:
            yield from txn.cursor()

    def close(self) -> None:
        self.env.close()


class Rocks(Store):
    name = "rocksdb (rocksdict)"

    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict, WriteBatch

        options = Options(raw_mode=True)
        self.db = Rdict(str(path / "rocks"), options=options)
        self._batch = WriteBatch

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        batch = self._batch(raw_mode=True)
        for key, value in items:
            batch.put(key, value)
        self.db.write(batch)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self.db.items()

    def close(self) -> None:
        self.db.close()


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(kind: type[Store], accounts: int, values: list[bytes]) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="riskstream-store-"))
    try:
        store = kind(root)
        keys = [f"acct-{index:012x}".encode() for index in range(accounts)]
        items = [(key, values[index % len(values)]) for index, key in enumerate(keys)]

        def load() -> None:
            for start in range(0, accounts, BATCH):
                store.put_many(items[start : start + BATCH])

        load_s = timed(load)
        rng = random.Random(3)
        probes = [keys[rng.randrange(accounts)] for _ in range(GETS)]
        get_s = timed(lambda: [store.get(key) for key in probes])
        changed = [(keys[rng.randrange(accounts)], values[rng.randrange(len(values))]) for _ in range(COMMIT)]
        commits = 20
        commit_s = timed(lambda: [store.put_many([*changed, (b"\x00position", b"123456")]) for _ in range(commits)])
        scan_s = timed(lambda: sum(1 for _ in store.scan()))
        store.close()
        disk = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
        return {
            "load_records_per_s": accounts / load_s,
            "get_us": get_s / GETS * 1e6,
            "commit_ms": commit_s / commits * 1e3,
            "scan_records_per_s": accounts / scan_s,
            "disk_bytes_per_account": disk / accounts,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    args = parser.parse_args()
    values = sample_values(2_000)
    mean = sum(map(len, values)) / len(values)
    print(f"accounts={args.accounts:,} value bytes mean={mean:.0f} load average={os.getloadavg()[0]:.2f}")
    print(f"{'store':<22}{'load rec/s':>12}{'get µs':>9}{'commit ms':>11}{'scan rec/s':>12}{'disk B/acct':>13}")
    for kind in (Sqlite, Lmdb, Rocks):
        try:
            row = measure(kind, args.accounts, values)
        except ImportError as exc:
            print(f"{kind.name:<22}skipped ({exc.name} is not installed: pip install -e '.[bench]')")
            continue
        print(
            f"{kind.name:<22}{row['load_records_per_s']:>12,.0f}{row['get_us']:>9.1f}{row['commit_ms']:>11.1f}"
            f"{row['scan_records_per_s']:>12,.0f}{row['disk_bytes_per_account']:>13,.0f}"
        )
    print(f"load average after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
