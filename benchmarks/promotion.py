#!/usr/bin/env python3
"""Promotion under contention on PostgreSQL: compare-and-swap ``promote()`` beside a no-CAS writer.

Both writers run in the same process, on the same fresh PostgreSQL database, with the same
candidates, in repeated rounds (``--rounds``), so their figures are side by side:

- ``compare_and_swap``: ``promote()`` of ``airflow_training_guard.promotion`` on
  ``SqlModelRegistry`` (``UPDATE ... WHERE version = :seen``; a loser re-reads and re-decides);
- ``no_cas``: the writer many registries have: read the pointer, decide with the same
  ``PromotionPolicy``, write the pointer unconditionally. Every write also increments a write
  counter in the same ``UPDATE`` (atomic in PostgreSQL), so a writer learns how many writes landed
  between its read and its write: each of them is a *lost update* (overwritten by a writer that
  never saw it). A write whose model is worse than the one it overwrote is a *regression*.

One round: ``--writers`` threads pass a barrier together; writer i starts ``i x stagger``
later (``--stagger-ms``; default: half of one uncontended promotion, measured first in the same run) and takes the next candidate number from a shared counter just before it promotes; a
candidate's metric grows with its number (newer training runs are better, as in scheduled
retraining). The stagger is shorter than one promotion, so writers still read the same pointer
and collide on the same row (``conflicts_lost_cas_races`` counts the lost races), but most
promotions are real swaps rather than rejections of an older candidate.

Verdict (``verdict``), computed from the figures: compare-and-swap lost no update and never
regressed production, its history is one chain (each entry replaced the previous one), its final
pointer is the best candidate; real swaps dominate (``--min-swap-share`` of its promotions, default
0.5); and the no-CAS writer did lose updates in the same run, which shows the contention was high
enough for a lost update to happen, and so to be caught.

    .venv/bin/python benchmarks/promotion.py                 # 20 rounds x 8 writers
    .venv/bin/python benchmarks/promotion.py --quick         # 5 rounds x 8 writers
    .venv/bin/python benchmarks/promotion.py --postgres-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, create_engine, text  # noqa: E402

from airflow_training_guard.promotion.policy import PromotionPolicy  # noqa: E402
from airflow_training_guard.promotion.promote import Backoff, promote  # noqa: E402
from airflow_training_guard.promotion.registry import Candidate, PromotionOutcome  # noqa: E402
from airflow_training_guard.promotion.sql import SqlModelRegistry  # noqa: E402

POLICY = PromotionPolicy(metric="ndcg", direction="max")
MODEL = "ranker"

NO_CAS_SCHEMA = (
    "CREATE TABLE naive_pointer (model_name text PRIMARY KEY, candidate_id text NOT NULL, "
    "ndcg double precision NOT NULL, writes integer NOT NULL)",
    "CREATE TABLE naive_history (writes integer PRIMARY KEY, candidate_id text NOT NULL, "
    "ndcg double precision NOT NULL, seen_writes integer NOT NULL)",
)


@dataclass
class Tally:
    """What one writer kind did in one round."""

    calls: int = 0
    swaps: int = 0
    rejected: int = 0
    gave_up: int = 0
    conflicts: int = 0
    lost_updates: int = 0
    promoted_ids: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class CandidateSource:
    """Candidates numbered in the order writers ask for them; a later one has a higher metric."""

    def __init__(self, artifact_root: Path) -> None:
        self.artifact = artifact_root / "model"
        self.artifact.mkdir(parents=True, exist_ok=True)
        (self.artifact / "model.bin").write_bytes(b"weights")
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> Candidate:
        with self._lock:
            number = next(self._numbers)
        return Candidate(
            candidate_id=f"cand-{number:05d}",
            artifact_uri=str(self.artifact),
            metrics={"ndcg": number / 100_000},
            run_id=f"run-{number:05d}",
            partition_key="2026-11-01",
            manifest_missing=(),
        )


def _cas_writer(registry: SqlModelRegistry, source: CandidateSource, tally: Tally, seed: int) -> None:
    candidate = source.next()
    began = time.perf_counter()
    result = promote(
        registry,
        MODEL,
        candidate,
        POLICY,
        promoted_by=f"bench-{seed}",
        backoff=Backoff(max_attempts=100, base=0.002, cap=0.05),
        rng=random.Random(seed),
    )
    elapsed = time.perf_counter() - began
    with tally.lock:
        tally.calls += 1
        tally.conflicts += result.conflicts
        tally.seconds.append(elapsed)
        if result.outcome is PromotionOutcome.PROMOTED:
            tally.swaps += 1
            tally.promoted_ids.append(candidate.candidate_id)
        elif result.outcome is PromotionOutcome.CONFLICT_GAVE_UP:
            tally.gave_up += 1
        else:
            tally.rejected += 1


def _no_cas_writer(engine: Engine, source: CandidateSource, tally: Tally, seed: int) -> None:
    candidate = source.next()
    began = time.perf_counter()
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT candidate_id, ndcg, writes FROM naive_pointer WHERE model_name = :m"), {"m": MODEL}
        ).one()
        conn.commit()
    # The same decision promote() makes, against what was read.
    better = candidate.metrics["ndcg"] > row.ndcg
    lost = 0
    if better:
        with engine.begin() as conn:
            writes = conn.execute(
                text(
                    "UPDATE naive_pointer SET candidate_id = :c, ndcg = :v, writes = writes + 1 "
                    "WHERE model_name = :m RETURNING writes"
                ),
                {"c": candidate.candidate_id, "v": candidate.metrics["ndcg"], "m": MODEL},
            ).scalar_one()
            conn.execute(
                text("INSERT INTO naive_history VALUES (:w, :c, :v, :s)"),
                {"w": writes, "c": candidate.candidate_id, "v": candidate.metrics["ndcg"], "s": row.writes},
            )
        # Writes that landed between this writer's read and its write were overwritten unseen.
        lost = writes - row.writes - 1
    elapsed = time.perf_counter() - began
    with tally.lock:
        tally.calls += 1
        tally.seconds.append(elapsed)
        tally.lost_updates += lost
        if better:
            tally.swaps += 1
        else:
            tally.rejected += 1


def _round(writers: int, stagger: float, work: Callable[[int], None]) -> float:
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            time.sleep(i * stagger)
            work(i)
        except BaseException as err:  # report, never hang the round
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    if errors:
        raise errors[0]
    return time.perf_counter() - began


def _summary(values: list[float], digits: int = 3) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def _pg_database(admin_url: str) -> tuple[str, str]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy import URL

    name = f"tg_bench_promotion_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = conninfo_to_dict(admin_url)
    url = URL.create(
        "postgresql+psycopg",
        username=parts.get("user"),
        password=parts.get("password"),
        host=parts.get("host"),
        port=int(parts["port"]) if parts.get("port") else None,
        database=name,
    )
    return name, url.render_as_string(hide_password=False)


def measure(pg_url: str, rounds: int, writers: int, stagger: float, root: Path) -> dict[str, Any]:
    engine = create_engine(pg_url, pool_size=writers + 2, max_overflow=writers)
    registry = SqlModelRegistry(engine)
    with engine.begin() as conn:
        for statement in NO_CAS_SCHEMA:
            conn.execute(text(statement))
        conn.execute(text("INSERT INTO naive_pointer VALUES (:m, 'none', -1, 0)"), {"m": MODEL})
    # One uncontended promotion, measured here: the default stagger is half of it, so each writer
    # starts before the previous one has finished (they overlap) but candidates arrive in order.
    warm_source = CandidateSource(root / "warm")
    solo = []
    for _ in range(10):
        began = time.perf_counter()
        promote(registry, "warmup", warm_source.next(), POLICY, promoted_by="bench-warmup")
        solo.append(time.perf_counter() - began)
    solo_seconds = statistics.median(solo)
    if stagger < 0:
        stagger = solo_seconds / 2
    cas_source = CandidateSource(root / "cas")
    naive_source = CandidateSource(root / "naive")
    per_round: dict[str, list[dict[str, Any]]] = {"compare_and_swap": [], "no_cas": []}
    cas_promoted: list[str] = []
    for number in range(rounds):
        # Alternate which writer goes first, so neither always meets a warmer database.
        order = ["compare_and_swap", "no_cas"] if number % 2 == 0 else ["no_cas", "compare_and_swap"]
        for kind in order:
            tally = Tally()
            if kind == "compare_and_swap":
                wall = _round(
                    writers,
                    stagger,
                    lambda i, t=tally, n=number: _cas_writer(registry, cas_source, t, n * 1000 + i),
                )
            else:
                wall = _round(writers, stagger, lambda i, t=tally: _no_cas_writer(engine, naive_source, t, i))
            cas_promoted.extend(tally.promoted_ids)
            per_round[kind].append(
                {
                    "round": number + 1,
                    "wall_seconds": wall,
                    "calls": tally.calls,
                    "swaps": tally.swaps,
                    "rejected": tally.rejected,
                    "gave_up": tally.gave_up,
                    "conflicts": tally.conflicts,
                    "lost_updates": tally.lost_updates,  # counted by the no-CAS writer only
                    "swaps_per_second": tally.swaps / wall,
                    "swap_share": tally.swaps / tally.calls,
                    "call_seconds": tally.seconds,
                }
            )

    # compare-and-swap: the registry's own history must be one chain of strictly better models.
    history = registry.history(MODEL)
    chain_breaks = sum(
        1
        for before, after in itertools.pairwise(history)
        if after.replaced is None or after.replaced.version != before.pointer.version
    )
    cas_regressions = sum(
        1
        for before, after in itertools.pairwise(history)
        if after.pointer.metrics["ndcg"] <= before.pointer.metrics["ndcg"]
    )
    # A promote() that reported a swap whose pointer is not in the history was overwritten unseen.
    in_history = {entry.pointer.candidate_id for entry in history}
    cas_lost = sum(1 for candidate_id in cas_promoted if candidate_id not in in_history)
    final = registry.read(MODEL).pointer
    cas_best = max(entry.pointer.metrics["ndcg"] for entry in history)
    with engine.connect() as conn:
        naive_rows = conn.execute(text("SELECT writes, ndcg FROM naive_history ORDER BY writes")).all()
        naive_final = conn.execute(text("SELECT ndcg FROM naive_pointer")).scalar_one()
    naive_regressions = sum(1 for a, b in itertools.pairwise(naive_rows) if b.ndcg <= a.ndcg)
    registry.close()

    def totals(kind: str) -> dict[str, Any]:
        rows = per_round[kind]
        calls = sum(r["calls"] for r in rows)
        swaps = sum(r["swaps"] for r in rows)
        return {
            "promote_calls": calls,
            "swaps": swaps,
            "rejected": sum(r["rejected"] for r in rows),
            "gave_up": sum(r["gave_up"] for r in rows),
            "swap_share": round(swaps / calls, 3),
            "conflicts_lost_cas_races": sum(r["conflicts"] for r in rows),
            "swaps_per_second_per_round": _summary([r["swaps_per_second"] for r in rows], 1),
            "round_wall_seconds": _summary([r["wall_seconds"] for r in rows]),
            "call_seconds": _summary([x for r in rows for x in r["call_seconds"]], 4),
            "swaps_per_round": [r["swaps"] for r in rows],
        }

    cas = totals("compare_and_swap")
    cas.update(
        {
            "lost_updates": cas_lost,
            "history_entries": len(history),
            "history_chain_breaks": chain_breaks,
            "regressions": cas_regressions,
            "final_pointer_is_best": final is not None and final.metrics["ndcg"] == cas_best,
        }
    )
    naive = totals("no_cas")
    naive.update(
        {
            "lost_updates": sum(r["lost_updates"] for r in per_round["no_cas"]),
            "lost_updates_per_round": [r["lost_updates"] for r in per_round["no_cas"]],
            "regressions": naive_regressions,
            "final_is_best_written": naive_final == max((r.ndcg for r in naive_rows), default=-1),
        }
    )
    return {
        "uncontended_promotion_seconds": round(solo_seconds, 4),
        "stagger_ms": round(stagger * 1000, 2),
        "compare_and_swap": cas,
        "no_cas": naive,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers per round")
    parser.add_argument(
        "--stagger-ms",
        type=float,
        default=-1.0,
        help="writer i of a round starts i x this later (default: half of one uncontended promotion, "
        "measured first: writers still overlap)",
    )
    parser.add_argument("--quick", action="store_true", help="5 rounds, for a smoke run")
    parser.add_argument("--min-swap-share", type=float, default=0.5)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TRAINING_GUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="admin URL: a fresh database is created there and dropped at the end",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds = 5
    import psycopg

    name, pg_url = _pg_database(args.postgres_url)
    try:
        with tempfile.TemporaryDirectory(prefix="tg-bench-promotion-") as tmp:
            figures = measure(pg_url, args.rounds, args.writers, args.stagger_ms / 1000, Path(tmp))
    finally:
        with psycopg.connect(args.postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cas, naive = figures["compare_and_swap"], figures["no_cas"]
    checks = {
        "cas_lost_no_update": cas["lost_updates"] == 0 and cas["history_chain_breaks"] == 0,
        "cas_never_regressed": cas["regressions"] == 0,
        "cas_final_pointer_is_best": cas["final_pointer_is_best"],
        "cas_swaps_dominate": cas["swap_share"] >= args.min_swap_share,
        "cas_never_gave_up": cas["gave_up"] == 0,
        "cas_races_were_real": cas["conflicts_lost_cas_races"] > 0,
        "no_cas_lost_updates_seen": naive["lost_updates"] > 0,
    }
    report = {
        "benchmark": "promotion",
        "backend": "postgresql",
        "rounds": args.rounds,
        "writers_per_round": args.writers,
        "cpus": os.cpu_count(),
        **figures,
        "checks": checks,
        "verdict": all(checks.values()),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
