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
"""A teacher worth learning from: the full-softmax SASRec, side features, full histories, the popularity-bias knob,
the hit reward and the teacher report."""

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from adagrpo_trl.catalog import ItemCatalog
from adagrpo_trl.data import UserHistories, prepare_data
from adagrpo_trl.rankers import (
    PopularityBiasedRanker,
    SASRecConfig,
    SASRecRanker,
    format_teacher_report,
    prepared_teacher_report,
    teacher_report,
    train_ranker_from_prepared,
)
from adagrpo_trl.rewards import HitReward, RankerReward

from .test_sasrec import synthetic_sequences


pytestmark = pytest.mark.usefixtures("single_thread")


SMALL = SASRecConfig(max_len=10, hidden_size=32, num_layers=1, num_heads=2, dropout=0.1)


class TableRanker:
    """Scores from a fixed table: score(context, item) = table[context['user_id']][item]; records its contexts."""

    def __init__(self, table):
        self.table, self.contexts = table, []

    def score(self, contexts, candidate_item_ids):
        self.contexts.extend(contexts)
        return [self.table[c["user_id"]].get(item, 0.0) for c, item in zip(contexts, candidate_item_ids, strict=True)]


def test_full_softmax_sasrec_beats_popularity():
    sequences = synthetic_sequences(num_users=200, length=16)
    train = [s[:-2] for s in sequences]
    validation = [{"history": s[:-2], "target_item": s[-2]} for s in sequences]
    test = [{"history": s[:-1], "target_item": s[-1]} for s in sequences]
    ranker = SASRecRanker(SMALL, device="cpu").fit(
        train, epochs=12, batch_size=32, lr=5e-3, seed=0, show_progress=False, eval_examples=validation, patience=3
    )
    assert ranker.training_args["loss"] == "softmax"  # "auto" on a small catalog
    popularity = Counter(item for s in train for item in s)
    top10 = {item for item, _ in popularity.most_common(10)}
    popularity_hr = np.mean([row["target_item"] in top10 for row in test])
    assert ranker.full_ranking_hit_rate(test) > popularity_hr + 0.1  # 0.84 vs 0.64 when written
    # the kept weights are the best validation epoch's
    values = [entry["eval_hr@10"] for entry in ranker.training_log]
    assert ranker.best_epoch == 1 + int(np.argmax(values))
    assert ranker.full_ranking_hit_rate(validation) == pytest.approx(max(values))


def test_sampled_softmax_learns_and_refuses_negatives_with_full_softmax():
    sequences = synthetic_sequences(num_users=120, length=12)
    ranker = SASRecRanker(SMALL, device="cpu").fit(
        [s[:-1] for s in sequences],
        epochs=15,
        batch_size=16,
        lr=5e-3,
        loss="sampled_softmax",
        num_negatives=20,
        show_progress=False,
    )
    test = [{"history": s[:-1], "target_item": s[-1]} for s in sequences]
    assert ranker.full_ranking_hit_rate(test) > 0.4  # chance is 10 / 60
    with pytest.raises(ValueError, match="num_negatives applies to loss='bce' or 'sampled_softmax'"):
        SASRecRanker(SMALL, device="cpu").fit([["a", "b"]], loss="softmax", num_negatives=5)
    with pytest.raises(ValueError, match="loss must be one of"):
        SASRecRanker(SMALL, device="cpu").fit([["a", "b"]], loss="focal")
    with pytest.raises(ValueError, match="patience needs eval_examples"):
        SASRecRanker(SMALL, device="cpu").fit([["a", "b"]], patience=2)


