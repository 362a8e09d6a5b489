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
"""Stratified analysis: ranks checked by hand against the model, buckets, and the ranker's correction."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from adagrpo_trl import AdaGRPOTrainer, ItemCatalog, adagrpo_trainer, gating
from adagrpo_trl.analysis import format_stratified_analysis, stratified_analysis
from adagrpo_trl.constrained import make_trie_processor_factory
from adagrpo_trl.evaluation import recommend

from . import toy


K = 8
TAU = 0.25  # k_tau = 2
NUM_USERS = 24


def _catalog():
    return ItemCatalog([f"item{i}" for i in range(len(toy.ITEMS))], toy.ITEMS)


class OracleOrAdversary:
    """
    A reward whose quality depends on the user: it knows the ground truth for users 0 mod 3 (1 for the truth, 0 for
    anything else), ranks the truth last for users 1 mod 3, and cannot score the truth (None) for users 2 mod 3.
    Records every call to check that rows arrive in their sample's context.
    """

    __name__ = "oracle_or_adversary"

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, completion_ids, user_id, target_item, **kwargs):
        self.calls.append(
            dict(prompts=prompts, completions=completions, completion_ids=completion_ids, user_id=user_id)
        )
        scores = []
        for completion, user, target in zip(completions, user_id, target_item, strict=True):
            is_truth = "".join(completion.split()) == target
            if user % 3 == 0:
                scores.append(1.0 if is_truth else 0.0)
            elif user % 3 == 1:
                scores.append(-1.0 if is_truth else 0.5)
            else:
                scores.append(None if is_truth else 0.0)
        return scores


@pytest.fixture(scope="module")
def setup():
    tokenizer = toy.make_tokenizer()
    model = toy.make_model(tokenizer, seed=1).train()
    dataset = toy.make_dataset(NUM_USERS)
    reward = OracleOrAdversary()
    result = stratified_analysis(
        model,
        tokenizer,
        dataset,
        _catalog(),
        reward,
        num_generations=K,
        tau=TAU,
        batch_size=5,  # several batches, the last one partial
        ks=(1, 2, 5),
        return_per_sample=True,
        show_progress=False,
    )
    return tokenizer, model, dataset, reward, result


def _summed_logp(model, prompt_ids, completion_ids):
    """log π(completion | prompt) summed over the completion tokens, one unpadded sequence at a time."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]
    return F.log_softmax(logits.float(), dim=-1).gather(1, torch.tensor(completion_ids).unsqueeze(1)).sum().item()


def test_ranks_match_a_hand_computation(setup):
    tokenizer, model, dataset, _, result = setup
    per_sample = result["per_sample"]
    catalog = _catalog()
    beams = recommend(model, tokenizer, dataset["prompt"], catalog, num_beams=K, constrained=True, show_progress=False)
    eos = tokenizer.eos_token_id
    for index, row in enumerate(dataset):
        prompt_ids = tokenizer(text=row["prompt"])["input_ids"]
        truth = row["completion"]

        def logp(sid, prompt_ids=prompt_ids):
            return _summed_logp(model, prompt_ids, tokenizer(text=sid, add_special_tokens=False)["input_ids"] + [eos])

        truth_logp = logp(truth)
        beam_sids = [catalog.item_to_sid(item) for item in beams[index]]
        expected_policy = 1 + sum(logp(sid) > truth_logp for sid in beam_sids if sid != truth)
        in_beams = truth in beam_sids
        last = K + 1 - in_beams  # size of beams ∪ {y*}
        expected_reward = 1 if row["user_id"] % 3 == 0 else last
        assert per_sample["in_beams"][index] == in_beams
        assert per_sample["rank_policy"][index] == expected_policy
        assert per_sample["rank_reward"][index] == expected_reward
        assert per_sample["uncertain"][index] == (expected_policy > 2)
        assert per_sample["discriminative"][index] == (row["user_id"] % 3 == 0)  # M = 0: R = R1
        assert per_sample["unscorable"][index] == (row["user_id"] % 3 == 2)
    assert model.training  # the analysis runs in eval mode and restores the training mode


