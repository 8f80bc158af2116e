"""N concurrent promoters against one registry, in threads or processes; shared by the
concurrency tests and ``benchmarks/promotion.py``.

Each promoter gets a distinct metric value (a shuffled 0..N-1), an artifact directory that
exists and a complete manifest, and all start together behind a barrier, so the races are real.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_training_guard.promotion.policy import PromotionPolicy
from airflow_training_guard.promotion.promote import Backoff, promote
from airflow_training_guard.promotion.registry import (
    Candidate,
    HistoryEntry,
    ModelRegistry,
    PromotionOutcome,
    PromotionResult,
)

POLICY = PromotionPolicy(metric="ndcg", direction="max")


def make_registry(spec: Mapping[str, Any]) -> ModelRegistry:
    """Build a registry from a picklable spec (processes cannot share an engine or a client)."""
    if spec["kind"] == "sql":
        from airflow_training_guard.promotion.sql import SqlModelRegistry

        return SqlModelRegistry(spec["url"], create_tables=False)
    from airflow_training_guard.promotion.hub import HubModelRegistry

    return HubModelRegistry(endpoint=spec["endpoint"], token="hf_test", cache_dir=spec["cache_dir"])


def make_candidates(n: int, artifact_root: Path, seed: int = 0) -> list[Candidate]:
    values = list(range(n))
    random.Random(seed).shuffle(values)
    candidates = []
    for i, value in enumerate(values):
        artifact = artifact_root / f"model-{i:03d}"
        artifact.mkdir(parents=True, exist_ok=True)
        (artifact / "model.bin").write_bytes(b"weights")
        candidates.append(
            Candidate(
                candidate_id=f"cand-{i:03d}",
                artifact_uri=str(artifact),
                metrics={"ndcg": value / n},
                run_id=f"run-{i:03d}",
                partition_key="2026-11-01",
                manifest_missing=(),
            )
        )
    return candidates


def _promote_one(
    spec: Mapping[str, Any], model_name: str, candidate: Candidate, max_attempts: int, seed: int
) -> tuple[PromotionResult, float]:
    registry = make_registry(spec)
    started = time.perf_counter()
    result = promote(
        registry,
        model_name,
        candidate,
        POLICY,
        promoted_by=f"worker-{candidate.candidate_id}",
        backoff=Backoff(max_attempts=max_attempts, base=0.005, cap=0.2),
        rng=random.Random(seed),
    )
    return result, time.perf_counter() - started


def _process_main(
    spec: dict[str, Any],
    model_name: str,
    candidate: Candidate,
    max_attempts: int,
    seed: int,
    barrier: Any,
    queue: Any,
) -> None:
    try:
        make_registry(spec)  # warm imports before the barrier: measure promotions, not imports
        barrier.wait(timeout=120)
        queue.put(
            ("ok", candidate.candidate_id, *_promote_one(spec, model_name, candidate, max_attempts, seed))
        )
    except BaseException as err:  # report, so the parent fails with the reason instead of hanging
        queue.put(("error", candidate.candidate_id, repr(err), 0.0))


@dataclass
class ContentionRun:
    results: dict[str, PromotionResult]
    wall_seconds: float

    @property
    def promoted(self) -> list[PromotionResult]:
        return [r for r in self.results.values() if r.outcome is PromotionOutcome.PROMOTED]


def run_contention(
    spec: Mapping[str, Any],
    model_name: str,
    candidates: list[Candidate],
    *,
    mode: str,
    max_attempts: int = 60,
) -> ContentionRun:
    """Promote every candidate at once; mode is "threads" or "processes"."""
    n = len(candidates)
    results: dict[str, PromotionResult] = {}
    if mode == "threads":
        barrier = threading.Barrier(n)
        errors: list[BaseException] = []
        lock = threading.Lock()

        def work(i: int, candidate: Candidate) -> None:
            try:
                barrier.wait(timeout=60)
                result, _ = _promote_one(spec, model_name, candidate, max_attempts, i)
                with lock:
                    results[candidate.candidate_id] = result
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(candidates)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        wall = time.perf_counter() - started
        if errors:
            raise errors[0]
    elif mode == "processes":
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(n + 1)
        queue = ctx.Queue()
        procs = [
            ctx.Process(
                target=_process_main, args=(dict(spec), model_name, c, max_attempts, i, barrier, queue)
            )
            for i, c in enumerate(candidates)
        ]
        for p in procs:
            p.start()
        barrier.wait(timeout=180)
        started = time.perf_counter()
        for _ in procs:
            status, cid, payload, _elapsed = queue.get(timeout=300)
            if status != "ok":
                raise AssertionError(f"promoter {cid} crashed: {payload}")
            results[cid] = payload
        wall = time.perf_counter() - started
        for p in procs:
            p.join(timeout=30)
    else:
        raise ValueError(f"mode {mode!r}: use 'threads' or 'processes'")
    return ContentionRun(results=results, wall_seconds=wall)


def check_single_chain(history: list[HistoryEntry], run: ContentionRun, candidates: list[Candidate]) -> None:
    """The invariants of a correct run; raise AssertionError naming the first broken one."""
    best = max(candidates, key=lambda c: c.metrics["ndcg"])
    assert len(run.results) == len(candidates), "a promoter returned no result"
    gave_up = [r.reason for r in run.results.values() if r.outcome is PromotionOutcome.CONFLICT_GAVE_UP]
    assert not gave_up, f"promoters gave up: {gave_up[:2]}"
    assert history, "no history recorded"
    assert history[-1].pointer.candidate_id == best.candidate_id, (
        f"final pointer {history[-1].pointer.describe('ndcg')} is not the best candidate {best.candidate_id}"
    )
    previous = None
    for expected_version, entry in enumerate(history, start=1):
        assert entry.pointer.version == expected_version, (
            f"history has a gap/duplicate at v{expected_version}"
        )
        assert entry.replaced == previous, f"v{expected_version} does not replace v{expected_version - 1}"
        if previous is not None:
            assert entry.pointer.metrics["ndcg"] > previous.metrics["ndcg"], (
                "a worse model replaced a better one"
            )
        previous = entry.pointer
    promoted = sorted(r.current.candidate_id for r in run.promoted if r.current)
    assert promoted == sorted(e.pointer.candidate_id for e in history), (
        "a promoter reported success whose pointer is not in the history (lost update)"
    )
    for cid, result in run.results.items():
        if result.outcome is PromotionOutcome.REJECTED:
            assert "does not beat production" in result.reason, f"{cid}: unclear rejection {result.reason!r}"
            if result.conflicts:
                assert "lost" in result.reason and "compare-and-swap" in result.reason, result.reason
