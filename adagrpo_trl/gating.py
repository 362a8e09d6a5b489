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
"""
The AdaGRPO sample gate as pure tensor functions (no trainer state, no process group).

Shapes: P prompts (groups), K rollouts per prompt, M cross-query negatives per prompt. Every function works on the
*global* generation batch, so that the gate of a sample does not depend on how many processes share the batch.
NaN scores (a reward that could not score a candidate) never win a comparison: a NaN rollout counts neither above nor
below the ground truth, and a NaN ground-truth or negative score makes the sample non-discriminable.
"""

import math

import torch


def top_fraction_cutoff(fraction: float, num_items: int) -> int:
    """
    Returns ceil(`fraction` · `num_items`), robust to floating-point noise (`0.3 * 10` is 3, not 4).

    Args:
        fraction (`float`):
            Fraction in (0, 1].
        num_items (`int`):
            Number of items the fraction applies to.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    return max(1, math.ceil(round(fraction * num_items, 9)))


def rank_of_ground_truth(candidate_scores: torch.Tensor, ground_truth_scores: torch.Tensor) -> torch.Tensor:
    """
    Rank of the ground truth among the candidates: 1 + #{k : candidate_k > ground truth}. Ties favour the ground
    truth; NaN candidates are not counted.

    Args:
        candidate_scores (`torch.Tensor` of shape `(P, K)`):
            Scores (log-probs or rewards) of the K candidates of each prompt.
        ground_truth_scores (`torch.Tensor` of shape `(P,)`):
            Score of each prompt's ground truth.

    Returns:
        `torch.LongTensor` of shape `(P,)`, values in [1, K+1].
    """
    _check_2d(candidate_scores, ground_truth_scores)
    return 1 + (candidate_scores > ground_truth_scores.unsqueeze(1)).sum(dim=1)


def policy_difficulty(rollout_logps: torch.Tensor, ground_truth_logps: torch.Tensor, tau: float) -> torch.Tensor:
    """
    Policy-side difficulty D: the ground truth is *not* among the policy's top-τ rollouts,
    D = [rank_π(y*) > ceil(τ·K)] with rank_π(y*) = 1 + #{k : log π(o_k|x) > log π(y*|x)}.

    Args:
        rollout_logps (`torch.Tensor` of shape `(P, K)`):
            Summed log-probs of the K rollouts of each prompt.
        ground_truth_logps (`torch.Tensor` of shape `(P,)`):
            Summed log-prob of each prompt's ground truth.
        tau (`float`):
            τ in (0, 1].

    Returns:
        `torch.BoolTensor` of shape `(P,)`.
    """
    k_tau = top_fraction_cutoff(tau, rollout_logps.size(1))
    return rank_of_ground_truth(rollout_logps, ground_truth_logps) > k_tau


def reward_top_tau(rollout_scores: torch.Tensor, ground_truth_scores: torch.Tensor, tau: float) -> torch.Tensor:
    """
    R1: the reward puts the ground truth in its top-τ among the rollouts, rank_R(y*) = 1 + #{k : s_k > s*} ≤ ceil(τ·K).
    False where the ground truth's score is NaN.

    Args:
        rollout_scores (`torch.Tensor` of shape `(P, K)`):
            Aggregated reward of each rollout.
        ground_truth_scores (`torch.Tensor` of shape `(P,)`):
            Aggregated reward of each prompt's ground truth.
        tau (`float`):
            τ in (0, 1].

    Returns:
        `torch.BoolTensor` of shape `(P,)`.
    """
    k_tau = top_fraction_cutoff(tau, rollout_scores.size(1))
    ranks = rank_of_ground_truth(rollout_scores, ground_truth_scores)
    return (ranks <= k_tau) & ~torch.isnan(ground_truth_scores)


def negatives_in_bottom_rho(
    rollout_scores: torch.Tensor, ground_truth_scores: torch.Tensor, negative_scores: torch.Tensor, rho: float
) -> torch.Tensor:
    """
    R2: every cross-query negative n lies in the reward's bottom-ρ of the K+1 candidates (ground truth and rollouts),
    #{c ∈ {y*} ∪ rollouts : s_c ≤ s_n} ≤ ceil(ρ·(K+1)). True when there is no negative (M = 0); false when a negative's
    score is NaN.

    Args:
        rollout_scores (`torch.Tensor` of shape `(P, K)`):
            Aggregated reward of each rollout.
        ground_truth_scores (`torch.Tensor` of shape `(P,)`):
            Aggregated reward of each prompt's ground truth.
        negative_scores (`torch.Tensor` of shape `(P, M)`):
            Aggregated reward of each negative, scored in the context of the prompt it is a negative for.
        rho (`float`):
            ρ in (0, 1].

    Returns:
        `torch.BoolTensor` of shape `(P,)`.
    """
    _check_2d(rollout_scores, ground_truth_scores)
    if negative_scores.dim() != 2 or negative_scores.size(0) != rollout_scores.size(0):
        raise ValueError(
            f"negative_scores must have shape (P, M) with P={rollout_scores.size(0)}, got {tuple(negative_scores.shape)}."
        )
    if negative_scores.size(1) == 0:
        return torch.ones(rollout_scores.size(0), dtype=torch.bool, device=rollout_scores.device)
    candidates = torch.cat([ground_truth_scores.unsqueeze(1), rollout_scores], dim=1)  # (P, K+1)
    cutoff = top_fraction_cutoff(rho, candidates.size(1))
    # below[p, m] = #{c : s_c <= s_n(p, m)}
    below = (candidates.unsqueeze(1) <= negative_scores.unsqueeze(2)).sum(dim=2)
    ok = (below <= cutoff) & ~torch.isnan(negative_scores)
    return ok.all(dim=1)


def compute_gate(mode: str, difficulty: torch.Tensor | None, discriminability: torch.Tensor | None) -> torch.Tensor:
    """
    Combines the diagnostics into the binary gate α of `gate_mode`.

    Args:
        mode (`str`):
            `"adaptive"` (D ∧ R), `"always"` (1), `"never"` (0), `"difficulty"` (D) or `"discriminability"` (R).
        difficulty (`torch.Tensor` of shape `(P,)` or `None`):
            D, required by `"adaptive"` and `"difficulty"`.
        discriminability (`torch.Tensor` of shape `(P,)` or `None`):
            R, required by `"adaptive"` and `"discriminability"`.

    Returns:
        `torch.BoolTensor` of shape `(P,)`.
    """
    if mode in ("adaptive", "difficulty") and difficulty is None:
        raise ValueError(f"gate_mode={mode!r} needs the difficulty diagnostic.")
    if mode in ("adaptive", "discriminability") and discriminability is None:
        raise ValueError(f"gate_mode={mode!r} needs the discriminability diagnostic.")
    if mode == "adaptive":
        return difficulty & discriminability
    if mode == "difficulty":
        return difficulty.clone()
    if mode == "discriminability":
        return discriminability.clone()
    reference = difficulty if difficulty is not None else discriminability
    if reference is None:
        raise ValueError(f"gate_mode={mode!r}: pass at least one diagnostic to size the gate.")
    if mode == "always":
        return torch.ones_like(reference, dtype=torch.bool)
    if mode == "never":
        return torch.zeros_like(reference, dtype=torch.bool)
    raise ValueError(f"Unknown gate_mode {mode!r}.")


def sample_cross_negatives(
    row_sequence_ids: torch.Tensor,
    ground_truth_sequence_ids: torch.Tensor,
    num_generations: int,
    num_negatives: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """
    Draws M cross-query negatives per prompt: rollouts of *other* prompts of the same global generation batch whose
    sequence differs from the prompt's ground truth. Sampling is without replacement while enough candidates exist,
    with replacement otherwise; a prompt without any candidate gets `-1` entries (no negative).

    The draw consumes a fixed amount of `generator` randomness for given shapes, and never touches the global RNG.

    Args:
        row_sequence_ids (`torch.LongTensor` of shape `(N,)`):
            An id per rollout (N = P·K, rows of a group contiguous) such that two rollouts share an id iff their token
            sequences are equal.
        ground_truth_sequence_ids (`torch.LongTensor` of shape `(P,)`):
            The id of each prompt's ground-truth sequence, in the same id space.
        num_generations (`int`):
            K.
        num_negatives (`int`):
            M.
        generator (`torch.Generator`):
            A CPU generator, seeded identically on every process.

    Returns:
        `torch.LongTensor` of shape `(P, M)`: global row indices of the negatives, or `-1`.
    """
    num_rows = row_sequence_ids.numel()
    if num_rows % num_generations != 0:
        raise ValueError(f"{num_rows} rollouts do not form whole groups of num_generations={num_generations}.")
    num_prompts = num_rows // num_generations
    if ground_truth_sequence_ids.numel() != num_prompts:
        raise ValueError(f"Expected {num_prompts} ground truths, got {ground_truth_sequence_ids.numel()}.")
    row_sequence_ids = row_sequence_ids.cpu()
    ground_truth_sequence_ids = ground_truth_sequence_ids.cpu()
    if num_negatives == 0:
        return torch.empty(num_prompts, 0, dtype=torch.long)

    row_group = torch.arange(num_rows) // num_generations
    valid = (row_group.unsqueeze(0) != torch.arange(num_prompts).unsqueeze(1)) & (
        row_sequence_ids.unsqueeze(0) != ground_truth_sequence_ids.unsqueeze(1)
    )  # (P, N)
    keys = torch.rand(num_prompts, num_rows, generator=generator)
    keys = keys.masked_fill(~valid, float("inf"))
    num_valid = valid.sum(dim=1)
    take = min(num_negatives, num_rows)
    chosen = keys.topk(take, dim=1, largest=False).indices  # (P, take): a random permutation of the valid rows first
    if take < num_negatives:
        chosen = torch.cat([chosen, chosen.new_zeros(num_prompts, num_negatives - take)], dim=1)
    # With fewer valid rows than M, cycle through the drawn valid rows (sampling with replacement, deterministic).
    position = torch.arange(num_negatives).unsqueeze(0) % num_valid.clamp(min=1).unsqueeze(1)
    negatives = chosen.gather(1, position)
    return negatives.masked_fill((num_valid == 0).unsqueeze(1), -1)


def _check_2d(candidate_scores: torch.Tensor, ground_truth_scores: torch.Tensor) -> None:
    if candidate_scores.dim() != 2:
        raise ValueError(f"candidate scores must have shape (P, K), got {tuple(candidate_scores.shape)}.")
    if ground_truth_scores.shape != candidate_scores.shape[:1]:
        raise ValueError(
            f"ground-truth scores must have shape ({candidate_scores.size(0)},), got {tuple(ground_truth_scores.shape)}."
        )
