# Copyright 2026 The adagrpo-trl Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The quality benchmark's grid, aggregation (selection on validation, means over seeds) and report shape."""

import json
from pathlib import Path

import numpy as np
import pytest

from .benchmark_scripts import load_benchmark


REPO = Path(__file__).resolve().parent.parent


quality = load_benchmark("quality")


def _metrics(hits: list[int], hallucination: float) -> dict:
    hits_array = np.asarray(hits, dtype=float)
    return {
        "hr@10": float(hits_array.mean()),
        "ndcg@10": float(hits_array.mean() / 2),
        "hallucination": hallucination,
        "per_sample": {"hr@10": hits_array.tolist()},
    }


def _seed(sft, weak, strong, ada, validation_weak, validation_strong):
    return {
        "sft": {"final": _metrics(sft, 0.0), "best": _metrics(sft, 0.0)},
        "mixture_0.1": {
            "final": _metrics(weak, 0.001),
            "best": _metrics(weak, 0.001),
            "validation_hr@10": validation_weak,
            "gate_rate": 1.0,
        },
        "mixture_1": {
            "final": _metrics(strong, 0.004),
            "best": _metrics(strong, 0.002),
            "validation_hr@10": validation_strong,
            "gate_rate": 1.0,
        },
        "adagrpo": {
            "final": _metrics(ada, 0.0),
            "best": _metrics(ada, 0.0),
            "validation_hr@10": 0.1,
            "gate_rate": 0.1,
        },
    }


def test_method_grid_spans_pure_grpo_mixtures_and_the_adagrpo_ablations():
    args = quality.parse_args(["--mixture_coefs", "0.1", "1", "3"])
    grid = quality.method_grid(args, tau=0.125, rho=0.25)
    assert grid["grpo"] == {"gate_mode": "always", "nll_coef": 0.0}
    assert [grid[f"mixture_{c}"]["grpo_coef"] for c in ("0.1", "1", "3")] == [0.1, 1.0, 3.0]
    assert all(grid[f"mixture_{c}"]["nll_coef"] == 1.0 for c in ("0.1", "1", "3"))
    for name, mode in (
        ("adagrpo", "adaptive"),
        ("adagrpo_difficulty", "difficulty"),
        ("adagrpo_discriminability", "discriminability"),
    ):
        assert grid[name] == {"gate_mode": mode, "gate_tau": 0.125, "gate_rho": 0.25}


def test_learning_rate_overrides_the_recipe_for_every_method():
    recipe_lr = quality.base_recipe(quality.parse_args([]))["train"]["learning_rate"]
    assert recipe_lr == 1e-4  # adagrpo_trl/recipes/ml-100k/train/*.yaml
    train = quality.base_recipe(quality.parse_args(["--learning_rate", "1e-5", "--max_steps", "7"]))["train"]
    assert train["learning_rate"] == 1e-5 and train["max_steps"] == 7
    with pytest.raises(ValueError, match="--learning_rate must be > 0, got 0.0"):
        quality.base_recipe(quality.parse_args(["--learning_rate", "0"]))


def test_gate_normalization_overrides_the_recipe_only_when_given(capsys):
    assert "gate_normalization" not in quality.base_recipe(quality.parse_args([]))["train"]
    train = quality.base_recipe(quality.parse_args(["--gate_normalization", "admitted"]))["train"]
    assert train["gate_normalization"] == "admitted"
    with pytest.raises(SystemExit):
        quality.parse_args(["--gate_normalization", "per_token"])
    assert "invalid choice: 'per_token'" in capsys.readouterr().err


def test_method_subset_must_exist_and_keep_a_mixture():
    args = quality.parse_args(["--methods", "adagrpo", "mixture_1"])
    assert set(quality.method_grid(args, 0.25, 0.5)) == {"adagrpo", "mixture_1"}
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['mixture_7'\]"):
        quality.method_grid(quality.parse_args(["--methods", "mixture_7"]), 0.25, 0.5)
    with pytest.raises(ValueError, match="at least one fixed mixture"):
        quality.method_grid(quality.parse_args(["--methods", "adagrpo", "grpo"]), 0.25, 0.5)


