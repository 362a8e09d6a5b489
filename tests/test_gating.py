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
"""Hand-computed cases for the gate functions (docs/method.md#definitions)."""

import math

import pytest
import torch

from adagrpo_trl.gating import (
    ROLLOUT_KEYS,
    aggregate_rewards,
    compute_gate,
    compute_gate_decisions,
    negatives_in_bottom_rho,
    policy_difficulty,
    rank_of_ground_truth,
    reward_kwargs,
    reward_scoring_batch,
    reward_top_tau,
    sample_cross_negatives,
    sanitize_rewards,
    sequence_ids,
    summed_sequence_logps,
    top_fraction_cutoff,
)

from . import toy


nan = float("nan")


@pytest.mark.parametrize(
    ("fraction", "num_items", "expected"),
    [(0.25, 8, 2), (0.3, 10, 3), (0.26, 8, 3), (1.0, 4, 4), (0.01, 4, 1), (0.5, 2, 1), (0.5, 9, 5), (0.7, 10, 7)],
)
def test_top_fraction_cutoff(fraction, num_items, expected):
    assert top_fraction_cutoff(fraction, num_items) == expected


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_top_fraction_cutoff_rejects_out_of_range(fraction):
    with pytest.raises(ValueError, match=str(fraction)):
        top_fraction_cutoff(fraction, 4)


def test_rank_counts_strictly_better_candidates_and_ties_favour_the_ground_truth():
    candidates = torch.tensor([[3.0, 1.0, 2.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, 6.0, 7.0, 8.0], [nan, 9.0, nan, 0.0]])
    ground_truth = torch.tensor([1.5, 2.0, 1.0, 1.0])
    # row 0: 3 and 2 beat 1.5 -> rank 3; row 1: all tie -> rank 1; row 2: all four beat -> rank 5 (absent, last);
    # row 3: only 9 beats, NaN candidates are not counted -> rank 2
    assert rank_of_ground_truth(candidates, ground_truth).tolist() == [3, 1, 5, 2]


def test_policy_difficulty_k2_and_tau():
    logps = torch.tensor([[-1.0, -2.0], [-1.0, -2.0], [-1.0, -2.0]])
    ground_truth = torch.tensor([-0.5, -1.5, -3.0])  # ranks 1, 2, 3
    # K=2, tau=0.5 -> k_tau=1: difficult iff rank > 1
    assert policy_difficulty(logps, ground_truth, tau=0.5).tolist() == [False, True, True]
    # tau=1 -> k_tau=2: difficult only when both rollouts beat the ground truth
    assert policy_difficulty(logps, ground_truth, tau=1.0).tolist() == [False, False, True]


def test_ground_truth_absent_from_rollouts_is_ranked_by_its_own_logp():
    # The ground truth need not be a rollout: its rank compares its log-prob with the rollouts'.
    logps = torch.tensor([[-1.0, -1.2, -5.0, -6.0]])
    assert policy_difficulty(logps, torch.tensor([-1.1]), tau=0.25).tolist() == [True]  # rank 2 > k_tau=1
    assert policy_difficulty(logps, torch.tensor([-0.9]), tau=0.25).tolist() == [False]  # rank 1


def test_reward_top_tau_and_nan_ground_truth():
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3], [0.9, 0.8, 0.2, 0.3], [0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0]])
    ground_truth = torch.tensor([0.5, 0.5, 0.1, nan])
    # K=4, tau=0.5 -> k_tau=2; ranks: 2, 3, 1 (ties), NaN -> never discriminable
    assert reward_top_tau(scores, ground_truth, tau=0.5).tolist() == [True, False, True, False]


