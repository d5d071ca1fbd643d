"""Storage budget benchmark: a history written by an earlier version, trimmed to storage.max_mb.

For each size it writes N ended events (one a minute, ~1 KB rows like the rules make, optional
snapshot files) into a camserver.db without auto-vacuum, as an earlier version left it, then opens
it as the server does (quick_check, the one-time conversion VACUUM) and runs the budget's steps
until it is under max_mb. Prints the file sizes before and after, what was kept, and the CPU time
(thread time, not wall time: the machine is shared) of the open, of each step and of a round with
nothing to do.

    python -m bench.storage --events 4000,100000 --max-mb 2,20 --snapshot-kb 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from camserver.events.store import SCHEMA, EventStore
from camserver.storage import Database

ZONES = [f"zone-{k}-along-the-garden-path" for k in range(6)]


def fill(folder: Path, n: int, now: float, snapshot_kb: int) -> None:
    """camserver.db without auto-vacuum holding n ended events, one a minute up to `now`."""
    (folder / "snapshots").mkdir(parents=True)
    db = sqlite3.connect(folder / "camserver.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    db.execute("BEGIN")
    for i in range(n):
        start = now - 60 * (n - i)
        event_id = f"{int(start * 1000)}-{i:06x}"
        record = {"id": event_id, "camera": "door", "label": "person", "score": 0.88, "top_score": 0.92,
                  "box": [123.4, 56.7, 234.5, 456.7], "start_time": start, "end_time": start + 10,
                  "end_reason": "disappeared", "stationary": False, "current_zones": ZONES, "entered_zones": ZONES,
                  "has_snapshot": bool(snapshot_kb), "snapshot_box": None, "snapshot_score": 0.0, "announced": True}
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (event_id, "door", "person", start, start + 10, "," + ",".join(ZONES) + ",", int(bool(snapshot_kb)),
                    start + 10, json.dumps(record)))
        if snapshot_kb:
            (folder / "snapshots" / f"{event_id}.jpg").write_bytes(b"\xff" * snapshot_kb * 1024)
    db.execute("COMMIT")
    db.close()


def on_disk(folder: Path) -> int:
    """Bytes of camserver.db, its WAL and the snapshots."""
    return sum(p.stat().st_size for p in [*folder.glob("camserver.db*"), *(folder / "snapshots").iterdir()])


async def one(n: int, max_mb: float, snapshot_kb: int) -> dict:
    """Fill, open, trim; the figures of one run."""
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="camserver-bench-") as tmp:
        folder = Path(tmp)
        fill(folder, n, now, snapshot_kb)
        before = on_disk(folder)
        database = Database(folder, max_mb)
        # the database's thread has done nothing before: its thread time after the open is the open's
        await database.run(database._open)  # quick_check and the one-time conversion VACUUM
        open_cpu = await database.run(time.thread_time)
        store = EventStore(folder, retain_days=100)
        await database.run(store.open, database.conn, now)
        budget = database.budget
        budget.add(store)
        steps, walls = [], []
        while True:
            t = time.perf_counter()
            more, cpu = await database.run(budget._timed_step, now)
            walls.append(time.perf_counter() - t)
            steps.append(cpu)
            if not more:
                break
        _, idle_cpu = await database.run(budget._timed_step, now)
        kept = await database.run(lambda: database.conn.execute("SELECT count(*) FROM events").fetchone()[0])
        after = on_disk(folder)
        total = budget.last.total if budget.last else 0
        await database.close()
    return {"events": n, "max_mb": max_mb, "snapshot_kb": snapshot_kb, "before_mb": before / 2**20,
            "after_mb": after / 2**20, "budget_total_mb": total / 2**20, "kept": kept, "steps": len(steps),
            "open_cpu_ms": open_cpu * 1000, "step_cpu_ms_median": statistics.median(steps) * 1000,
            "step_cpu_ms_max": max(steps) * 1000, "step_wall_ms_max": max(walls) * 1000,
            "trim_cpu_ms_total": sum(steps) * 1000, "idle_step_cpu_ms": idle_cpu * 1000}


def main() -> None:
    """Parse the flags and print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="4000,100000")
    parser.add_argument("--max-mb", default="2,20")
    parser.add_argument("--snapshot-kb", type=int, default=0)
    args = parser.parse_args()
    for n, max_mb in zip([int(x) for x in args.events.split(",")], [float(x) for x in args.max_mb.split(",")]):
        r = asyncio.run(one(n, max_mb, args.snapshot_kb))
        print(f"{r['events']:>7} events, {r['snapshot_kb']} KB snapshots, max_mb {r['max_mb']:g}: "
              f"{r['before_mb']:.2f} MB -> {r['after_mb']:.2f} MB on disk (budget counts {r['budget_total_mb']:.2f}), "
              f"{r['kept']} kept, {r['steps']} steps; CPU ms: open (quick_check + conversion) {r['open_cpu_ms']:.0f}, "
              f"step median {r['step_cpu_ms_median']:.1f} max {r['step_cpu_ms_max']:.1f} (wall max "
              f"{r['step_wall_ms_max']:.1f}), all steps {r['trim_cpu_ms_total']:.0f}, a round with nothing to do "
              f"{r['idle_step_cpu_ms']:.2f}")


if __name__ == "__main__":
    main()
