"""Tests for pgrad plot: runs grouped by config, labels, bands, smoothing and unreadable runs."""

from __future__ import annotations

import numpy as np
import pytest

import pgrad as pg
from pgrad.plot import group_curves, load_curves, plot_runs, plot_title, setting_labels

from helpers import assert_clean_error, pgrad


def write_run(run_dir, steps, values, **config) -> None:
    """A run directory with real TensorBoard events of charts/episodic_return and a config."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(pg.Config(**config).to_json())
    writer = SummaryWriter(str(run_dir))
    for step, value in zip(steps, values):
        writer.add_scalar("charts/episodic_return", value, step)
    writer.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Four real REINFORCE runs on the bandit, two baselines x two seeds, all named alike."""
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for baseline in ("ema", "loo"):
        for seed in (1, 2):
            # the same <env>__<agent>__<seed>__<time> stem for both baselines
            run_dir = root / f"bandit__reinforce__{seed}__{1000 + len(runs)}"
            agent = pg.Reinforce(
                env_id="pgrad/Bandit-v0",
                baseline=baseline,
                seed=seed,
                total_steps=320,
                run_dir=run_dir,
                quiet=True,
            )
            agent.train()
            runs.append(run_dir)
    return runs


def test_runs_named_alike_are_grouped_by_their_config(trained):
    curves, skipped = load_curves(trained, "charts/episodic_return")
    assert not skipped
    groups = group_curves(curves)
    assert [g.label for g in groups] == ["baseline=ema", "baseline=loo"]
    assert [[d.name.split("__")[2] for d in g.run_dirs] for g in groups] == [["1", "2"]] * 2
    for group in groups:
        assert group.settings["baseline"] == group.label.split("=")[1]
        assert len(group.steps) == len(group.centre) == len(group.low) == len(group.high)
        assert (group.low <= group.centre).all() and (group.centre <= group.high).all()
    # a different seed alone never splits a group
    assert len(group_curves([c for c in curves if c.settings["baseline"] == "ema"])) == 1


def test_plot_leaves_out_an_unreadable_run_with_one_warning(trained, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    png = tmp_path / "out.png"
    result = pgrad(
        "plot", *map(str, trained), str(damaged), "-o", str(png), "--ci", "--smooth", "3",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgrad: warning:"), result.stderr
    assert "damaged" in lines[0] and "not valid JSON" in lines[0]
    assert png.stat().st_size > 10_000 and f"wrote {png}" in result.stdout


def test_plot_of_only_unreadable_runs_is_one_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = pgrad("plot", "no/such/run", "empty", "-o", "x.png", cwd=tmp_path)
    assert_clean_error(result, "none of the 2 runs could be read")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(ValueError, match="--smooth must be >= 1"):
        plot_runs([tmp_path / "empty"], tmp_path / "x.png", smooth=0)


def test_mean_with_min_max_band_and_iqm_with_bootstrap_band(tmp_path):
    # five seeds, each a constant curve: 0, 1, 2, 3 and an outlier at 100
    levels = [0.0, 1.0, 2.0, 3.0, 100.0]
    steps = list(range(100, 1100, 100))
    for seed, level in enumerate(levels):
        write_run(tmp_path / f"run{seed}", steps, [level] * len(steps), seed=seed)
    curves, _ = load_curves(sorted(tmp_path.iterdir()), "charts/episodic_return", smooth=1)
    (plain,) = group_curves(curves)
    assert plain.steps == pytest.approx(steps)
    assert plain.centre == pytest.approx([21.2] * 10)
    assert plain.low == pytest.approx([0.0] * 10) and plain.high == pytest.approx([100.0] * 10)
    (robust,) = group_curves(curves, ci=True)
    # IQM of 0 1 2 3 100 (mass 0.2 each): 0.3 * 1 + 0.4 * 2 + 0.3 * 3
    assert robust.centre == pytest.approx([2.0] * 10)
    assert (robust.low <= 2.0).all() and (robust.high >= 2.0).all()
    # a bootstrap sample redraws whole runs, so the band is flat like the curves
    assert np.ptp(robust.low) == 0 and np.ptp(robust.high) == 0
    assert robust.high[0] < 100.0 and robust.high[0] - robust.low[0] > 0.5


def test_smoothing_window_and_title(tmp_path):
    write_run(tmp_path / "run", [10, 20, 30, 40, 50, 60], [0, 0, 0, 3, 3, 3])
    curves, _ = load_curves([tmp_path / "run"], "charts/episodic_return", smooth=3)
    (group,) = group_curves(curves)
    assert group.centre == pytest.approx([0, 0, 0, 1, 2, 3])
    assert "moving average over 3 points" in plot_title("charts/episodic_return", 3, False)
    assert "not smoothed" in plot_title("charts/episodic_return", 1, True)


def test_runs_logged_at_different_steps_share_an_interpolated_grid(tmp_path):
    write_run(tmp_path / "a", [0, 10, 20], [0.0, 10.0, 20.0], seed=1)
    write_run(tmp_path / "b", [0, 5, 15, 30], [0.0, 0.0, 0.0, 0.0], seed=2)
    curves, _ = load_curves([tmp_path / "a", tmp_path / "b"], "charts/episodic_return", 1)
    (group,) = group_curves(curves)
    assert group.steps[0] == 0 and group.steps[-1] == 20  # the range both runs cover
    assert group.centre == pytest.approx(group.steps / 2)  # mean of the line y = x and zero


def test_labels_name_only_the_keys_that_differ():
    a = {
        "env_id": "CartPole-v1",
        "gamma": 0.99,
        "learning_rate": 0.001,
        "hidden": (64, 64),
        "agent": "m:A2C",
    }
    b = {**a, "learning_rate": 0.003, "hidden": (32,)}
    c = {**a, "agent": "pgrad.agent:Reinforce"}
    assert setting_labels([a, b, c]) == [
        "agent=A2C, hidden=64,64, learning_rate=0.001",
        "agent=A2C, hidden=32, learning_rate=0.003",
        "agent=Reinforce, hidden=64,64, learning_rate=0.001",
    ]
    assert setting_labels([a]) == ["CartPole-v1"]
