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
"""RankerReward with a fake ranker: hand-computed rewards, invalid items, transforms, batching, failures, registry."""

import math
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from torch import nn
from trl.trainer.utils import get_callable_name

from adagrpo_trl.rankers import HTTPRanker, RankerError, SASRecConfig, SASRecRanker
from adagrpo_trl.rewards import REWARD_FACTORIES, RankerReward, get_reward_funcs, resolve_dotted_path

from . import toy


class FakeCatalog:
    """SID string `<a_i><b_j>` ↔ item id `item{4i+j}` for the 16 toy items."""

    def __init__(self):
        self.items = {sid: f"item{index}" for index, sid in enumerate(toy.ITEMS)}

    def sid_to_item(self, sid):
        return self.items.get(sid)


class FakeRanker:
    """score = number of history items + item number / 100; records the batches it is called with."""

    def __init__(self):
        self.batches = []

    def score(self, contexts, candidate_item_ids):
        self.batches.append(list(candidate_item_ids))
        return [len(c["history"]) + int(item[4:]) / 100 for c, item in zip(contexts, candidate_item_ids, strict=True)]


class BrokenRanker(FakeRanker):
    """
    Answers wrongly for batches that contain `bad_item`: a NaN/inf score, a score beyond float32's range (inf once TRL
    stores it), a wrong length, or an exception.
    """

    def __init__(self, mode, bad_item="item3"):
        super().__init__()
        self.mode, self.bad_item = mode, bad_item

    def score(self, contexts, candidate_item_ids):
        scores = super().score(contexts, candidate_item_ids)
        if self.bad_item not in candidate_item_ids:
            return scores
        if self.mode == "exception":
            raise ConnectionError("ranker backend down")
        if self.mode == "wrong_length":
            return scores[:-1]
        bad = candidate_item_ids.index(self.bad_item)
        scores[bad] = {"nan": math.nan, "inf": math.inf, "overflow": -1e39}[self.mode]
        return scores


class MetricLog:
    def __init__(self):
        self.values = {}

    def __call__(self, name, value):
        self.values.setdefault(name, []).append(value)


FAKE_RANKER = FakeRanker()  # for the dotted-path tests


def plain_reward_function(completions, **kwargs):
    return [0.0] * len(completions)


def sid(index):
    return toy.ITEMS[index]


