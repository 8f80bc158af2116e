"""The straggler rule: a rank below a fraction of the median rate for a whole window is reported once."""

from __future__ import annotations

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.stragglers import StragglerPolicy, StragglerWatch

pytestmark = pytest.mark.unit


def _feed(
    watch: StragglerWatch,
    seconds: int,
    rates: dict[int, float],
    *,
    start: float = 0.0,
    compute: bool = True,
    steps: dict[int, float] | None = None,
    spent: dict[int, float] | None = None,
) -> list:
    """Look once a second for ``seconds``; each rank makes ``rates[rank]`` steps per compute second.

    In lockstep training every rank's step count is the same (the slowest one's), and only the
    compute time differs: that is what ``compute=True`` simulates.
    """
    steps = steps if steps is not None else dict.fromkeys(rates, 0.0)
    spent = spent if spent is not None else dict.fromkeys(rates, 0.0)
    slowest = min(rates.values())
    reports = []
    for second in range(1, seconds + 1):
        now = start + second
        for rank, rate in rates.items():
            if compute:
                steps[rank] += slowest  # lockstep: everyone advances at the slowest rank's pace
                spent[rank] += slowest / rate  # but the fast ones spent less time computing
                watch.observe(rank, int(steps[rank]), now, node=f"node-{rank}", compute_seconds=spent[rank])
            else:
                steps[rank] += rate
                watch.observe(rank, int(steps[rank]), now, node=f"node-{rank}")
        reports.extend(watch.check(now))
    return reports


def test_a_rank_three_times_slower_in_lockstep_is_reported_with_rank_node_and_rates() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=10, rate_window=5))
    reports = _feed(watch, 30, {0: 30.0, 1: 30.0, 2: 10.0, 3: 30.0})
    assert [r.rank for r in reports] == [2]
    report = reports[0]
    assert report.node == "node-2"
    assert report.rate == pytest.approx(10.0, rel=0.15)
    assert report.median_rate == pytest.approx(30.0, rel=0.15)
    assert report.slow_for >= 10
    assert "rank 2 on node-2 is a straggler" in report.describe()
    assert set(report.to_dict()["rates"]) == {"0", "1", "2", "3"}


def test_detection_takes_the_rate_window_plus_the_slow_window_in_looks() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=10, rate_window=5))
    reports = _feed(watch, 30, {0: 30.0, 1: 10.0})
    # Rates exist after ~5 looks (rate window), then it must stay slow for 10 s more.
    assert reports and 14 <= reports[0].observations <= 17


def test_equal_ranks_are_never_reported() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=5, rate_window=3))
    assert _feed(watch, 60, {0: 20.0, 1: 20.0, 2: 20.0}) == []


def test_a_rank_slightly_slower_than_the_fraction_allows_is_not_reported() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=5, rate_window=3))
    assert _feed(watch, 60, {0: 20.0, 1: 20.0, 2: 12.0}) == []


def test_a_short_slowdown_shorter_than_the_window_is_not_reported() -> None:
    """A GC pause or a checkpoint save on one rank must not restart a healthy job."""
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=20, rate_window=2))
    steps: dict[int, float] = {0: 0.0, 1: 0.0}
    spent: dict[int, float] = {0: 0.0, 1: 0.0}
    reports = _feed(watch, 10, {0: 20.0, 1: 20.0}, steps=steps, spent=spent)
    reports += _feed(watch, 8, {0: 20.0, 1: 5.0}, start=10, steps=steps, spent=spent)
    reports += _feed(watch, 30, {0: 20.0, 1: 20.0}, start=18, steps=steps, spent=spent)
    assert reports == []


def test_without_compute_seconds_rates_are_steps_per_observed_second() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=5, rate_window=4))
    reports = _feed(watch, 20, {0: 10.0, 1: 10.0, 2: 2.0}, compute=False)
    assert [r.rank for r in reports] == [2]
    assert reports[0].rate == pytest.approx(2.0, rel=0.2)


def test_a_stopped_rank_has_rate_zero_and_is_reported() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=5, rate_window=3))
    for second in range(1, 20):
        watch.observe(0, second * 10, float(second))
        watch.observe(1, 5, float(second))  # frozen
        reports = watch.check(float(second))
        if reports:
            assert reports[0].rank == 1 and reports[0].rate == 0.0
            return
    pytest.fail("a rank that stopped was never reported")


def test_each_straggler_is_reported_once() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=3, rate_window=2))
    reports = _feed(watch, 60, {0: 30.0, 1: 5.0})
    assert [r.rank for r in reports] == [1]


def test_a_rank_that_went_back_to_a_checkpoint_starts_a_fresh_history() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=3, rate_window=2))
    _feed(watch, 10, {0: 10.0, 1: 10.0})
    watch.observe(1, 0, 11.0)
    assert 1 not in watch.rates(11.0)


def test_all_ranks_stopped_is_a_stall_not_a_straggler() -> None:
    watch = StragglerWatch(StragglerPolicy(fraction=0.5, window=2, rate_window=2))
    for second in range(1, 20):
        for rank in (0, 1):
            watch.observe(rank, 7, float(second))
        assert watch.check(float(second)) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fraction": 1.5}, r"straggler fraction 1\.5 is invalid: use a number between 0 and 1"),
        ({"fraction": 0}, r"straggler fraction 0 is invalid"),
        ({"window": 0}, r"straggler window 0 is invalid: use a number of seconds > 0"),
        ({"rate_window": -1}, r"straggler rate_window -1 is invalid"),
        ({"action": "kill"}, r"straggler action 'kill' is not valid; use 'warn' .* or 'restart'"),
        ({"avoid_node": True}, r"avoid_node=True needs action='restart'"),
    ],
)
def test_bad_policy_settings_are_rejected_with_the_fix(kwargs: dict, match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        StragglerPolicy(**kwargs)


def test_policy_describe_shows_the_effective_rate_window() -> None:
    described = StragglerPolicy(window=60, action="restart", avoid_node=True).describe()
    assert described == {
        "fraction": 0.5,
        "window_seconds": 60,
        "rate_window_seconds": 30.0,
        "action": "restart",
        "avoid_node": True,
    }