def test_buckets_partition_the_samples_and_the_correction_follows_the_reward(setup):
    _, _, _, _, result = setup
    assert result["num_samples"] == NUM_USERS and result["k_tau"] == 2
    for table in ("buckets", "fine_buckets"):
        assert math.isclose(sum(b["share"] for b in result[table]), 1.0)
        assert sum(b["count"] for b in result[table]) == NUM_USERS
    assert len(result["buckets"]) == 4 and [b["gate"] for b in result["buckets"]].count(True) == 1
    # policy-rank buckets {1, 2, >2, absent} x ranker-rank buckets {1, 2, >2}
    assert {b["policy_rank"] for b in result["fine_buckets"]} == {"1", "2", ">2", "absent"}
    assert {b["ranker_rank"] for b in result["fine_buckets"]} == {"1", "2", ">2"}

    by_cell = {(b["policy"], b["ranker"]): b for b in result["buckets"]}
    gate = by_cell[("uncertain", "discriminative")]
    assert gate["count"] > 0
    assert gate["correction"] > 0  # the reward knows the truth and the policy does not: re-ranking helps
    assert gate["rank_after"] == 1 and gate["hr@1/reranked"] == 1.0 and gate["hr@1/policy"] == 0.0
    for policy in ("certain", "uncertain"):
        cell = by_cell[(policy, "non-discriminative")]
        if cell["count"]:
            assert cell["correction"] <= 0  # adversarial or unscorable: re-ranking never helps
    summary = result["summary"]
    assert math.isclose(summary["gate_rate"], gate["share"])
    assert math.isclose(summary["discriminative_rate"], 1 / 3)
    assert math.isclose(summary["unscorable_rate"], 1 / 3)
    # the whole result is JSON-friendly
    json.dumps(result)


def test_reward_is_called_like_trl_in_each_samples_context(setup):
    tokenizer, _, dataset, reward, _ = setup
    users_of_prompt = {}
    for row in dataset:  # 24 users over 16 items: users u and u + 16 share their prompt
        users_of_prompt.setdefault(row["prompt"], set()).add(row["user_id"])
    num_rows = 0
    for call in reward.calls:
        assert len(call["prompts"]) == len(call["completions"]) == len(call["completion_ids"]) == len(call["user_id"])
        for prompt, user, ids, text in zip(
            call["prompts"], call["user_id"], call["completion_ids"], call["completions"], strict=True
        ):
            assert user in users_of_prompt[prompt]
            assert tokenizer.decode(ids, skip_special_tokens=True) == text
        num_rows += len(call["prompts"])
    assert len(reward.calls) == math.ceil(NUM_USERS / 5)  # one call per batch
    assert num_rows == NUM_USERS * (K + 1)  # K beams and the ground truth per sample


def test_cross_negatives_and_rho(tokenizer):
    model = toy.make_model(tokenizer, seed=1)
    dataset = toy.make_dataset(10)
    kwargs = dict(num_generations=K, tau=TAU, batch_size=5, return_per_sample=True, show_progress=False)
    loose = stratified_analysis(
        model, tokenizer, dataset, _catalog(), OracleOrAdversary(), rho=1.0, num_cross_negatives=3, **kwargs
    )
    per_sample = loose["per_sample"]
    assert all(per_sample["r2"])  # ρ = 1: every negative (never the truth, so always scored) is in the bottom-ρ
    assert per_sample["discriminative"] == [a and b for a, b in zip(per_sample["r1"], per_sample["r2"], strict=True)]
    strict = stratified_analysis(
        model, tokenizer, dataset, _catalog(), OracleOrAdversary(), rho=0.1, num_cross_negatives=3, **kwargs
    )
    # Cross-query negatives tie with the oracle's wrong beams (0), so they are not in its bottom 10%: R2 fails.
    assert not any(strict["per_sample"]["r2"])
    assert strict["summary"]["gate_rate"] == 0
    assert strict["per_sample"]["rank_policy"] == per_sample["rank_policy"]


