"""Promotion under contention: N concurrent promoters (threads and processes) per backend.

Prints JSON: for each backend (SQLite, PostgreSQL if reachable, a loopback Hub server running the
real ``huggingface_hub`` client) and mode, the promote() calls completed per second, successful
swaps, retries (lost compare-and-swap races) per promotion p50/p99/max and total conflicts, and
whether the invariants held (final pointer = best candidate, one history chain, no lost update).

    .venv/bin/python benchmarks/promotion.py [--n 50] [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration" / "promotion"))
from contention import check_single_chain, make_candidates, make_registry, run_contention  # noqa: E402

from airflow_training_guard.promotion.sql import SqlModelRegistry  # noqa: E402
from tests.integration.hub.hub_server import LocalHub  # noqa: E402


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])


def _measure(spec: dict, model: str, n: int, mode: str, root: Path) -> dict:
    candidates = make_candidates(n, root / "artifacts", seed=n)
    run = run_contention(spec, model, candidates, mode=mode)
    history = make_registry(spec).history(model)
    try:
        check_single_chain(history, run, candidates)
        invariants = "ok"
    except AssertionError as err:
        invariants = f"FAILED: {err}"
    retries = [r.conflicts for r in run.results.values()]
    outcomes: dict[str, int] = {}
    for result in run.results.values():
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
    return {
        "mode": mode,
        "n": n,
        "wall_seconds": round(run.wall_seconds, 3),
        "promotions_per_second": round(n / run.wall_seconds, 1),
        "successful_swaps": len(history),
        "outcomes": outcomes,
        "retries_per_promotion": {
            "p50": _percentile(retries, 0.5),
            "p99": _percentile(retries, 0.99),
            "max": max(retries),
            "mean": round(statistics.mean(retries), 2),
        },
        "conflicts": sum(retries),
        "invariants": invariants,
    }


def _pg_database(admin_url: str) -> tuple[str, str] | None:
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from sqlalchemy import URL

        name = f"tg_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        p = conninfo_to_dict(admin_url)
        url = URL.create(
            "postgresql+psycopg",
            username=p.get("user"),
            password=p.get("password"),
            host=p.get("host"),
            port=int(p["port"]) if p.get("port") else None,
            database=name,
        )
        return name, url.render_as_string(hide_password=False)
    except Exception as err:
        print(f"PostgreSQL skipped: {err}", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--modes", default="threads,processes")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TRAINING_GUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    modes = args.modes.split(",")
    report: dict = {"benchmark": "promotion", "n": args.n, "cpus": os.cpu_count(), "backends": {}}
    with tempfile.TemporaryDirectory(prefix="tg-bench-promotion-") as tmp:
        root = Path(tmp)
        for mode in modes:
            url = f"sqlite:///{root / f'registry-{mode}.db'}"
            SqlModelRegistry(url).close()
            report["backends"].setdefault("sqlite", []).append(
                _measure({"kind": "sql", "url": url}, "ranker", args.n, mode, root / f"sqlite-{mode}")
            )
        created = _pg_database(args.postgres_url)
        if created:
            import psycopg

            name, pg_url = created
            try:
                SqlModelRegistry(pg_url).close()
                for mode in modes:
                    report["backends"].setdefault("postgresql", []).append(
                        _measure(
                            {"kind": "sql", "url": pg_url},
                            f"ranker-{mode}",
                            args.n,
                            mode,
                            root / f"pg-{mode}",
                        )
                    )
            finally:
                with psycopg.connect(args.postgres_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with LocalHub(token="hf_test") as hub:
            for mode in modes:
                repo = f"org/ranker-{mode}"
                hub.add(repo, files={".gitattributes": b""})
                spec = {"kind": "hub", "endpoint": hub.url, "cache_dir": str(root / f"hf-{mode}")}
                row = _measure(spec, repo, args.n, mode, root / f"hub-{mode}")
                report["backends"].setdefault("huggingface_hub", []).append(row)
            report["hub_server"] = {
                "commits_accepted": hub.commits_accepted,
                "commits_refused_412": hub.commits_refused,
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