def test_side_features_change_scores_and_survive_save(tmp_path):
    sequences = [["a", "b", "c"], ["b", "c", "d"], ["a", "c", "d"]]
    items = {"a": ["genre=Drama"], "b": ["genre=Comedy", "year=1995"], "c": ["genre=Drama"], "d": []}
    users = {"u0": ["age=25"], "u1": ["age=50", "gender=F"], "u2": []}
    ranker = SASRecRanker(SMALL, device="cpu").fit(
        sequences, epochs=3, user_ids=["u0", "u1", "u2"], item_features=items, user_features=users, show_progress=False
    )
    assert ranker.has_user_features and ranker.feature_vocab[0] == "age=25"
    history = ["a", "b"]
    young = ranker.score([{"history": history, "user_id": "u0"}] * 4, ["a", "b", "c", "d"])
    older = ranker.score([{"history": history, "user_id": "u1"}] * 4, ["a", "b", "c", "d"])
    assert young != older  # the user's attributes move the scores
    plain = SASRecRanker(SMALL, device="cpu").fit(sequences, epochs=3, show_progress=False)
    assert plain.score([{"history": history, "user_id": "u0"}], ["b"]) != young[1:2]
    ranker.save(tmp_path / "r")
    loaded = SASRecRanker.load(tmp_path / "r", device="cpu")
    assert loaded.score([{"history": history, "user_id": "u1"}] * 4, ["a", "b", "c", "d"]) == older
    with pytest.raises(ValueError, match="user_features needs user_ids"):
        SASRecRanker(SMALL, device="cpu").fit(sequences, user_features=users)


def test_histories_longer_than_max_len_keep_the_most_recent_items():
    config = SASRecConfig(max_len=3, hidden_size=8, num_layers=1, num_heads=1)
    ranker = SASRecRanker(config, item_ids=[f"i{j}" for j in range(8)], device="cpu")
    long = [f"i{j}" for j in range(8)]
    assert ranker.score([{"history": long}], ["i1"]) == ranker.score([{"history": long[-3:]}], ["i1"])
    assert ranker.score([{"history": long}], ["i1"]) != ranker.score([{"history": long[:3]}], ["i1"])
    with pytest.raises(ValueError, match="max_len=0"):
        SASRecConfig(max_len=0)


def test_the_full_history_reaches_the_ranker_when_the_prompt_is_truncated():
    catalog = ItemCatalog(["a", "b", "c", "d"], ["<a_0><b_0>", "<a_0><b_1>", "<a_1><b_0>", "<a_1><b_1>"])
    histories = UserHistories({"u": ["a", "b", "c"]})
    ranker = TableRanker({"u": {"d": 1.0}})
    reward = RankerReward(ranker, catalog, user_histories=histories)
    rewards = reward(
        prompts=["p"],
        completions=["<a_1><b_1>"],
        user_id=["u"],
        history=[["c"]],
        target_position=[3],
        target_item=["d"],
    )
    assert rewards == [1.0]
    assert ranker.contexts[0]["history"] == ["a", "b", "c"]  # not the prompt's ["c"]
    with pytest.raises(ValueError, match=r"user_histories needs the dataset columns \['target_position'\]"):
        reward(prompts=["p"], completions=["<a_1><b_1>"], user_id=["u"], history=[["c"]])


def test_popularity_bias_is_monotone_and_zero_is_the_identity():
    ranker = TableRanker({"u": {"head": 0.0, "tail": 1.0}})
    counts = {"head": 1000, "tail": 1}
    contexts = [{"user_id": "u"}] * 2
    assert PopularityBiasedRanker(ranker, counts, 0.0).score(contexts, ["head", "tail"]) == [0.0, 1.0]
    gaps = []
    for bias in (0.0, 0.1, 0.5, 1.0, 2.0):
        head, tail = PopularityBiasedRanker(ranker, counts, bias).score(contexts, ["head", "tail"])
        assert head == pytest.approx(bias * np.log1p(1000)) and tail == pytest.approx(1.0 + bias * np.log1p(1))
        gaps.append(head - tail)
    assert gaps == sorted(gaps)  # the popular item gains monotonically in λ
    with pytest.raises(ValueError, match="popularity_bias must be a finite number >= 0, got popularity_bias=-0.5"):
        PopularityBiasedRanker(ranker, counts, -0.5)
    catalog = ItemCatalog(["head", "tail"], ["<a_0>", "<a_1>"])
    with pytest.raises(ValueError, match="popularity_bias=-1"):
        RankerReward(ranker, catalog, popularity_bias=-1, item_counts=counts)
    with pytest.raises(ValueError, match="needs item_counts"):
        RankerReward(ranker, catalog, popularity_bias=0.5)
    biased = RankerReward(ranker, catalog, popularity_bias=1.0, item_counts=counts)
    assert biased(prompts=["p"] * 2, completions=["<a_0>", "<a_1>"], user_id=["u", "u"]) == pytest.approx(
        [np.log1p(1000), 1.0 + np.log1p(1)]
    )