def test_aggregate_picks_the_best_mixture_on_validation_not_on_test():
    # mixture_1 is better on test, mixture_0.1 on validation: the report must follow validation.
    per_seed = [
        _seed([1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], validation_weak=0.3, validation_strong=0.2),
        _seed([0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0], validation_weak=0.3, validation_strong=0.2),
    ]
    report = quality.aggregate(per_seed, ["mixture_0.1", "mixture_1", "adagrpo"])
    assert report["best_mixture"] == "mixture_0.1"
    ada = report["methods"]["adagrpo"]
    assert ada["seeds"] == 2
    assert ada["final"]["hr@10"] == pytest.approx(np.mean([0.75, 0.5]))
    assert ada["final_std"]["hr@10"] == pytest.approx(np.std([0.75, 0.5], ddof=1))
    assert report["methods"]["mixture_1"]["best"]["hallucination"] == pytest.approx(0.002)
    assert report["methods"]["mixture_1"]["final"]["hallucination"] == pytest.approx(0.004)
    # The paired difference is over users, each user's hits averaged over the seeds.
    versus_sft = ada["final_comparisons"]["hr@10_vs_sft"]
    assert versus_sft["diff"] == pytest.approx(np.mean([1, 1, 0.5, 0]) - np.mean([0.5, 0.5, 0, 0]))
    assert versus_sft["low"] <= versus_sft["diff"] <= versus_sft["high"]
    versus_mixture = ada["final_comparisons"]["hr@10_vs_best_mixture"]
    assert versus_mixture["diff"] == pytest.approx(0.625 - 0.125)
    # A method is not compared with itself.
    assert "hr@10_vs_best_mixture" not in report["methods"]["mixture_0.1"]["final_comparisons"]
    assert ada["gate_rate"] == pytest.approx(0.1)


def test_format_table_has_one_row_per_method_and_checkpoint():
    per_seed = [_seed([1, 0], [0, 1], [1, 1], [1, 0], 0.2, 0.3)] * 2
    report = quality.aggregate(per_seed, ["mixture_0.1", "mixture_1", "adagrpo"])
    table = quality.format_table(report)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 1 + 2 * 3  # SFT once, every other method at its final and best checkpoints
    assert rows[0].startswith("| SFT | – | 50.00 ± 0.00")


def test_tag_names_the_report_and_the_run_folder(capsys):
    recipe = {"train": {"learning_rate": 1e-4}}
    root = Path("benchmarks/results/quality")
    assert quality.report_dir(quality.parse_args([]), recipe) / quality.report_stem(quality.parse_args([])) == (
        root / "ml-100k" / "lr1e-4" / "report"
    )
    assert quality.report_dir(quality.parse_args(["--tag", "1000steps"]), recipe) == root / "ml-100k" / "1000steps"
    assert quality.report_dir(quality.parse_args([]), {"train": {"learning_rate": 1.5e-05}}).name == "lr1.5e-5"
    tagged = quality.parse_args(["--dataset", "synthetic", "--tag", "lr1e-4"])
    assert quality.report_dir(tagged, recipe) == root / "synthetic" / "lr1e-4"
    assert quality.report_stem(tagged, "bias0.2") == "bias0.2"
    assert quality.report_stem(tagged, "sweep") == "sweep"
    with pytest.raises(SystemExit):
        quality.parse_args(["--tag", "../lr"])
    assert "--tag must be letters, digits" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quality.parse_args(["--reuse_methods", "grpo"])
    assert "--reuse_methods needs --reuse_from" in capsys.readouterr().err


