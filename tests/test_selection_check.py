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
"""benchmarks/selection_check.py: the selection's candidates on every validation user, compared group against group."""

import json

import numpy as np
import pytest

from .benchmark_scripts import load_benchmark


check = load_benchmark("selection_check")


def test_comparison_syntax_and_its_errors():
    assert check.parse_comparison("lr=a1,a2:b1") == ("lr", ["a1", "a2"], ["b1"])
    for bad in ("a1:b1", "lr=a1,b1", "lr=:b1", "lr=a1:", "=a:b"):
        with pytest.raises(ValueError, match="NAME=A1,A2"):
            check.parse_comparison(bad)


def test_group_comparison_is_the_paired_difference_of_panel_means():
    rng = np.random.default_rng(0)
    hits = {name: rng.integers(0, 2, 500).astype(float) for name in ("a1", "a2", "b1", "b2")}
    result = check.group_comparison(hits, ["a1", "a2"], ["b1", "b2"])
    expected = 100 * (np.mean([hits["b1"], hits["b2"]]) - np.mean([hits["a1"], hits["a2"]]))
    assert result["diff"] == pytest.approx(expected)
    assert result["low"] <= result["diff"] <= result["high"]
    assert result["b_hr@10"] - result["a_hr@10"] == pytest.approx(expected)
    # a group against itself in another order: no difference, no spread
    same = check.group_comparison(hits, ["a1", "a2"], ["a2", "a1"])
    assert (same["diff"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="different numbers of users"):
        check.group_comparison({**hits, "b2": hits["b2"][:-1]}, ["a1"], ["b2"])


def finished_candidate(folder, best_step=None):
    folder.mkdir(parents=True)
    (folder / "log_history.json").write_text("[]")
    if best_step is not None:
        (folder / f"checkpoint-{best_step}").mkdir()
        summary = {"best_checkpoint": f"elsewhere/checkpoint-{best_step}", "history": [{"eval_hr@10": 0.12}]}
        (folder / "best_checkpoint.json").write_text(json.dumps(summary))


def test_candidates_resolve_links_and_best_checkpoints(tmp_path):
    selection = tmp_path / "selection"
    finished_candidate(tmp_path / "runs" / "adagrpo", best_step=80)
    selection.mkdir()
    (selection / "linked").symlink_to(tmp_path / "runs" / "adagrpo", target_is_directory=True)
    finished_candidate(selection / "plain")
    linked = check.candidate_models(selection, "linked")
    assert linked == {"final": tmp_path / "runs" / "adagrpo", "best": tmp_path / "runs" / "adagrpo" / "checkpoint-80"}
    assert check.candidate_models(selection, "plain") == {"final": selection / "plain", "best": selection / "plain"}
    assert check.best_during_training(tmp_path / "runs" / "adagrpo") == pytest.approx(12.0)
    (selection / "unfinished").mkdir()
    with pytest.raises(FileNotFoundError, match=r"unfinished: no finished candidate.*'linked', 'plain'"):
        check.candidate_models(selection, "unfinished")
    (tmp_path / "runs" / "adagrpo" / "checkpoint-80").rmdir()
    with pytest.raises(FileNotFoundError, match="checkpoint-80 does not exist"):
        check.candidate_models(selection, "linked")


def test_report_from_cached_evaluations(tmp_path, monkeypatch):
    from adagrpo_trl.scripts import evaluate

    selection = tmp_path / "selection"
    for name in ("a", "b"):
        finished_candidate(selection / name, best_step=4)
    hits = {"a": [1.0, 0.0, 0.0, 0.0], "b": [1.0, 1.0, 0.0, 0.0]}
    evaluated = []

    def fake_evaluate(args):
        evaluated.append(args.model_path)
        assert args.split == "validation" and args.num_beams == 20
        user_hits = hits[args.model_path.split("/selection/")[1].split("/")[0]]
        metrics = {"hr@10": float(np.mean(user_hits)), "per_sample": {"hr@10": user_hits}}
        (tmp_path / "out").mkdir(exist_ok=True)
        with open(args.output_file, "w") as file:
            json.dump(metrics, file)

    monkeypatch.setattr(evaluate, "run_evaluate", fake_evaluate)
    argv = ["--selection_dir", str(selection), "--data_dir", "d", "--compare", "b vs a=a:b"]
    report = check.main([*argv, "--results_dir", str(tmp_path / "results")])
    assert len(evaluated) == 4  # final and best checkpoint of each
    row = report["comparisons"]["final"]["b vs a"]
    assert (row["a_hr@10"], row["b_hr@10"], row["diff"]) == (25.0, 50.0, 25.0)
    assert report["num_users"] == 4 and report["candidates"]["a"]["best_during_training"] == pytest.approx(12.0)
    table = (tmp_path / "results" / "report.md").read_text()
    assert "| b vs a | final | 25.00 | 50.00 | +25.00" in table and "selection_check.py --selection_dir" in table
    check.main([*argv, "--results_dir", str(tmp_path / "again")])
    assert len(evaluated) == 4  # the evaluations were cached