def test_negatives_in_bottom_rho_hand_computed():
    rollouts = torch.tensor([[0.2, 0.4, 0.6, 0.8]])  # K=4, candidates = {gt=1.0} + rollouts, K+1 = 5
    ground_truth = torch.tensor([1.0])
    # rho=0.4 -> cutoff ceil(2.0)=2: a negative may be >= at most 2 candidates
    assert negatives_in_bottom_rho(rollouts, ground_truth, torch.tensor([[0.1, 0.3]]), 0.4).tolist() == [True]
    # 0.4 ties with a rollout: #{s_c <= 0.4} = 2 -> still bottom
    assert negatives_in_bottom_rho(rollouts, ground_truth, torch.tensor([[0.4]]), 0.4).tolist() == [True]
    # 0.5 is above 0.2 and 0.4 -> 2 -> fine; 0.6 -> 3 > 2 -> fails, and one failing negative fails the sample
    assert negatives_in_bottom_rho(rollouts, ground_truth, torch.tensor([[0.5]]), 0.4).tolist() == [True]
    assert negatives_in_bottom_rho(rollouts, ground_truth, torch.tensor([[0.1, 0.6]]), 0.4).tolist() == [False]
    # rho=1 -> cutoff 5: any finite negative passes, even one above the ground truth
    assert negatives_in_bottom_rho(rollouts, ground_truth, torch.tensor([[2.0]]), 1.0).tolist() == [True]
    # a NaN negative (unscorable) fails
    assert negatives_in_bottom_rho(rollouts, ground_truth, torch.tensor([[0.1, nan]]), 1.0).tolist() == [False]


def test_negatives_m0_is_true():
    rollouts = torch.zeros(3, 4)
    assert negatives_in_bottom_rho(rollouts, torch.zeros(3), torch.empty(3, 0), 0.1).tolist() == [True] * 3


def test_compute_gate_modes():
    difficulty = torch.tensor([True, True, False, False])
    discriminability = torch.tensor([True, False, True, False])
    assert compute_gate("adaptive", difficulty, discriminability).tolist() == [True, False, False, False]
    assert compute_gate("difficulty", difficulty, None).tolist() == [True, True, False, False]
    assert compute_gate("discriminability", None, discriminability).tolist() == [True, False, True, False]
    assert compute_gate("always", difficulty, None).tolist() == [True] * 4
    assert compute_gate("never", None, discriminability).tolist() == [False] * 4
    with pytest.raises(ValueError, match="difficulty"):
        compute_gate("adaptive", None, discriminability)
    with pytest.raises(ValueError, match="bogus"):
        compute_gate("bogus", difficulty, discriminability)


def test_tau_rho_one_edge_case():
    # tau=1 (k_tau=K): R1 fails only when every rollout beats the ground truth (rank K+1)
    scores = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    assert reward_top_tau(scores, torch.tensor([1.5, 0.0]), 1.0).tolist() == [True, True]
    assert reward_top_tau(scores, torch.tensor([-1.0, -1.0]), 1.0).tolist() == [False, False]


def _sequence_ids(groups):
    return torch.tensor([s for group in groups for s in group])


def test_cross_negatives_come_from_other_prompts_and_never_equal_the_ground_truth():
    # 3 prompts x K=4; sequence ids: prompt 1's rollouts include prompt 0's ground truth (id 0)
    rows = _sequence_ids([[10, 11, 12, 13], [0, 0, 21, 22], [30, 31, 32, 0]])
    ground_truths = torch.tensor([0, 5, 6])
    generator = torch.Generator().manual_seed(0)
    negatives = sample_cross_negatives(rows, ground_truths, num_generations=4, num_negatives=3, generator=generator)
    assert negatives.shape == (3, 3)
    for prompt in range(3):
        chosen = negatives[prompt].tolist()
        assert len(set(chosen)) == 3  # without replacement while enough candidates exist
        for row in chosen:
            assert row // 4 != prompt
            assert rows[row] != ground_truths[prompt]


def test_cross_negatives_are_seeded_and_leave_the_global_rng_alone():
    rows = torch.arange(16)
    ground_truths = torch.tensor([100, 101, 102, 103])
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = sample_cross_negatives(rows, ground_truths, 4, 2, torch.Generator().manual_seed(7))
    after = torch.rand(1)
    second = sample_cross_negatives(rows, ground_truths, 4, 2, torch.Generator().manual_seed(7))
    assert torch.equal(before, after)
    assert torch.equal(first, second)