def test_reuse_refuses_incomplete_stages_and_gated_methods(tmp_path):
    source, target = tmp_path / "source" / "seed0", tmp_path / "target" / "seed0"
    for stage, marker in quality.SHARED_STAGES.items():
        (source / stage).mkdir(parents=True)
        if stage != "ranker":
            (source / stage / marker).write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"source/seed0/ranker is not a complete 'ranker' stage"):
        quality.link_shared_stages(source, target)
    (source / "ranker" / "quality_report.json").write_text("{}")
    quality.link_shared_stages(source, target)
    for stage in quality.SHARED_STAGES:
        assert (target / stage).is_symlink() and (target / stage).resolve() == (source / stage).resolve()
    quality.link_shared_stages(source, target)  # a resumed run keeps its links
    recipe = {"train": {"learning_rate": 1e-5}}
    with pytest.raises(ValueError, match=r"'adagrpo' is not always-gated"):
        quality.link_reused_method(source, target, "adagrpo", recipe, {"gate_mode": "adaptive"}, seed=0)
    with pytest.raises(FileNotFoundError, match=r"methods/grpo is not a trained method"):
        quality.link_reused_method(source, target, "grpo", recipe, {"gate_mode": "always", "nll_coef": 0.0}, seed=0)


@pytest.mark.slow
def test_quality_benchmark_end_to_end_on_the_tiny_simulator(tmp_path):
    """The whole benchmark on the tiny synthetic recipe, 2 seeds: the committed report's shape, from real runs."""
    results = tmp_path / "results"
    quality.main(
        [
            "--dataset",
            "synthetic",
            "--recipe",
            str(REPO / "adagrpo_trl" / "recipes" / "synthetic" / "pipeline_tiny.yaml"),
            "--exposure_bias",
            "0.8",
            "--seeds",
            "0",
            "1",
            "--max_steps",
            "4",
            "--eval_steps",
            "2",
            "--eval_samples",
            "20",
            "--tau_grid",
            "0.25",
            "0.5",
            "--rho_grid",
            "0.5",
            "--mixture_coefs",
            "0.1",
            "1",
            "3",
            "--output_dir",
            str(tmp_path / "runs"),
            "--results_dir",
            str(results),
        ]
    )
    (level_dir,) = (results / "synthetic").iterdir()  # the untagged variant: lr<the recipe's RL learning rate>
    report = json.loads((level_dir / "bias0.8.json").read_text())
    assert {"dataset", "command", "versions", "methods"} <= set(report)
    assert set(report["methods"]) == {
        "sft",
        "grpo",
        "mixture_0.1",
        "mixture_1",
        "mixture_3",
        "adagrpo",
        "adagrpo_difficulty",
        "adagrpo_discriminability",
    }
    for entry in report["methods"].values():
        assert entry["seeds"] == 2
        for checkpoint in ("best", "final"):
            assert set(entry[checkpoint]) == {"hr@10", "ndcg@10", "hallucination"}
            assert all(0.0 <= value <= 1.0 for value in entry[checkpoint].values())
    # τ and ρ come from the validation sweep, and every AdaGRPO variant uses the chosen pair.
    assert len(report["selection"]["grid"]) == 2 and report["selection"]["split"] == "validation"
    chosen = report["selection"]["chosen"]
    assert chosen == max(report["selection"]["grid"], key=lambda row: row["validation_hr@10"])
    assert report["settings"]["methods"]["adagrpo"]["gate_tau"] == chosen["gate_tau"]
    assert report["methods"]["grpo"]["gate_rate"] == 1.0
    assert 0.0 <= report["methods"]["adagrpo"]["gate_rate"] <= 1.0
    assert (level_dir / "bias0.8.md").read_text().count("\n| ") == 1 + 1 + 2 * 7
    assert (level_dir / "bias0.8.png").stat().st_size > 0
    sweep = json.loads((level_dir / "sweep.json").read_text())
    assert [level["exposure_bias"] for level in sweep["levels"]] == [0.8]

    # A tagged variant (the admitted normaliser) reusing the shared stages and the always-gated methods: its own report
    # files and run folder, the untagged report untouched, the reused methods' test metrics identical.
    untagged = {path: path.read_bytes() for path in results.rglob("*") if path.is_file()}
    common = [
        "--dataset",
        "synthetic",
        "--recipe",
        str(REPO / "adagrpo_trl" / "recipes" / "synthetic" / "pipeline_tiny.yaml"),
    ]
    common += ["--exposure_bias", "0.8", "--seeds", "0", "1", "--max_steps", "4", "--eval_steps", "2"]
    common += ["--eval_samples", "20", "--mixture_coefs", "0.1", "1", "3", "--results_dir", str(results)]
    with pytest.raises(ValueError, match=r"trained with learning_rate=.*this run uses learning_rate=0.5"):
        quality.main(
            [*common, "--tag", "bad", "--learning_rate", "0.5", "--tau_grid", "0.5", "--rho_grid", "0.5"]
            + ["--output_dir", str(tmp_path / "runs-bad"), "--reuse_from", str(tmp_path / "runs")]
            + ["--reuse_methods", "grpo"]
        )
    quality.main(
        [*common, "--tag", "admitted", "--gate_normalization", "admitted", "--tau_grid", "0.5", "--rho_grid", "0.5"]
        + ["--output_dir", str(tmp_path / "runs-admitted"), "--reuse_from", str(tmp_path / "runs")]
        + ["--reuse_methods", "grpo", "mixture_0.1", "mixture_1", "mixture_3"]
    )
    assert {path: path.read_bytes() for path in results.rglob("*") if path in untagged} == untagged
    variant = json.loads((results / "synthetic" / "admitted" / "bias0.8.json").read_text())
    assert variant["tag"] == "admitted" and variant["reused_from"]["methods"][0] == "grpo"
    assert (results / "synthetic" / "admitted" / "sweep.json").exists()
    for seed in ("seed0", "seed1"):
        run_dir = tmp_path / "runs-admitted" / "bias0.8" / seed
        assert (run_dir / "sft").resolve() == (tmp_path / "runs" / "bias0.8" / seed / "sft").resolve()
        assert (run_dir / "methods" / "mixture_1").is_symlink()
        assert not (run_dir / "methods" / "adagrpo").is_symlink()
    for name in ("grpo", "mixture_0.1", "mixture_1", "mixture_3"):
        assert variant["methods"][name]["final"] == report["methods"][name]["final"]
        assert variant["methods"][name]["best"] == report["methods"][name]["best"]
    assert variant["methods"]["sft"]["final"] == report["methods"]["sft"]["final"]