def test_format_and_validation(setup, tokenizer):
    _, model, dataset, _, result = setup
    text = format_stratified_analysis(result)
    assert "(gate)" in text and "uncertain × discriminative" in text
    assert text.count("\n|") >= 4 + 2 + 2  # two tables with header rows
    with pytest.raises(ValueError, match="num_generations"):
        stratified_analysis(model, tokenizer, dataset, _catalog(), OracleOrAdversary(), num_generations=17)
    bad = [{"prompt": "history : next :", "completion": "<a_9><b_9>", "user_id": 0}]
    with pytest.raises(ValueError, match="not a catalog SID"):
        stratified_analysis(model, tokenizer, bad, _catalog(), OracleOrAdversary(), num_generations=K)
    with pytest.raises(ValueError, match="returned 1 scores"):
        stratified_analysis(
            model, tokenizer, dataset, _catalog(), lambda completions, **kw: [0.0], num_generations=K, max_samples=2
        )


class DecisionRecorder(AdaGRPOTrainer):
    """Records the dataset rows of each gated prompt, in the order the trainer gated them."""

    def _compute_gate(self, output, stash, ground_truth_ids, num_generations, mode):
        self.gated_rows = [*getattr(self, "gated_rows", []), *stash["inputs"][::num_generations]]
        return super()._compute_gate(output, stash, ground_truth_ids, num_generations, mode)


def test_analysis_and_trainer_take_the_same_gate_decisions(tmp_path, monkeypatch):
    """
    One gate: the trainer's first generation batch (beam rollouts through the catalog trie, so both draw the same K
    beams; the seed of the analysis is the trainer's first negative-sampling seed) gives the same ranks, diagnostics
    and gate as the stratified analysis of the same prompts with the same policy.
    """
    decisions = []

    def recording(*args, **kwargs):
        decisions.append(gating.compute_gate_decisions(*args, **kwargs))
        return decisions[-1]

    monkeypatch.setattr(adagrpo_trainer, "compute_gate_decisions", recording)
    tokenizer = toy.make_tokenizer()
    catalog = _catalog()
    trainer = DecisionRecorder(
        model=toy.make_model(tokenizer, seed=1),
        reward_funcs=OracleOrAdversary(),
        args=toy.tiny_config(
            tmp_path,
            rollout="beam",
            per_device_train_batch_size=24,  # 6 prompts x K = 4 beams
            max_steps=1,
            learning_rate=0.0,
            gate_tau=0.25,
            gate_rho=0.6,
            num_cross_negatives=2,
            seed=0,
        ),
        train_dataset=toy.make_dataset(NUM_USERS),
        processing_class=tokenizer,
        logits_processors=[make_trie_processor_factory(catalog, tokenizer)],
    )
    trainer.train()
    (trained,) = decisions
    result = stratified_analysis(
        trainer.model,
        tokenizer,
        trainer.gated_rows,
        catalog,
        OracleOrAdversary(),
        num_generations=4,
        tau=0.25,
        rho=0.6,
        num_cross_negatives=2,
        batch_size=len(trainer.gated_rows),  # one batch: the same pool of cross-query negatives
        seed=0,  # the trainer's generator at step 0: seed * 1_000_003 + 0
        return_per_sample=True,
        show_progress=False,
    )
    analysed = result["per_sample"]
    assert analysed["rank_policy"] == trained.rank_policy.tolist()
    assert analysed["uncertain"] == trained.difficulty.tolist()
    assert analysed["r1"] == trained.r1.tolist()
    assert analysed["r2"] == trained.r2.tolist()
    assert analysed["unscorable"] == trained.unscorable.tolist()
    assert analysed["discriminative"] == trained.discriminability.tolist()
    assert analysed["gate"] == trained.gate.tolist()
    # the comparison has teeth: the diagnostics take both values over these prompts
    for name in ("uncertain", "discriminative", "unscorable", "gate"):
        assert len(set(analysed[name])) == 2, name