def call(reward, completions, histories, **extra):
    kwargs = dict(
        prompts=["p"] * len(completions),
        completions=completions,
        completion_ids=[[i] for i in range(len(completions))],
        history=histories,
        user_id=list(range(len(completions))),
    )
    kwargs.update(extra)
    return reward(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------------------------------------------


def test_hand_computed_rewards_and_invalid_items():
    ranker = FakeRanker()
    reward = RankerReward(ranker, FakeCatalog(), invalid_reward=-5.0)
    completions = [sid(0), "<a_9><b_9>", f"  {sid(5)}\n", sid(0)[:5], "", "<a_1> <b_2>"]
    histories = [["x"], ["x", "y"], ["x", "y", "z"], [], ["x"], ["x", "y"]]
    rewards = call(reward, completions, histories)
    # item0 with 1 history item; hallucination; item5 with 3 (whitespace stripped); partial SID; empty;
    # item6 decoded with a space between SID tokens.
    assert rewards == pytest.approx([1.00, -5.0, 3.05, -5.0, -5.0, 2.06])
    assert sorted(item for batch in ranker.batches for item in batch) == ["item0", "item5", "item6"]


def test_contexts_are_the_dataset_columns():
    seen = []

    class Recorder(FakeRanker):
        def score(self, contexts, candidate_item_ids):
            seen.extend(contexts)
            return super().score(contexts, candidate_item_ids)

    reward = RankerReward(Recorder(), FakeCatalog())
    call(reward, [sid(1)], [["a"]], target_item=["item2"], trainer_state=object(), log_metric=MetricLog())
    assert seen == [{"history": ["a"], "user_id": 0, "target_item": "item2"}]

    seen.clear()
    reward = RankerReward(Recorder(), FakeCatalog(), context_columns=["history"])
    call(reward, [sid(1)], [["a"]], target_item=["item2"])
    assert seen == [{"history": ["a"]}]
    with pytest.raises(ValueError, match="context columns"):
        RankerReward(Recorder(), FakeCatalog(), context_columns=["nope"])(completions=[sid(1)], history=[["a"]])


def test_conversational_completions():
    reward = RankerReward(FakeRanker(), FakeCatalog())
    completions = [[{"role": "assistant", "content": sid(2)}], [{"role": "assistant", "content": "hello"}]]
    assert call(reward, completions, [[], []]) == pytest.approx([0.02, -1.0])


def test_sigmoid_transform():
    reward = RankerReward(FakeRanker(), FakeCatalog(), transform="sigmoid")
    rewards = call(reward, [sid(1), sid(2), "bad"], [[], ["x", "y"], []])
    assert rewards == pytest.approx([1 / (1 + math.exp(-0.01)), 1 / (1 + math.exp(-2.02)), -1.0])


def test_group_rank_transform():
    reward = RankerReward(FakeRanker(), FakeCatalog(), transform="group_rank", num_generations=4)
    # Group 1: item3 > item1 = item1 > item0. Group 2: an invalid item, a single valid one... and two more.
    completions = [sid(1), sid(3), sid(1), sid(0), "bad", sid(7), sid(2), sid(9)]
    prompts = ["p1"] * 4 + ["p2"] * 4
    rewards = call(reward, completions, [[]] * 8, prompts=prompts)
    assert rewards == pytest.approx([0.5, 1.0, 0.5, 0.0, -1.0, 0.5, 0.0, 1.0])
    assert reward.supports_gate_scoring is False

    single = call(reward, ["bad", "bad", sid(4), "bad"], [[]] * 4)
    assert single == pytest.approx([-1.0, -1.0, 0.5, -1.0])

    with pytest.raises(ValueError, match="groups of num_generations=4"):
        call(reward, [sid(0)] * 6, [[]] * 6)
    with pytest.raises(ValueError, match="share one prompt"):
        call(reward, [sid(0)] * 4, [[]] * 4, prompts=["p1", "p1", "p2", "p2"])
    with pytest.raises(ValueError, match="needs num_generations"):
        call(RankerReward(FakeRanker(), FakeCatalog(), transform="group_rank"), [sid(0)] * 4, [[]] * 4)


class FakeTrainer:
    """Stands in for a trainer: TRL passes its bound `_log_metric` as `log_metric`."""

    def __init__(self, gate_mode, num_generations=4):
        self.args = SimpleNamespace(gate_mode=gate_mode)
        self.num_generations = num_generations
        self.model = nn.Linear(1, 1)
        self.metrics = MetricLog()

    def _log_metric(self, name, value):
        self.metrics(name, value)


@pytest.mark.parametrize(("transform", "supported"), [("raw", True), ("sigmoid", True), ("group_rank", False)])
def test_gate_scoring_support_follows_the_transform(transform, supported):
    # AdaGRPOTrainer reads this to reject within-group ranks for the gate modes that score ground truths.
    assert RankerReward(FakeRanker(), FakeCatalog(), transform=transform).supports_gate_scoring is supported


def test_group_rank_takes_num_generations_from_the_trainer():
    reward = RankerReward(FakeRanker(), FakeCatalog(), transform="group_rank")
    trainer = FakeTrainer("always", num_generations=2)
    rewards = call(reward, [sid(0), sid(1), sid(5), sid(2)], [[]] * 4, log_metric=trainer._log_metric)
    assert rewards == pytest.approx([0.0, 1.0, 1.0, 0.0])
    assert trainer.metrics.values["rewards/ranker/failures"] == [0.0]


def test_batching_and_deduplication():
    ranker = FakeRanker()
    reward = RankerReward(ranker, FakeCatalog(), batch_size=2)
    completions = [sid(0), sid(1), sid(0), sid(2), sid(3), "bad", sid(4)]
    histories = [["h"]] * 7
    rewards = call(reward, completions, histories, user_id=[0] * 7)
    assert [len(b) for b in ranker.batches] == [2, 2, 1]  # 5 distinct (context, item) pairs
    assert rewards[2] == rewards[0] == pytest.approx(1.0)

    ranker.batches.clear()
    no_dedup = RankerReward(ranker, FakeCatalog(), batch_size=4, deduplicate=False)
    assert call(no_dedup, completions, histories, user_id=[0] * 7) == pytest.approx(rewards)
    assert [len(b) for b in ranker.batches] == [4, 2]
    # Same item, different contexts: two pairs.
    ranker.batches.clear()
    call(reward, [sid(0), sid(0)], [["a"], ["b"]], user_id=[0, 0])
    assert ranker.batches == [["item0", "item0"]]


def test_name_and_plain_callable():
    reward = RankerReward(FakeRanker(), FakeCatalog())
    assert reward.__name__ == "ranker"
    assert get_callable_name(reward) == "ranker"
    assert not isinstance(reward, nn.Module)
    assert get_callable_name(RankerReward(FakeRanker(), FakeCatalog(), name="ctr")) == "ctr"
    with pytest.raises(ValueError, match="name"):
        RankerReward(FakeRanker(), FakeCatalog(), name="a/b")


def test_constructor_validation():
    with pytest.raises(TypeError, match="score"):
        RankerReward(object(), FakeCatalog())
    with pytest.raises(TypeError, match="sid_to_item"):
        RankerReward(FakeRanker(), object())
    with pytest.raises(ValueError, match="transform"):
        RankerReward(FakeRanker(), FakeCatalog(), transform="softmax")
    with pytest.raises(ValueError, match="on_failure"):
        RankerReward(FakeRanker(), FakeCatalog(), on_failure="ignore")
    with pytest.raises(ValueError, match="batch_size"):
        RankerReward(FakeRanker(), FakeCatalog(), batch_size=0)
    with pytest.raises(ValueError, match="invalid_reward"):
        RankerReward(FakeRanker(), FakeCatalog(), invalid_reward=math.nan)


def test_invalid_mask_from_scored_completions_and_from_a_tokenizer(tokenizer):
    reward = RankerReward(FakeRanker(), FakeCatalog())
    call(reward, [sid(0), "bad"], [[], []], completion_ids=[[10, 11], [12]])
    assert reward.invalid_mask([[12], [10, 11]]) == [True, False]
    with pytest.raises(KeyError, match="tokenizer"):
        reward.invalid_mask([[99]])

    with_tokenizer = RankerReward(FakeRanker(), FakeCatalog(), tokenizer=tokenizer)
    ids = [
        tokenizer(text=sid(3), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
        tokenizer(text=sid(3)[:5], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
    ]
    assert with_tokenizer.invalid_mask(ids) == [False, True]


# ---------------------------------------------------------------------------------------------------------------------
# Failure policy
# ---------------------------------------------------------------------------------------------------------------------


FAILURES = {
    # mode: rows of the 4 valid ones [item0, item3, item5, item6] that fail with batch_size=2
    "nan": [False, True, False, False],
    "inf": [False, True, False, False],
    "overflow": [False, True, False, False],
    "wrong_length": [True, True, False, False],
    "exception": [True, True, False, False],
}


@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_failures_raise_naming_the_ranker_and_the_batch(mode):
    reward = RankerReward(BrokenRanker(mode), FakeCatalog(), batch_size=2, name="ctr")
    with pytest.raises(RankerError, match=r"'ctr'.*BrokenRanker.*batch 0.*'item0', 'item3'"):
        call(reward, [sid(0), sid(3), sid(5), sid(6)], [[]] * 4)


@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_failures_gate_out_rows_and_log_a_metric(mode):
    reward = RankerReward(BrokenRanker(mode), FakeCatalog(), batch_size=2, on_failure="gate_out")
    log = MetricLog()
    rewards = call(reward, [sid(0), sid(3), "bad", sid(5), sid(6)], [[]] * 5, log_metric=log)
    expected_failed = FAILURES[mode]
    valid_rewards = [rewards[0], rewards[1], rewards[3], rewards[4]]
    for value, failed, item in zip(valid_rewards, expected_failed, [0, 3, 5, 6], strict=True):
        if failed:
            assert value is None
        else:
            assert value == pytest.approx(item / 100)
    assert rewards[2] == -1.0  # invalid items never reach the ranker
    assert log.values["rewards/ranker/failures"] == [float(sum(expected_failed))]
    assert log.values["rewards/ranker/invalid_rate"] == [pytest.approx(0.2)]
    assert reward.num_failures == sum(expected_failed)


def test_timeout_is_a_failure():
    release = threading.Event()

    class SlowRanker(FakeRanker):
        def score(self, contexts, candidate_item_ids):
            if "item3" in candidate_item_ids:
                release.wait(5)
            return super().score(contexts, candidate_item_ids)

    try:
        reward = RankerReward(SlowRanker(), FakeCatalog(), timeout=0.2, batch_size=1, on_failure="gate_out")
        start = time.monotonic()
        rewards = call(reward, [sid(3), sid(1)], [[], []])
        assert time.monotonic() - start < 2
        assert rewards == [None, pytest.approx(0.01)]
        raising = RankerReward(SlowRanker(), FakeCatalog(), timeout=0.2)
        with pytest.raises(RankerError, match="timed out"):
            call(raising, [sid(3)], [[]])
    finally:
        release.set()


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------


def test_registry_names_resolve(tmp_path):
    ranker = SASRecRanker(SASRecConfig(max_len=4, hidden_size=8, num_layers=1, num_heads=1), device="cpu")
    ranker.fit([["item0", "item1", "item2"]], epochs=1, show_progress=False)
    ranker.save(tmp_path / "sasrec")
    catalog = FakeCatalog()

    (sasrec,) = get_reward_funcs(["sasrec"], catalog=catalog, ranker_path=str(tmp_path / "sasrec"), device="cpu")
    assert isinstance(sasrec, RankerReward) and isinstance(sasrec.ranker, SASRecRanker)
    assert sasrec.__name__ == "ranker"
    assert call(sasrec, [sid(1), "bad"], [["item0"], []])[1] == -1.0

    (http,) = get_reward_funcs("http", catalog=catalog, url="http://127.0.0.1:1", transform="sigmoid", concurrency=2)
    assert isinstance(http.ranker, HTTPRanker) and http.transform == "sigmoid" and http.batch_size == 512
    http.ranker.close()
    assert set(REWARD_FACTORIES) == {"sasrec", "http", "hit"}


def test_registry_errors():
    with pytest.raises(ValueError, match=r"Unknown reward 'sasrek'.*\['hit', 'http', 'sasrec'\]"):
        get_reward_funcs(["sasrek"])
    with pytest.raises(ValueError, match="catalog"):
        get_reward_funcs(["http"], url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="url"):
        get_reward_funcs(["http"], catalog=FakeCatalog())
    with pytest.raises(TypeError, match="ranker_path"):
        get_reward_funcs(["http"], catalog=FakeCatalog(), url="http://127.0.0.1:1", ranker_path="x")
    with pytest.raises(ValueError, match="Cannot import"):
        get_reward_funcs(["no_such_pkg.module:thing"])
    with pytest.raises(ValueError, match="no attribute"):
        resolve_dotted_path("tests.test_rewards:NOPE")


def test_dotted_paths():
    catalog = FakeCatalog()
    (obj,) = get_reward_funcs(["tests.test_rewards:FAKE_RANKER"], catalog=catalog, name="custom")
    assert isinstance(obj, RankerReward) and obj.ranker is FAKE_RANKER and obj.__name__ == "custom"
    (cls,) = get_reward_funcs(["tests.test_rewards:BrokenRanker"], catalog=catalog, ranker_kwargs={"mode": "nan"})
    assert isinstance(cls.ranker, BrokenRanker) and cls.ranker.mode == "nan"
    (func,) = get_reward_funcs(["tests.test_rewards.plain_reward_function"])
    assert func is plain_reward_function
    with pytest.raises(ValueError, match="catalog"):
        get_reward_funcs(["tests.test_rewards:FAKE_RANKER"])


def test_importing_the_package_does_not_import_the_http_stack():
    code = (
        "import adagrpo_trl, adagrpo_trl.rewards, adagrpo_trl.rankers, sys; "
        "assert not any(m.split('.')[0] in ('starlette', 'uvicorn', 'httpx') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'httpx'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ranker_names_still_import_from_rewards():
    import adagrpo_trl.rankers as rankers
    import adagrpo_trl.rewards as rewards
    from adagrpo_trl import HTTPRanker as top_level_http_ranker
    from adagrpo_trl.rankers import http

    moved = ["SASRecConfig", "SASRecRanker", "sequences_from_logs", "train_ranker", "Ranker", "RankerError"]
    moved += ["popularity_buckets", "ranker_quality_report", "format_quality_report", "resolve_dotted_path"]
    moved += ["HTTPRanker", "RankerServerThread", "create_app", "serve_ranker"]
    for name in moved:
        assert getattr(rewards, name) is getattr(rankers, name), name
    assert rewards.run_server_in_thread is http.run_server_in_thread
    assert top_level_http_ranker is HTTPRanker
    from adagrpo_trl.rewards.http import HTTPRanker as old_http_ranker
    from adagrpo_trl.rewards.sasrec import SASRecRanker as old_sasrec_ranker

    assert old_http_ranker is HTTPRanker and old_sasrec_ranker is SASRecRanker
    command = [sys.executable, "-m", "adagrpo_trl.rewards.http", "--help"]
    assert "--ranker-dir" in subprocess.run(command, check=True, capture_output=True, text=True).stdout
    for module in (rewards, rankers):
        for name in module.__all__:
            getattr(module, name)
        with pytest.raises(AttributeError, match="NOPE"):
            module.NOPE  # noqa: B018


# ---------------------------------------------------------------------------------------------------------------------
# With the trainer
# ---------------------------------------------------------------------------------------------------------------------


class ToyRanker:
    """An oracle: the closer an item's number to the target's, the higher its score."""

    def score(self, contexts, candidate_item_ids):
        return [
            -float(abs(int(item.removeprefix("item")) - int(context["target_item"].removeprefix("item"))))
            for context, item in zip(contexts, candidate_item_ids, strict=True)
        ]


def toy_dataset_with_item_ids(dataset):
    catalog = FakeCatalog()
    return dataset.map(lambda row: {"target_item": catalog.sid_to_item(row["target_item"])})


def test_group_rank_trains_without_gate_scoring_and_is_rejected_by_the_gate(tokenizer, dataset, tmp_path):
    from adagrpo_trl import AdaGRPOTrainer

    dataset = toy_dataset_with_item_ids(dataset)
    reward = RankerReward(ToyRanker(), FakeCatalog(), transform="group_rank", tokenizer=tokenizer)
    trainer = AdaGRPOTrainer(
        model=toy.make_model(tokenizer),
        reward_funcs=reward,
        args=toy.tiny_config(tmp_path / "a", gate_mode="difficulty", max_steps=1),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    (entry,) = [e for e in trainer.state.log_history if "loss" in e]
    assert -1.0 <= entry["rewards/ranker/mean"] <= 1.0  # ranks in [0, 1], invalid items -1

    with pytest.raises(ValueError, match="'ranker' cannot score the gate's ground truths"):
        AdaGRPOTrainer(
            model=toy.make_model(tokenizer),
            reward_funcs=RankerReward(ToyRanker(), FakeCatalog(), transform="group_rank"),
            args=toy.tiny_config(tmp_path / "b", gate_mode="adaptive", max_steps=1),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