def test_probe_refuses_a_run_dir_without_the_shared_stages(tmp_path):
    probe = load_benchmark("quality_probe")
    runs = probe.probe_runs(tau=0.5, rho=0.25)
    assert runs["nll_only"] == {"gate_mode": "never"}
    assert runs["grpo"] == {"gate_mode": "always", "nll_coef": 0.0}
    assert runs["adagrpo"] == {"gate_mode": "adaptive", "gate_tau": 0.5, "gate_rho": 0.25}
    # each lever run changes only its named setting(s) of its base run
    assert runs["adagrpo_admitted"] == {**runs["adagrpo"], "gate_normalization": "admitted"}
    assert runs["adagrpo_beam"] == {**runs["adagrpo"], "rollout": "beam"}
    assert runs["mixture_1_beam"] == {**runs["mixture_1"], "rollout": "beam"}
    assert runs["mixture_1_unscaled"] == {**runs["mixture_1"], "scale_rewards": "none"}
    assert runs["nll_only_warmup"] == {**runs["nll_only"], "warmup_steps": 0.25}
    assert list(runs)[: len(probe.BASE_RUNS)] == list(probe.BASE_RUNS)
    with pytest.raises(ValueError, match=r"Unknown probe run\(s\) \['adagrpo_typo'\]"):
        probe.main(["--run_dir", str(tmp_path), "--runs", "adagrpo", "adagrpo_typo"])
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match=r"sft is missing: run benchmarks/quality.py"):
        probe.main(["--run_dir", str(tmp_path)])
