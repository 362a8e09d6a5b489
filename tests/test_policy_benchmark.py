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
"""The policy benchmark (SFT policy vs a SASRec with the same history): its stage recipes, rankings, comparison."""

import json

import numpy as np
import pytest

from .benchmark_scripts import load_benchmark


policy = load_benchmark("policy")


def test_overrides_are_read_as_yaml_and_a_pair_without_equals_is_named():
    assert policy.parse_overrides(["sid_unlikelihood_coef=1.0", "bf16=false", "x=[a, b]"], "--sft_override") == {
        "sid_unlikelihood_coef": 1.0,
        "bf16": False,
        "x": ["a", "b"],
    }
    with pytest.raises(ValueError, match="--sft_override expects KEY=VALUE, got 'num_train_epochs'"):
        policy.parse_overrides(["num_train_epochs"], "--sft_override")
    with pytest.raises(ValueError, match="'=1'"):
        policy.parse_overrides(["=1"], "--sft_override")


@pytest.mark.parametrize("dataset", sorted(policy.RECIPES))
def test_the_peer_reads_exactly_the_policys_history_and_the_recipe_stages_are_unchanged(dataset, tmp_path):
    from adagrpo_trl.scripts.recipe import load_recipe, resolve_recipe

    args = policy.parse_args(["--datasets", dataset])
    configs = policy.stage_configs(dataset, tmp_path / "run", args)
    recipe = load_recipe(resolve_recipe(policy.RECIPES[dataset], "pipeline"), "pipeline")
    assert configs["train-ranker"]["max_len"] == recipe["prepare"]["max_history"]
    assert configs["train-ranker"]["data_dir"] == configs["sft"]["data_dir"] == configs["prepare"]["output_dir"]
    assert {k: v for k, v in configs["sft"].items() if k not in ("data_dir", "output_dir", "seed")} == recipe["sft"]
    assert {k: v for k, v in configs["prepare"].items() if k not in ("output_dir", "seed")} == recipe["prepare"]


def test_an_sft_override_changes_one_key_and_an_unknown_key_fails_naming_it(tmp_path):
    args = policy.parse_args(["--sft_override", "sid_unlikelihood_coef=1.0"])
    assert policy.stage_configs("ml-100k", tmp_path, args)["sft"]["sid_unlikelihood_coef"] == 1.0
    args = policy.parse_args(["--sft_override", "num_train_epoch=3"])
    with pytest.raises(ValueError, match="num_train_epoch"):
        policy.stage_configs("ml-100k", tmp_path, args)


def test_ranked_lists_follow_the_scores_with_ties_to_the_lower_column():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, -1.0, 2.0, 0.0]])
    assert policy.ranked_from_scores(scores, ["a", "b", "c", "d"], 3) == [["b", "d", "c"], ["a", "c", "d"]]
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30))
    items = [f"i{j}" for j in range(30)]
    ranked = policy.ranked_from_scores(scores, items, 10)
    for row, top in zip(scores, ranked, strict=True):
        threshold = np.sort(row)[-10]
        assert {items[j] for j in np.flatnonzero(row >= threshold)} == set(top)


def test_the_comparison_is_policy_minus_peer_and_paired():
    peer = {"hr@10": 0.25, "per_sample": {"hr@10": [1, 0, 0, 0] * 25, "ndcg@10": [0.5, 0, 0, 0] * 25}}
    better = {"hr@10": 0.5, "per_sample": {"hr@10": [1, 1, 0, 0] * 25, "ndcg@10": [0.5, 0.5, 0, 0] * 25}}
    result = policy.compare(better, peer, num_resamples=500)
    assert result["hr@10"]["diff"] == pytest.approx(0.25)
    assert result["hr@10"]["low"] > 0
    assert result["ndcg@10"]["diff"] == pytest.approx(0.125)
    assert result["hr@10_ratio"] == pytest.approx(2.0)
    assert policy.compare(peer, peer, num_resamples=100)["hr@10"] == {
        "diff": 0.0,
        "low": 0.0,
        "high": 0.0,
        "p_value": 1.0,
    }


@pytest.mark.slow
def test_quick_run_on_the_simulator_matches_the_teacher_report_and_resumes(tmp_path, monkeypatch):
    from adagrpo_trl.data import PreparedData
    from adagrpo_trl.rankers import SASRecRanker, prepared_teacher_report

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = ["--datasets", "synthetic", "--quick", "--runs_dir", str(tmp_path / "runs"), "--results_dir",
            str(tmp_path / "results"), "--num_resamples", "200"]  # fmt: skip
    report = policy.main(argv)
    (row,) = report["datasets"]
    run = tmp_path / "runs" / "recipes" / "synthetic_quick"
    assert set(row["stage_seconds"]) == {"prepare", "sft", "train-ranker", "evaluate policy", "evaluate peer"}
    assert row["data"]["users"] == row["policy"]["num_samples"] == row["peer"]["num_samples"]
    assert 0 <= row["policy"]["hallucination"] <= 1
    # The peer's HR@10 is the teacher report's (another ranking code: pessimistic ties, the rows' own histories).
    prepared = PreparedData.load(run / "data")
    teacher = prepared_teacher_report(SASRecRanker.load(run / "peer"), prepared, full_history=False)
    assert row["peer"]["hr@10"] == pytest.approx(teacher["unmasked"]["overall"]["hr@10"])
    assert row["peer"]["masked/hr@10"] == pytest.approx(teacher["masked"]["overall"]["hr@10"])
    diff = row["policy_minus_peer"]["hr@10"]["diff"]
    assert diff == pytest.approx(row["policy"]["hr@10"] - row["peer"]["hr@10"])
    written = json.loads((tmp_path / "results" / "recipes_quick" / "report.json").read_text())
    assert written["datasets"][0]["policy_minus_peer"] == row["policy_minus_peer"]
    assert "| synthetic | 200 | 5 |" in (tmp_path / "results" / "recipes_quick" / "report.md").read_text()
    # A second invocation trains and evaluates nothing again: the same figures, no new stage timings.
    again = policy.main(argv)["datasets"][0]
    assert again["stage_seconds"] == row["stage_seconds"]
    assert again["policy"] == row["policy"] and again["peer"] == row["peer"]


def test_targets_read_the_point_estimate_the_interval_and_the_hallucination_rate():
    def row(name, diff, high, hallucination):
        return {
            "dataset": name,
            "policy_minus_peer": {"hr@10": {"diff": diff, "low": diff - 0.01, "high": high}},
            "policy": {"hallucination": hallucination},
        }

    met = policy.targets([row("a", 0.004, 0.01, 0.019), row("b", -0.01, 0.007, 0.0), row("c", -0.11, -0.1, 0.01)])
    assert met["a"] == {
        "sft_at_least_peer": True,
        "significantly_below_peer": False,
        "hallucination_at_most_1pct": False,
    }
    assert met["b"] == {
        "sft_at_least_peer": False,
        "significantly_below_peer": False,
        "hallucination_at_most_1pct": True,
    }
    assert met["c"]["significantly_below_peer"] and met["c"]["hallucination_at_most_1pct"]