def test_hit_reward():
    catalog = ItemCatalog(["a", "b"], ["<a_0><b_0>", "<a_0><b_1>"])
    reward = HitReward(catalog)
    out = reward(prompts=["p"] * 3, completions=["<a_0><b_0>", "<a_0><b_1>", "<a_9><b_9>"], target_item=["a"] * 3)
    assert out == [1.0, 0.0, 0.0]  # ground truth, another valid item, an invalid SID
    penalised = HitReward(catalog, invalid_reward=-1.0)
    assert penalised(prompts=["p"], completions=["<a_9><b_9>"], target_item=["a"]) == [-1.0]
    assert HitReward.scores_ground_truth_at_max
    with pytest.raises(ValueError, match="'target_item'"):
        reward(prompts=["p"], completions=["<a_0><b_0>"])
    with pytest.raises(ValueError, match="hit_reward=0.0 must exceed"):
        HitReward(catalog, hit_reward=0.0)


def test_teacher_report_exact_on_a_hand_made_ranker():
    items = ["h1", "h2", "t1", "t2"]
    counts = {"h1": 100, "h2": 50, "t1": 1, "t2": 0}
    # u0: target t1 ranked 2nd behind h1 (a popular distractor); u1: target h2 ranked 1st; u1 has h1 in its history
    table = {"u0": {"h1": 3.0, "t1": 2.0, "h2": 1.0, "t2": 0.0}, "u1": {"h1": 5.0, "h2": 4.0, "t1": 1.0, "t2": 0.0}}
    rows = [
        {"user_id": "u0", "history": ["t2"], "target_item": "t1"},
        {"user_id": "u1", "history": ["h1"], "target_item": "h2"},
    ]
    report = teacher_report(
        TableRanker(table),
        rows,
        items,
        counts,
        ks=(1, 2),
        popularity_biases=[0.0, 1.0, 5.0],
        policy_hits=[False, True],
        policy_rollouts=[["h2", "t2"], ["t1", "t2"]],
        head_fraction=0.5,
        tail_fraction=0.5,
    )
    unmasked, masked = report["unmasked"], report["masked"]
    assert unmasked["overall"]["hr@1"] == 0.0 and unmasked["overall"]["hr@2"] == 1.0  # ranks 2 and 2
    assert masked["overall"]["hr@1"] == 0.5  # u1's history item h1 is masked: h2 ranks 1st
    assert masked["head"]["auc"] == 1.0  # among the 2 unmasked other items (h1 is masked), both below h2
    assert all(0.0 <= row["auc"] <= 1.0 for row in masked.values() if row["examples"])
    assert unmasked["tail"]["examples"] == 1 and unmasked["head"]["examples"] == 1
    assert unmasked["tail"]["auc"] == pytest.approx(2 / 3)  # t1 beats h2 and t2, loses to h1
    assert report["vs_policy"]["both"] == 0.5 and report["vs_policy"]["ranker_only"] == 0.5
    rates = [entry["popular_distractor_rate"] for entry in report["popularity_bias"]]
    # u0's more popular rollout h2 scores below t1 until λ·(log 51 - log 2) > 1; u1's rollouts are less popular
    assert rates == [0.0, 0.5, 0.5]
    tail_auc = [entry["tail"]["auc"] for entry in report["popularity_bias"]]
    assert tail_auc[-1] < tail_auc[0]
    assert "popular-distractor rate" in format_teacher_report(report)
    with pytest.raises(ValueError, match="popularity_bias=-1"):
        teacher_report(TableRanker(table), rows, items, counts, popularity_biases=[-1])


