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
"""SASRecRanker: learns sequential structure from exposure-biased synthetic logs, save/load, quality report."""

import json
import math
import os
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from adagrpo_trl.rankers import (
    SASRecConfig,
    SASRecRanker,
    format_quality_report,
    popularity_buckets,
    ranker_quality_report,
    sequences_from_logs,
    train_ranker,
)


NUM_ITEMS = 60


pytestmark = pytest.mark.usefixtures("single_thread")


def synthetic_sequences(num_users=300, length=20, follow=0.7, seed=0):
    """
    Clear sequential structure under exposure bias: the next item is the successor of the current one with
    probability `follow`, otherwise an item drawn from a Zipf popularity (so tail items are rarely logged).
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, NUM_ITEMS + 1) ** 1.1
    popularity /= popularity.sum()
    sequences = []
    for _ in range(num_users):
        current = int(rng.choice(NUM_ITEMS, p=popularity))
        sequence = [current]
        for _ in range(length - 1):
            follows = rng.random() < follow
            current = (current + 1) % NUM_ITEMS if follows else int(rng.choice(NUM_ITEMS, p=popularity))
            sequence.append(current)
        sequences.append([f"i{j}" for j in sequence])
    return sequences


SMALL = SASRecConfig(max_len=10, hidden_size=32, num_layers=1, num_heads=2, dropout=0.1)


@pytest.fixture(scope="module")
def data():
    sequences = synthetic_sequences()
    train = [s[:-1] for s in sequences]  # leave the last item out for evaluation
    examples = [{"user_id": u, "history": s[:-1], "target_item": s[-1]} for u, s in enumerate(sequences)]
    popularity = Counter(item for s in train for item in s)
    for j in range(NUM_ITEMS):
        popularity.setdefault(f"i{j}", 0)
    return train, examples, popularity


@pytest.fixture(scope="module")
def trained(data):
    train, _, _ = data
    return SASRecRanker(SMALL, device="cpu").fit(
        train, epochs=30, batch_size=64, lr=5e-3, loss="bce", num_negatives=4, seed=0, show_progress=False
    )


def test_beats_random_auc_by_a_wide_margin(trained, data):
    _, examples, popularity = data
    report = ranker_quality_report(trained, examples, popularity, num_negatives=50, seed=0)
    untrained = SASRecRanker(SMALL, item_ids=sorted(popularity), device="cpu")
    baseline = ranker_quality_report(untrained, examples, popularity, num_negatives=50, seed=0)
    assert report["overall"]["auc"] > 0.75
    assert report["overall"]["hr@10"] > 0.5
    assert abs(baseline["overall"]["auc"] - 0.5) < 0.15
    # Exposure bias: the ranker is more reliable on popular targets than on rare ones.
    assert report["head"]["auc"] > report["tail"]["auc"]


def test_quality_report_table(trained, data):
    _, examples, popularity = data
    report = ranker_quality_report(trained, examples, popularity, num_negatives=20, k=5)
    assert list(report) == ["overall", "head", "torso", "tail"]
    assert sum(report[b]["examples"] for b in ("head", "torso", "tail")) == report["overall"]["examples"] == 300
    assert all(0 <= row["auc"] <= 1 and 0 <= row["hr@5"] <= 1 for row in report.values())
    table = format_quality_report(report)
    lines = table.splitlines()
    assert lines[0] == "| bucket | examples | AUC | HR@5 |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["overall", "head", "torso", "tail"]


def test_popularity_buckets():
    buckets = popularity_buckets({f"i{j}": 100 - j for j in range(10)})
    assert [buckets[f"i{j}"] for j in range(10)] == ["head"] * 2 + ["torso"] * 3 + ["tail"] * 5
    with pytest.raises(ValueError, match="head_fraction"):
        popularity_buckets({"a": 1}, head_fraction=0.6, tail_fraction=0.6)


def test_save_load_round_trip(trained, tmp_path):
    contexts = [{"history": ["i1", "i2", "i3"]}, {"history": []}, {"history": ["i5", "unseen"]}, {}]
    candidates = ["i4", "i0", "never-seen-item", "i7"]
    scores = trained.score(contexts, candidates)
    assert all(math.isfinite(s) for s in scores)
    trained.save(tmp_path / "ranker")
    assert sorted(os.listdir(tmp_path / "ranker")) == ["config.json", "model.safetensors"]  # no temporary files left
    loaded = SASRecRanker.load(tmp_path / "ranker", device="cpu")
    assert loaded.item_ids == trained.item_ids
    assert loaded.score(contexts, candidates) == scores
    # Scores do not depend on the batch a pair is scored in.
    assert [loaded.score([c], [i])[0] for c, i in zip(contexts, candidates, strict=True)] == pytest.approx(scores)


def test_unknown_candidates_score_zero_until_the_unk_bucket_is_trained(trained):
    assert trained.score([{"history": ["i1"]}], ["never-seen-item"]) == [0.0]


def test_sequences_from_logs_and_train_ranker(tmp_path):
    logs = pd.DataFrame(
        {
            "user_id": [2, 1, 2, 1, 2, 1],
            "item_id": ["c", "x", "a", "y", "b", "z"],
            "timestamp": [30, 1, 10, 2, 20, 3],
        }
    )
    assert sequences_from_logs(logs) == [["x", "y", "z"], ["a", "b", "c"]]
    assert sequences_from_logs(logs, holdout=1) == [["x", "y"], ["a", "b"]]
    with pytest.raises(ValueError, match="timestamp"):
        sequences_from_logs(logs.drop(columns="timestamp"))

    ranker = train_ranker(
        logs,
        config=SASRecConfig(max_len=4, hidden_size=8, num_layers=1, num_heads=1),
        output_dir=tmp_path / "r",
        holdout=1,
        device="cpu",
        epochs=2,
        loss="sampled_softmax",
        negative_sampling="popularity",
        num_negatives=2,
        show_progress=False,
    )
    assert ranker.item_ids == ["a", "b", "x", "y"]  # the held-out items are not in the vocabulary
    assert SASRecRanker.load(tmp_path / "r", device="cpu").score([{"history": ["a"]}], ["b"]) == ranker.score(
        [{"history": ["a"]}], ["b"]
    )


def test_fit_is_seeded():
    sequences = synthetic_sequences(num_users=20, length=6)
    config = SASRecConfig(max_len=5, hidden_size=8, num_layers=1, num_heads=1)
    state = torch.random.get_rng_state()
    a = SASRecRanker(config, device="cpu").fit(sequences, epochs=2, seed=3, show_progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    b = SASRecRanker(config, device="cpu").fit(sequences, epochs=2, seed=3, show_progress=False)
    contexts, candidates = [{"history": sequences[0][:3]}] * 3, ["i1", "i2", "i3"]
    assert a.score(contexts, candidates) == b.score(contexts, candidates)


def test_validation(tmp_path):
    with pytest.raises(ValueError, match="num_heads"):
        SASRecConfig(hidden_size=10, num_heads=3)
    with pytest.raises(ValueError, match="max_len"):
        SASRecConfig(max_len=0)
    with pytest.raises(ValueError, match="negative_sampling"):
        SASRecRanker(device="cpu").fit([["a", "b"]], negative_sampling="hard")
    with pytest.raises(ValueError, match="two or more"):
        SASRecRanker(device="cpu").fit([["a"]], show_progress=False)
    with pytest.raises(RuntimeError, match="fit"):
        SASRecRanker(device="cpu").score([{}], ["a"])
    (tmp_path / "config.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a SASRecRanker config"):
        SASRecRanker.load(tmp_path)
