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
"""benchmarks/rerank_probe.py: the teacher's reorder of the policy's own candidates."""

import json
import subprocess
import sys

import numpy as np
import pytest

from .benchmark_scripts import load_benchmark


probe = load_benchmark("rerank_probe")

COLUMNS = {"a": 0, "b": 1, "c": 2, "d": 3}


def test_rerank_sorts_by_the_teacher_ties_keep_the_policy_order_and_non_items_go_last():
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [1.0, 1.0, 1.0, -5.0]])
    ranked = probe.rerank([["a", "c", "b", "d"], ["d", None, "b", "a"]], scores, COLUMNS)
    assert ranked == [["b", "c", "d", "a"], ["b", "a", "d", None]]


def test_a_teacher_that_puts_the_truth_first_reaches_the_ceiling():
    from adagrpo_trl.evaluation import hits_at_k

    rng = np.random.default_rng(0)
    items = [f"i{j}" for j in range(40)]
    column_of = {item: j for j, item in enumerate(items)}
    candidates = [list(rng.choice(items, size=20, replace=False)) for _ in range(200)]
    targets = [str(rng.choice(items)) for _ in range(200)]
    scores = rng.normal(size=(200, 40))
    for row, target in enumerate(targets):
        scores[row, column_of[target]] = 100.0
    reordered = probe.rerank(candidates, scores, column_of)
    ceiling = (probe.truth_positions(candidates, targets) >= 0).mean()
    assert 0 < hits_at_k(candidates, targets, 10).mean() < ceiling
    assert hits_at_k(reordered, targets, 10).mean() == ceiling
    # and the same candidates in every row, only reordered
    assert all(sorted(a) == sorted(b) for a, b in zip(candidates, reordered, strict=True))


def test_compare_orders_counts_only_users_whose_truth_is_a_candidate():
    policy_order, teacher_order = np.array([3, -1, 0, 5, 2]), np.array([0, -1, 1, 5, 1])
    result = probe.compare_orders(policy_order, teacher_order)
    assert result["num_users_truth_present"] == 4
    assert (result["teacher_higher"], result["teacher_lower"], result["same"]) == (0.5, 0.25, 0.25)
    assert result["mean_position_policy"] == pytest.approx(np.mean([3, 0, 5, 2]) + 1)
    assert result["mean_position_teacher"] == pytest.approx(np.mean([0, 1, 5, 1]) + 1)
    with pytest.raises(ValueError, match="same candidates"):
        probe.compare_orders(np.array([0, -1]), np.array([0, 3]))
    assert probe.compare_orders(np.array([-1]), np.array([-1])) == {"num_users_truth_present": 0}


def test_catalog_percentiles_match_a_direct_count():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(30, 50))
    columns = np.stack([rng.choice(50, size=10, replace=False) for _ in range(30)])
    got = probe.catalog_percentiles(scores, columns)
    for row in range(30):
        for j, column in enumerate(columns[row]):
            assert got[row, j] == pytest.approx(np.sum(scores[row] < scores[row, column]) / 49)
    best = np.argmax(scores, axis=1)[:, None]
    assert np.all(probe.catalog_percentiles(scores, best) == 1.0)
    with pytest.raises(ValueError, match="two items"):
        probe.catalog_percentiles(np.zeros((2, 1)), np.zeros((2, 1), dtype=int))


def test_policies_are_named_pairs():
    assert probe.parse_policies(["sft=a/b", "grpo=c=d"]) == {"sft": "a/b", "grpo": "c=d"}
    for bad in (["sft"], ["=a"], ["sft="]):
        with pytest.raises(ValueError, match="NAME=PATH"):
            probe.parse_policies(bad)
    with pytest.raises(ValueError, match="twice"):
        probe.parse_policies(["sft=a", "sft=b"])
    with pytest.raises(SystemExit):
        probe.parse_args(
            ["--data_dir", "d", "--ranker_dir", "r", "--policy", "s=p", "--output", "o", "--num_candidates", "5"]
        )


@pytest.mark.slow
def test_probe_on_the_tiny_pipeline_agrees_with_the_evaluation_and_the_teacher_report(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from adagrpo_trl.data import PreparedData
    from adagrpo_trl.evaluation import evaluate_recommendations
    from adagrpo_trl.rankers import SASRecRanker, prepared_teacher_report
    from adagrpo_trl.tokenization import load_tokenizer

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "adagrpo_trl.cli", "pipeline", "--config", "synthetic/pipeline_tiny", "--output_dir",
         str(run)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    output = tmp_path / "probe" / "tiny.json"
    report = probe.main(
        ["--data_dir", str(run / "data"), "--ranker_dir", str(run / "ranker"), "--policy", f"sft={run / 'sft'}",
         "--policy", f"adagrpo={run / 'methods' / 'adagrpo'}", "--bias_levels", "0", "1", "--num_resamples", "200",
         "--output", str(output)]
    )  # fmt: skip
    assert json.loads(output.read_text())["policies"].keys() == {"sft", "adagrpo"}
    assert "| sft | 1 |" in output.with_suffix(".md").read_text()
    prepared = PreparedData.load(run / "data")
    assert report["num_users"] == len(prepared.datasets["validation"])
    # The policy's HR@10 is the evaluation's (constrained beams, validation split)...
    tokenizer = load_tokenizer(run / "sft")
    metrics = evaluate_recommendations(
        AutoModelForCausalLM.from_pretrained(run / "sft"), tokenizer, prepared.datasets["validation"],
        prepared.catalog, ks=(10,), num_beams=20, constrained=True, show_progress=False,
    )  # fmt: skip
    sft = report["policies"]["sft"]
    assert sft["policy_hr@10"] == pytest.approx(metrics["constrained/hr@10"])
    # ... the teacher's own HR@10 is the teacher report's (full histories, history items not masked).
    teacher = prepared_teacher_report(SASRecRanker.load(run / "ranker"), prepared, split="validation")
    assert report["teacher_hr@10"]["0"] == pytest.approx(teacher["unmasked"]["overall"]["hr@10"])
    for policy in report["policies"].values():
        for entry in policy["by_lambda"].values():
            assert entry["reordered_hr@10"] <= policy["ceiling_hr@10"]
            assert entry["reordered_hr@10"] - policy["policy_hr@10"] == pytest.approx(
                entry["reordered_minus_policy"]["diff"]
            )
            assert 0 <= entry["teacher_percentile@10"] <= 1