def synthetic_log(num_users=80, length=12):
    sequences = synthetic_sequences(num_users=num_users, length=length, seed=1)
    rows = [(f"u{u}", item, t) for u, seq in enumerate(sequences) for t, item in enumerate(seq)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_the_ranker_trains_on_the_training_part_only(monkeypatch):
    log = synthetic_log()
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(80)], "age": ["25", "50"] * 40})
    prepared = prepare_data(log, users=users, max_history=3, num_levels=2, codebook_size=4)
    seen = {}
    original = SASRecRanker.fit

    def spy(self, sequences, **kwargs):
        seen["sequences"], seen["users"] = [list(s) for s in sequences], kwargs["user_ids"]
        seen["eval"] = kwargs["eval_examples"]
        return original(self, sequences, **kwargs)

    monkeypatch.setattr(SASRecRanker, "fit", spy)
    ranker = train_ranker_from_prepared(
        prepared, SMALL, user_feature_fields=["age"], epochs=2, show_progress=False, device="cpu"
    )
    by_user = {u: list(map(str, group)) for u, group in log.groupby("user_id", sort=False)["item_id"]}
    assert sorted(seen["users"]) == sorted(by_user)
    for user, trained in zip(seen["users"], seen["sequences"], strict=True):
        assert trained == by_user[user][:-2]  # neither the validation nor the test target
    for row in seen["eval"]:
        assert row["history"] == by_user[row["user_id"]][: len(by_user[row["user_id"]]) - 2]  # full past, not 3 items
    assert ranker.has_user_features
    with pytest.raises(ValueError, match=r"Unknown side-feature field\(s\) \['occupation'\]"):
        train_ranker_from_prepared(prepared, SMALL, user_feature_fields=["occupation"], epochs=1, show_progress=False)
    report = prepared_teacher_report(ranker, prepared, popularity_biases=[0.0, 2.0])
    assert report["num_examples"] == 80 and report["num_candidates"] == len(prepared.catalog)


@pytest.mark.slow
def test_teacher_benchmark_end_to_end_on_the_simulator(tmp_path):
    """benchmarks/teacher.py --quick: every stage, then a report with the ranker, the policy and the λ sweep."""
    from .benchmark_scripts import load_benchmark

    module = load_benchmark("teacher")
    argv = ["--dataset", "synthetic", "--quick", "--max_train_samples", "500", "--max_len", "20", "--epochs", "2"]
    argv += ["--output_dir", str(tmp_path / "run"), "--results_dir", str(tmp_path / "results")]
    argv += ["--popularity_biases", "0", "1"]
    report = module.main(argv)
    teacher = report["teacher"]
    assert teacher["num_examples"] == report["teacher"]["policy"]["num_users"] > 0
    assert [entry["popularity_bias"] for entry in teacher["popularity_bias"]] == [0.0, 1.0]
    assert set(teacher["vs_policy"]) >= {"both", "ranker_only", "policy_only", "neither"}
    assert sum(teacher["vs_policy"][k] for k in ("both", "ranker_only", "policy_only", "neither")) == pytest.approx(1)
    assert report["summary"]["ranker_hr@10"] == teacher["unmasked"]["overall"]["hr@10"]
    written = json.loads((tmp_path / "results" / "synthetic_quick" / "report.json").read_text())
    assert written["summary"] == report["summary"] and "versions" in written and written["hardware"]
    again = module.main(argv)  # every stage is complete: nothing is retrained
    assert again["stage_seconds_this_invocation"] == {}


def test_fit_resumes_exactly_from_its_epoch_checkpoint(tmp_path):
    sequences = synthetic_sequences(num_users=60, length=10)
    validation = [{"history": s[:-1], "target_item": s[-1]} for s in sequences]
    kwargs = dict(batch_size=16, lr=5e-3, seed=1, show_progress=False, eval_examples=validation)
    whole = SASRecRanker(SMALL, device="cpu").fit(sequences, epochs=4, **kwargs)
    SASRecRanker(SMALL, device="cpu").fit(sequences, epochs=2, checkpoint_dir=tmp_path / "ckpt", **kwargs)  # "killed"
    resumed = SASRecRanker(SMALL, device="cpu").fit(sequences, epochs=4, checkpoint_dir=tmp_path / "ckpt", **kwargs)
    assert resumed.training_log == whole.training_log and resumed.best_epoch == whole.best_epoch
    contexts, candidates = [{"history": sequences[0][:5]}] * 3, ["i1", "i2", "i3"]
    assert resumed.score(contexts, candidates) == whole.score(contexts, candidates)
    with pytest.raises(ValueError, match="written by another training run"):
        SASRecRanker(SMALL, device="cpu").fit(
            sequences, epochs=4, checkpoint_dir=tmp_path / "ckpt", **{**kwargs, "lr": 1e-3}
        )
