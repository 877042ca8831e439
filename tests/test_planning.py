"""``noisegrid plan``: cells, groups, tokens, memory and projected time before a run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisegrid.cli import app
from noisegrid.config import ExperimentSpec
from noisegrid.errors import ConfigError
from noisegrid.planning import plan_experiment

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tiny_hf import synthetic_texts  # noqa: E402


@pytest.fixture
def finetune_spec(tiny_model: Path, tmp_path: Path) -> Callable[..., ExperimentSpec]:
    texts, labels = synthetic_texts(120, seed=4)
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"text": texts[:80], "label": labels[:80]}).to_parquet(folder / "train.parquet")
    pd.DataFrame({"text": texts[80:], "label": labels[80:]}).to_parquet(folder / "test.parquet")

    def make(**run: object) -> ExperimentSpec:
        return ExperimentSpec.from_dict(
            {
                "name": "tiny",
                "dataset": {"source": str(folder)},
                "grid": {"sizes": [24, 40], "noise_rates": [0.0, 0.1, 0.2]},
                "backend": {"name": "finetune", "model": str(tiny_model)},
                "train": {"epochs": 2, "learning_rate": 1e-3, "batch_size": 8},
                "eval": {"test_size": 40},
                "run": {
                    "store": str(tmp_path / "runs.sqlite"),
                    "cache_dir": str(tmp_path / "cache"),
                    **run,
                },
            }
        )

    return make


def test_plan_counts_the_batches_the_run_will_train(finetune_spec, tmp_path: Path) -> None:
    from noisegrid.worker import Worker

    spec = finetune_spec()
    plan = plan_experiment(spec, probe_seconds=10, gpu_hour_cost=3.0)
    assert plan.n_cells == 6
    assert [(g.train_size, g.n_cells) for g in plan.groups] == [(24, 3), (40, 3)]
    assert any(note.startswith("probe: K=1") for note in plan.notes)
    costs = [g.cost for g in plan.groups]
    assert all(
        c is not None and c.seconds > 0 and c.chunks == (1, 1, 1) for c in costs
    )  # a CPU: one at a time
    assert costs[0].steps == 2 * 3 and costs[1].steps == 2 * 5  # type: ignore[union-attr]
    # The projection's tokens are the run's: the same batches, drawn from the same seed.
    worker = Worker(spec)
    group = next(g for g in _groups(spec) if g.train_size == 40)
    results = worker.run_group(group)
    assert all(r.ok for r in results)
    info = results[0].info
    assert costs[1].train_tokens == info["train_tokens"]  # type: ignore[union-attr]
    assert costs[1].padded_tokens == info["padded_tokens"]  # type: ignore[union-attr]
    text = plan.describe()
    assert "6 cells in 2 sibling groups (3 cells each)" in text
    assert "projected wall time on this machine" in text
    assert plan.cost == pytest.approx(3.0 * plan.seconds / 3600)  # type: ignore[operator]
    assert "cost at $3 per " in text  # per GPU-hour on a GPU, per hour of this machine else
    assert not Path(spec.run.store).exists()  # planning never touches the store


def _groups(spec: ExperimentSpec):  # type: ignore[no-untyped-def]
    from noisegrid.grid import expand_grid
    from noisegrid.worker import plan_groups

    return plan_groups(spec, expand_grid(spec))


def test_plan_without_probe_projects_from_flops(finetune_spec) -> None:
    plan = plan_experiment(finetune_spec(stack=1), probe=False)
    assert any(note.startswith("no probe: FLOPs at an assumed") for note in plan.notes)
    assert [g.cost.chunks for g in plan.groups if g.cost] == [(1,)] * 6
    assert plan.seconds is not None and plan.seconds > 0


def test_plan_of_a_backend_without_a_cost_model_lists_the_groups(
    make_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    spec = ExperimentSpec.from_dict(
        {
            "dataset": {"source": str(make_dataset())},
            "grid": {"sizes": [20, 40], "noise_rates": [0.0, 0.1]},
            "backend": {"name": "sleep"},
            "eval": {"test_size": 20},
            "run": {"store": str(tmp_path / "r.sqlite")},
        }
    )
    plan = plan_experiment(spec)
    assert plan.seconds is None and len(plan.groups) >= 2
    assert "no cost model" in plan.describe()


def test_plan_rejects_a_negative_price(finetune_spec) -> None:
    with pytest.raises(ConfigError, match=r"--gpu-hour-cost must be >= 0, got -1"):
        plan_experiment(finetune_spec(), gpu_hour_cost=-1)


def test_plan_command(tiny_model: Path, finetune_spec, tmp_path: Path) -> None:
    spec = finetune_spec()
    config = tmp_path / "exp.toml"
    config.write_text(
        f"""
[dataset]
source = "{spec.dataset.source}"
[grid]
sizes = [24, 40]
noise_rates = [0.0, 0.1, 0.2]
[backend]
name = "finetune"
model = "{tiny_model}"
[train]
batch_size = 8
[eval]
test_size = 40
[run]
store = "{tmp_path / "cli.sqlite"}"
cache_dir = "{tmp_path / "cache"}"
"""
    )
    runner = CliRunner()
    result = runner.invoke(app, ["plan", str(config), "--no-probe", "--gpu-hour-cost", "2"])
    assert result.exit_code == 0, result.output
    assert "6 cells in 2 sibling groups (3 cells each)" in result.stdout
    assert "cost at $2 per " in result.stdout
    result = runner.invoke(app, ["plan", str(config), "--probe-seconds", "0"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --probe-seconds must be > 0, got 0.0"


def test_the_probe_fits_overhead_and_rate_within_its_budget(tiny_model: Path) -> None:
    from transformers import AutoConfig

    from noisegrid.backends.finetune import cost
    from noisegrid.backends.finetune.stack import arch_of

    arch = arch_of(AutoConfig.from_pretrained(tiny_model, num_labels=2))
    overhead, rate = 0.02, 5e9
    calls: list[tuple[int, int, int]] = []

    def timer(k: int, width: int, n_steps: int) -> float:
        calls.append((k, width, n_steps))
        return overhead + k * cost.train_flops(arch, 16, width) / rate

    points = cost.probe_steps(arch, timer, k_plan=4, rows=16, widths=[64, 128, 64, 32], budget=5)
    assert calls[0] == (1, 32, 1) and calls[1][:2] == (4, 128)  # the gauge, then the widest
    assert sum(n for _, _, n in calls) <= 16
    fitted = cost.fit_step_model(arch, points)
    assert fitted.overhead == pytest.approx(overhead, rel=1e-6)
    assert fitted.rate == pytest.approx(rate, rel=1e-6)
    # A budget the gauge alone uses up still gets a second, cheapest point.
    calls.clear()
    slow = cost.probe_steps(arch, timer, k_plan=4, rows=16, widths=[32, 512], budget=1e-9)
    assert len(slow) == 2 and calls[1] == (4, 32, 1)  # 4 × 32 tokens costs less than 512