def test_cross_negatives_with_too_few_candidates():
    # 2 prompts x K=2; prompt 0's only candidates are rows 2, 3 of prompt 1, one of which equals its ground truth
    rows = _sequence_ids([[1, 2], [0, 3]])
    ground_truths = torch.tensor([0, 3])
    negatives = sample_cross_negatives(rows, ground_truths, 2, 3, torch.Generator().manual_seed(0))
    assert negatives[0].tolist() == [3, 3, 3]  # the single valid candidate, reused
    assert set(negatives[1].tolist()) <= {0, 1}
    # no candidate at all -> -1 (no negative)
    negatives = sample_cross_negatives(_sequence_ids([[5, 5], [5, 5]]), torch.tensor([5, 5]), 2, 2, torch.Generator())
    assert negatives.tolist() == [[-1, -1], [-1, -1]]
    assert sample_cross_negatives(rows, ground_truths, 2, 0, torch.Generator()).shape == (2, 0)


def test_cross_negatives_shape_errors():
    with pytest.raises(ValueError, match="whole groups"):
        sample_cross_negatives(torch.arange(5), torch.tensor([0, 1]), 2, 1, torch.Generator())


def test_gate_end_to_end_hand_example():
    # One prompt, K=4, tau=0.25 (k_tau=1), rho=0.5 (cutoff ceil(2.5)=3), M=1
    logps = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
    scores = torch.tensor([[0.2, 0.3, 0.1, 0.0]])
    gt_logp, gt_score = torch.tensor([-2.5]), torch.tensor([0.9])
    difficulty = policy_difficulty(logps, gt_logp, 0.25)  # rank 3 > 1 -> uncertain
    r1 = reward_top_tau(scores, gt_score, 0.25)  # rank 1 <= 1
    r2 = negatives_in_bottom_rho(scores, gt_score, torch.tensor([[0.15]]), 0.5)  # #{<=0.15} = 2 <= 3
    assert compute_gate("adaptive", difficulty, r1 & r2).tolist() == [True]
    r2_fail = negatives_in_bottom_rho(scores, gt_score, torch.tensor([[0.25]]), 0.5)  # #{<=0.25} = 3 <= 3 -> ok
    assert r2_fail.tolist() == [True]
    r2_fail = negatives_in_bottom_rho(scores, gt_score, torch.tensor([[0.35]]), 0.5)  # 4 > 3
    assert compute_gate("adaptive", difficulty, r1 & r2_fail).tolist() == [False]
    assert math.isclose(top_fraction_cutoff(0.5, 5), 3)


# ---------------------------------------------------------------------------------------------------------------------
# Rewards, sequences and the whole decision (the functions the trainer and the analysis share)
# ---------------------------------------------------------------------------------------------------------------------


def test_aggregate_rewards_is_a_weighted_sum_where_nan_never_wins():
    rewards = torch.tensor([[1.0, 0.5], [nan, 0.5], [nan, nan], [0.0, nan]])
    aggregated = aggregate_rewards(rewards, torch.tensor([2.0, -1.0]))
    assert aggregated[:2].tolist() == [1.5, -0.5] and aggregated[3].item() == 0.0
    assert torch.isnan(aggregated[2])  # unscorable by every function
    assert aggregate_rewards(rewards.double(), torch.tensor([2.0, -1.0])).dtype == torch.float64


def test_sanitize_rewards_infinities_and_failures():
    warnings = []
    rewards = torch.tensor([[1.0, 0.5], [nan, 0.5], [math.inf, 0.2], [0.3, -math.inf]])
    clean = sanitize_rewards(rewards, [True, False], ["ranker", "length"], warnings.append)
    # inf -> no reward; the failing function's NaN takes the row's other rewards with it
    assert clean[0].tolist() == [1.0, 0.5]
    assert torch.isnan(clean[1:3]).all()
    assert clean[3, 0].item() == pytest.approx(0.3) and torch.isnan(clean[3, 1])
    assert len(warnings) == 1 and "2 infinite reward(s) from ['ranker', 'length']" in warnings[0]
    untouched = torch.tensor([[1.0, nan]])
    assert sanitize_rewards(untouched, [False, False]) is untouched  # no fault: the same tensor


