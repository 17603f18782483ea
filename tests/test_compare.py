"""Tests for pgrad compare: final scores from real event files, the table, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import pgrad as pg
from pgrad import stats
from pgrad.compare import compare

from helpers import assert_clean_error, pgrad, pgrad_main


def write_run(run_dir, values, env_id="CartPole-v1", seed=1) -> None:
    """A run with real TensorBoard events: ``values`` of charts/episodic_return, 100 steps apart."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(pg.Config(env_id=env_id, seed=seed).to_json())
    writer = SummaryWriter(str(run_dir))
    for i, value in enumerate(values):
        writer.add_scalar("charts/episodic_return", value, 100 * (i + 1))
        writer.add_scalar("losses/entropy", -value, 100 * (i + 1))
    writer.close()


@pytest.fixture
def two_sets(tmp_path):
    # final scores (mean of the last 3 values): A 10, 20, 30, 100; B 5, 15, 25.
    # the earlier values are far off, so reading more or fewer than 3 shows.
    for seed, final in enumerate([10, 20, 30, 100]):
        write_run(tmp_path / "runs" / f"a{seed}", [-1000, final - 1, final, final + 1], seed=seed)
    for seed, final in enumerate([5, 15, 25]):
        write_run(tmp_path / "runs" / f"b{seed}", [1000, final + 2, final, final - 2], seed=seed)
    return tmp_path


def test_final_scores_and_statistics_by_hand(two_sets):
    result = compare(str(two_sets / "runs/a*"), str(two_sets / "runs/b*"), last=3)
    assert result.scores_a == pytest.approx([10, 20, 30, 100])
    assert result.scores_b == pytest.approx([5, 15, 25])
    assert result.a["mean"].estimate == pytest.approx(40)
    assert result.a["median"].estimate == pytest.approx(25)
    assert result.a["iqm"].estimate == pytest.approx(25)  # the middle two, 20 and 30
    assert result.b["iqm"].estimate == pytest.approx(15)  # 2/3 * 15 + 1/6 * (5 + 25)
    # A wins 1 + 2 + 3 + 3 of the 12 pairs
    assert result.improvement.estimate == pytest.approx(0.75)
    for interval in (*result.a.values(), *result.b.values(), result.improvement):
        assert interval.low <= interval.estimate <= interval.high
    assert result.a["mean"].low >= 10 and result.a["mean"].high <= 100
    # the interval of P(A > B) is the library's, for these scores
    assert result.improvement == stats.probability_of_improvement_interval(
        result.scores_a, result.scores_b, seed=2
    )


def test_another_tag_and_window(two_sets):
    result = compare(
        str(two_sets / "runs/a*"), str(two_sets / "runs/b*"), tag="losses/entropy", last=1
    )
    assert result.scores_a == pytest.approx([-11, -21, -31, -101])
    assert result.improvement.estimate == pytest.approx(
        np.mean([[a < b for b in (3, 13, 23)] for a in (11, 21, 31, 101)])
    )


def test_compare_prints_the_table(two_sets):
    result = pgrad("compare", "runs/a*", "runs/b*", "--last", "3", cwd=two_sets)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    row_a = next(line for line in lines if line.startswith("A  "))
    assert row_a.split()[:3] == ["A", "4", "40.00"] and "25.00 [" in row_a
    assert any(line.startswith("P(A > B) = 0.75 [") for line in lines), result.stdout
    assert "mean of the last 3 values of charts/episodic_return" in lines[0]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["runs/nothing*", "runs/b*"], "A: no run directory matches 'runs/nothing*'"),
        (["runs/a*", "runs/*"], "is in both A and B"),
        (["runs/a*", "runs/b*", "--last", "0"], "--last must be >= 1"),
        (["runs/a*", "runs/b*", "--tag", "charts/nope"], "has no scalar 'charts/nope'"),
        (["runs/a*", "empty"], "holds no TensorBoard event files"),
        (["runs/a*", "runs/b*", "runs/c*"], "unrecognized arguments"),
        (["runs/a*", "mixed/*"], "B mixes environments (Acrobot-v1, CartPole-v1)"),
    ],
)
def test_bad_input_is_one_line(two_sets, capsys, monkeypatch, args, fragment):
    (two_sets / "empty").mkdir()
    write_run(two_sets / "mixed" / "x", [1.0], env_id="Acrobot-v1")
    write_run(two_sets / "mixed" / "y", [1.0])
    monkeypatch.chdir(two_sets)
    assert_clean_error(pgrad_main(capsys, "compare", *args), fragment)