def test_sequence_ids_share_an_id_iff_the_tokens_are_equal():
    rows, truths = sequence_ids([[1, 2], [3], [1, 2], [4]], [[3], [5, 6]])
    assert rows.tolist() == [0, 1, 0, 2] and truths.tolist() == [1, 3]


def test_reward_scoring_batch_passes_the_rows_context_as_trl_does():
    rows = [
        {"prompt": "p0", "completion": "gt0", "user_id": 0, "target_item": "a"},
        {"prompt": "p1", "completion": "gt1", "user_id": 1, "target_item": "b"},
    ]
    context, prompts, ids = reward_scoring_batch(rows, ["p0", "p1"], [[[1], [2, 3]], [[4]]])
    assert prompts == ["p0", "p0", "p1"] and ids == [[1], [2, 3], [4]]
    assert all(not set(ROLLOUT_KEYS) & set(row) for row in context)
    assert reward_kwargs(context) == {"user_id": [0, 0, 1], "target_item": ["a", "a", "b"]}
    context, _, _ = reward_scoring_batch(rows, ["p0", "p1"], [[[1]], [[2]]], context_columns=["user_id"])
    assert reward_kwargs(context) == {"user_id": [0, 1]}


def test_summed_sequence_logps_equals_one_forward_per_sequence():
    tokenizer = toy.make_tokenizer()
    model = toy.make_model(tokenizer).eval()
    prompt = tokenizer(text="history : next :")["input_ids"]
    sequences = [
        tokenizer(text=toy.ITEMS[i], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for i in (0, 5)
    ]
    sequences[1] = sequences[1][:2]  # different lengths: right padding is masked out
    prompt_ids = torch.tensor([prompt, prompt])
    with torch.no_grad():
        logps = summed_sequence_logps(
            model, prompt_ids, torch.ones_like(prompt_ids), sequences, tokenizer.pad_token_id
        )
        for row, ids in enumerate(sequences):
            logits = model(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
            expected = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(ids)[:, None]).sum()
            torch.testing.assert_close(logps[row], expected, rtol=1e-5, atol=1e-5)


def test_compute_gate_decisions_hand_computed():
    # P = 3 prompts, K = 4 rollouts, tau = 0.5 (k_tau = 2), rho = 0.4 (cutoff ceil(0.4 * 5) = 2), M = 1.
    is_ground_truth = torch.tensor([[False, False, True, False], [False] * 4, [False] * 4])
    rollout_logps = torch.tensor([[-1.0, -2.0, -0.5, -4.0], [-1.0, -2.0, -3.0, -4.0], [-5.0, -6.0, -7.0, -8.0]])
    ground_truth_logps = torch.tensor([-3.0, -2.5, -4.0])
    # rank_pi: p0: #{-1, -2} > -3 (the rollout equal to y* does not count) = 2 -> rank 3; p1: 2 -> 3; p2: 0 -> 1
    rollout_scores = torch.tensor([[0.1, 0.9, 0.8, 0.0], [0.5, 0.1, 0.2, 0.3], [0.1, nan, 0.2, 0.3]])
    ground_truth_scores = torch.tensor([0.8, 0.4, 0.9])
    negative_scores = torch.tensor([[0.0], [0.35], [-1.0]])
    # rank_R: p0: #{0.9} > 0.8 -> 2 (R1 true); p1: #{0.5} -> 2 (R1); p2: 1 (R1, the NaN rollout never wins)
    # R2: p0: #{c <= 0.0} = {0.0} = 1 <= 2; p1: #{0.4? no; 0.1, 0.2, 0.3} = 3 > 2 -> false; p2: 0 <= 2
    decisions = compute_gate_decisions(
        "adaptive",
        0.5,
        0.4,
        is_ground_truth,
        rollout_logps,
        ground_truth_logps,
        rollout_scores,
        ground_truth_scores,
        negative_scores,
    )
    assert decisions.rank_policy.tolist() == [3, 3, 1]
    assert decisions.difficulty.tolist() == [True, True, False]
    assert decisions.rank_reward.tolist() == [2, 2, 1]
    assert decisions.r1.tolist() == [True, True, True]
    assert decisions.r2.tolist() == [True, False, True]
    assert decisions.unscorable.tolist() == [False, False, True]  # p2 has a NaN rollout
    assert decisions.discriminability.tolist() == [True, False, False]
    assert decisions.gate.tolist() == [True, False, False]
    difficulty_only = compute_gate_decisions(
        "difficulty", 0.5, 0.4, is_ground_truth, rollout_logps, ground_truth_logps
    )
    assert difficulty_only.gate.tolist() == [True, True, False] and difficulty_only.r1 is None
    for mode, value in (("always", True), ("never", False)):
        assert compute_gate_decisions(mode, 0.5, 0.4, is_ground_truth).gate.tolist() == [value] * 3
    with pytest.raises(ValueError, match="needs the discriminability"):
        compute_gate_decisions("adaptive", 0.5, 0.4, is_ground_truth, rollout_logps, ground_truth_logps)


def test_valid_only_discriminability_ranks_among_valid_rollouts():
    scores = torch.tensor([[0.9, -1.0, -1.0, 0.2]])  # two invalid rollouts scored at the invalid reward
    valid = torch.tensor([[True, False, False, True]])
    truth = torch.tensor([0.5])
    # R1, τ = 0.5: among all 4 the cut-off is 2 and the truth ranks 2nd; among the 2 valid ones the cut-off is 1.
    assert reward_top_tau(scores, truth, 0.5).item() is True
    assert reward_top_tau(scores, truth, 0.5, valid).item() is False
    # R2, ρ = 0.5, a negative at 0.6: 4 of all 5 candidates lie at or below it (cut-off 3), 2 of the 3 counted (cut-off 2).
    negative = torch.tensor([[0.6]])
    assert negatives_in_bottom_rho(scores, truth, negative, 0.5).item() is False
    assert negatives_in_bottom_rho(scores, truth, negative, 0.5, valid).item() is True
    # With every rollout valid the option changes nothing.
    everything = torch.ones_like(valid)
    for tau in (0.25, 0.5, 1.0):
        assert torch.equal(reward_top_tau(scores, truth, tau, everything), reward_top_tau(scores, truth, tau))
        assert torch.equal(
            negatives_in_bottom_rho(scores, truth, negative, tau, everything),
            negatives_in_bottom_rho(scores, truth, negative, tau),
        )
    # No valid rollout: the truth is trivially first among the valid candidates.
    assert reward_top_tau(scores, truth, 0.25, torch.zeros_like(valid)).item() is True
    decisions = compute_gate_decisions(
        "discriminability",
        0.5,
        0.5,
        torch.zeros(1, 4, dtype=torch.bool),
        rollout_scores=scores,
        ground_truth_scores=truth,
        negative_scores=torch.tensor([[0.3]]),
        valid=valid,
    )
    assert decisions.r1.item() is False and decisions.r2.item() is True and decisions.gate.item() is False


def test_aggregate_rewards_ignores_zero_weight_functions():
    nan = float("nan")
    rewards = torch.tensor([[1.0, 0.5], [1.0, nan], [nan, 0.25]])
    gate = aggregate_rewards(rewards, torch.tensor([0.0, 1.0]))
    assert gate[0].item() == 0.5 and gate[2].item() == 0.25
    assert torch.isnan(gate[1])  # the ranker failed: a zero-weight hit reward does not make the row scorable
