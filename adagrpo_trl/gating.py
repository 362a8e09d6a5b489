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
The AdaGRPO sample gate as pure functions (no trainer state, no process group), shared by
[`~adagrpo_trl.AdaGRPOTrainer`] and the stratified analysis ([`~adagrpo_trl.analysis.stratified_analysis`]), so that
the analysis cannot drift from what training does. The definitions are in `docs/method.md#definitions`.

Shapes: P prompts (groups), K rollouts per prompt, M cross-query negatives per prompt. Every function works on the
*global* generation batch, so that the gate of a sample does not depend on how many processes share the batch.
NaN scores (a reward that could not score a candidate) never win a comparison: a NaN rollout counts neither above nor
below the ground truth, and a NaN ground-truth or negative score makes the sample non-discriminable.

The pipeline, in the order both callers run it:

1. [`sanitize_rewards`] and [`aggregate_rewards`]: per-function rewards → one NaN-aware score per candidate;
2. [`sequence_ids`]: which rollouts are the ground truth (they tie with it) and which may serve as negatives;
3. [`sample_cross_negatives`], then [`reward_scoring_batch`] / [`reward_kwargs`]: the ground truths and negatives are
   scored in their prompt's context, with the keyword arguments TRL gives reward functions;
4. [`summed_sequence_logps`]: log π of rollouts and ground truths (untempered);
5. [`compute_gate_decisions`]: ranks, D, R1, R2, the unscorable prompts and the gate α.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .utils import target_token_logps


# Row keys TRL's `_calculate_rewards` does not pass to reward functions: the rollout itself, not its context.
ROLLOUT_KEYS = ("prompt", "completion", "completion_ids")

# Keyword arguments TRL passes to every reward function besides the dataset columns (`environments` only with them).
TRL_REWARD_KWARGS = (
    "prompts",
    "completions",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
    "environments",
)


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


def _row_cutoffs(fraction: float, counts: torch.Tensor) -> torch.Tensor:
    """ceil(`fraction` · count) per row, at least 1 (the vectorised [`top_fraction_cutoff`])."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    scaled = torch.round(fraction * counts.double() * 1e9) / 1e9
    return torch.ceil(scaled).long().clamp(min=1)


def reward_top_tau(
    rollout_scores: torch.Tensor,
    ground_truth_scores: torch.Tensor,
    tau: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    R1: the reward puts the ground truth in its top-τ among the rollouts, rank_R(y*) = 1 + #{k : s_k > s*} ≤ ceil(τ·K).
    False where the ground truth's score is NaN. With `valid`, only valid rollouts are candidates and the cut-off is
    ceil(τ·K_valid) (an invalid rollout, scored at the invalid reward, says nothing about the ranker).

    Args:
        rollout_scores (`torch.Tensor` of shape `(P, K)`):
            Aggregated reward of each rollout.
        ground_truth_scores (`torch.Tensor` of shape `(P,)`):
            Aggregated reward of each prompt's ground truth.
        tau (`float`):
            τ in (0, 1].
        valid (`torch.BoolTensor` of shape `(P, K)`, *optional*):
            Which rollouts are catalog items; `None` counts every rollout.

    Returns:
        `torch.BoolTensor` of shape `(P,)`.
    """
    if valid is None:
        k_tau = top_fraction_cutoff(tau, rollout_scores.size(1))
        ranks = rank_of_ground_truth(rollout_scores, ground_truth_scores)
        return (ranks <= k_tau) & ~torch.isnan(ground_truth_scores)
    k_tau = _row_cutoffs(tau, valid.sum(dim=1))
    ranks = rank_of_ground_truth(rollout_scores.masked_fill(~valid, -torch.inf), ground_truth_scores)
    return (ranks <= k_tau) & ~torch.isnan(ground_truth_scores)


def negatives_in_bottom_rho(
    rollout_scores: torch.Tensor,
    ground_truth_scores: torch.Tensor,
    negative_scores: torch.Tensor,
    rho: float,
    valid: torch.Tensor | None = None,
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
        valid (`torch.BoolTensor` of shape `(P, K)`, *optional*):
            Which rollouts are catalog items: with it, the candidates are the ground truth and the valid rollouts and
            the cut-off is ceil(ρ·(K_valid+1)) (mark invalid negatives `-inf`: they pass, like a missing one).

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
    if valid is None:
        cutoff = top_fraction_cutoff(rho, candidates.size(1))
        counted = torch.ones_like(candidates, dtype=torch.bool)
    else:
        counted = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
        cutoff = _row_cutoffs(rho, counted.sum(dim=1)).unsqueeze(1)
    # below[p, m] = #{counted c : s_c <= s_n(p, m)}
    below = ((candidates.unsqueeze(1) <= negative_scores.unsqueeze(2)) & counted.unsqueeze(1)).sum(dim=2)
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


# ---------------------------------------------------------------------------------------------------------------------
# Rewards: sanitising, aggregation, the scoring batch of ground truths and negatives
# ---------------------------------------------------------------------------------------------------------------------


def sanitize_rewards(
    rewards_per_func: torch.Tensor,
    none_means_failure: Sequence[bool],
    reward_func_names: Sequence[str] | None = None,
    warn: Callable[[str], Any] | None = None,
) -> torch.Tensor:
    """
    The `(N, num_funcs)` rewards as GRPO and the gate may use them. An infinite reward (a reward function's inf, or a
    float64 score beyond float32's range) becomes NaN, TRL's "no reward". A row that a reward function reporting its
    failures as `None` (`none_means_failure`, e.g. [`~adagrpo_trl.RankerReward`] under `on_failure="gate_out"`) could
    not score loses its other rewards too: it is then unscorable, so TRL gives it zero advantage and keeps it out of its
    group's baseline, and the gate does not trust its prompt to the reward, instead of letting the other functions alone
    score it. Without a fault, the tensor is returned unchanged (the same object).

    Args:
        rewards_per_func (`torch.Tensor` of shape `(N, F)`):
            One column per reward function; NaN where a function returned `None`.
        none_means_failure (`Sequence[bool]`):
            Per function: whether its `None` means a failure (the function's `none_means_failure` attribute).
        reward_func_names (`Sequence[str]`, *optional*):
            Per function: its name, for the warning.
        warn (`Callable[[str], Any]`, *optional*):
            Called with a message when some rewards are infinite (e.g. `logger.warning`).

    Returns:
        `torch.Tensor` of shape `(N, F)`.
    """
    infinite = torch.isinf(rewards_per_func)
    if infinite.any():
        if warn is not None:
            names = reward_func_names or [str(i) for i in range(rewards_per_func.size(1))]
            bad_names = [name for name, bad in zip(names, infinite.any(dim=0).tolist(), strict=True) if bad]
            warn(
                f"{int(infinite.sum())} infinite reward(s) from {bad_names}: treated as missing (None), never as a "
                "reward."
            )
        rewards_per_func = rewards_per_func.masked_fill(infinite, torch.nan)
    failure_columns = [i for i, failure in enumerate(none_means_failure) if failure]
    if failure_columns:
        failed = torch.isnan(rewards_per_func[:, failure_columns]).any(dim=1, keepdim=True)
        if failed.any():
            rewards_per_func = rewards_per_func.masked_fill(failed, torch.nan)
    return rewards_per_func


def aggregate_rewards(rewards_per_func: torch.Tensor, reward_weights: torch.Tensor) -> torch.Tensor:
    """
    The weighted sum of the reward functions that GRPO uses (or the gate's `gate_reward_weights`), NaN-aware: a NaN
    reward is left out of the sum (never wins), and the score is NaN only where every function of nonzero weight
    returned `None` (a function of weight 0 takes no part, so its value can neither fill in for a failed one nor
    make a row unscorable).

    Args:
        rewards_per_func (`torch.Tensor` of shape `(N, F)`):
            Sanitised rewards ([`sanitize_rewards`]).
        reward_weights (`torch.Tensor` of shape `(F,)`):
            GRPO's `reward_weights`, or the gate's `gate_reward_weights`.

    Returns:
        `torch.Tensor` of shape `(N,)`, in the dtype of `rewards_per_func`.
    """
    weights = reward_weights.to(device=rewards_per_func.device, dtype=rewards_per_func.dtype)
    used = weights != 0
    rewards = rewards_per_func[:, used]
    scores = (rewards * weights[used].unsqueeze(0)).nansum(dim=1)
    scores[torch.isnan(rewards).all(dim=1)] = torch.nan
    return scores


def reward_scoring_batch(
    rows: Sequence[dict[str, Any]],
    prompts: Sequence[Any],
    candidates: Sequence[Sequence[Sequence[int]]],
    context_columns: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], list[Any], list[list[int]]]:
    """
    The batch that scores candidates (ground truths, negatives, rollouts) in their sample's context: one entry per
    candidate, with the sample's context row, its prompt and the candidate's token ids. The context row is what TRL's
    reward call sees of a dataset row: every column except [`ROLLOUT_KEYS`] (or exactly `context_columns`).

    Args:
        rows (`Sequence[dict]`):
            The dataset row of each sample.
        prompts (`Sequence`):
            The prompt of each sample.
        candidates (`Sequence[Sequence[Sequence[int]]]`):
            For each sample, the token ids of the candidates to score in its context, in order.
        context_columns (`Sequence[str]`, *optional*):
            The columns to pass; by default every column except [`ROLLOUT_KEYS`], as TRL.

    Returns:
        `tuple` of the context rows, the prompts and the completion ids, one entry per candidate. Pass them to TRL's
        `_calculate_rewards`, or call the reward functions with [`reward_kwargs`].
    """
    context_rows, row_prompts, completion_ids = [], [], []
    for row, prompt, sample_candidates in zip(rows, prompts, candidates, strict=True):
        if context_columns is None:
            context = {key: value for key, value in row.items() if key not in ROLLOUT_KEYS}
        else:
            context = {column: row[column] for column in context_columns}
        for ids in sample_candidates:
            context_rows.append(context)
            row_prompts.append(prompt)
            completion_ids.append(list(ids))
    return context_rows, row_prompts, completion_ids


def reward_kwargs(context_rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """
    The dataset-column keyword arguments of a reward call, built as TRL's `GRPOTrainer._calculate_rewards` builds them:
    `{column: [row[column] for row in rows]}` over the columns of the first row, minus [`ROLLOUT_KEYS`].

    Args:
        context_rows (`Sequence[dict]`):
            One row per completion (see [`reward_scoring_batch`]).

    Returns:
        `dict[str, list]`.
    """
    if not context_rows:
        return {}
    keys = [key for key in context_rows[0] if key not in ROLLOUT_KEYS]
    return {key: [row[key] for row in context_rows] for key in keys}


# ---------------------------------------------------------------------------------------------------------------------
# Sequences: identity and log-probs
# ---------------------------------------------------------------------------------------------------------------------


def sequence_ids(
    rollouts: Sequence[Sequence[int]], ground_truths: Sequence[Sequence[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Ids in one space for the rollouts and the ground truths: two sequences share an id iff their tokens are equal.
    Feeds [`sample_cross_negatives`] and the `is_ground_truth` mask of [`compute_gate_decisions`].

    Args:
        rollouts (`Sequence[Sequence[int]]`):
            The N = P·K rollouts, rows of a group contiguous.
        ground_truths (`Sequence[Sequence[int]]`):
            The P ground truths.

    Returns:
        `tuple[torch.LongTensor, torch.LongTensor]` of shapes `(N,)` and `(P,)`.
    """
    index: dict[tuple[int, ...], int] = {}
    row_ids = torch.tensor([index.setdefault(tuple(ids), len(index)) for ids in rollouts], dtype=torch.long)
    ground_truth_ids = torch.tensor(
        [index.setdefault(tuple(ids), len(index)) for ids in ground_truths], dtype=torch.long
    )
    return row_ids, ground_truth_ids


def summed_sequence_logps(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    pad_token_id: int,
) -> torch.Tensor:
    """
    Summed log π(sequence | prompt) of each row, with the model's plain forward (untempered, no fused head), in float32:
    the log-probs of the difficulty test (`docs/method.md#definitions`). One forward over all rows; chunk the rows
    yourself.

    Args:
        model:
            A causal LM accepting `logits_to_keep`.
        prompt_ids, prompt_mask (`torch.Tensor` of shape `(B, P)`):
            Left-padded prompts, one per sequence.
        sequences (`Sequence[Sequence[int]]`):
            B token-id lists (EOS included where it belongs to the sequence).
        pad_token_id (`int`):
            Right padding of the sequences (masked out).

    Returns:
        `torch.Tensor` of shape `(B,)`, float32, on the prompts' device.
    """
    device = prompt_ids.device
    length = max(len(ids) for ids in sequences)
    targets = torch.tensor([list(ids) + [pad_token_id] * (length - len(ids)) for ids in sequences], dtype=torch.long)
    target_mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids in sequences], dtype=torch.long)
    targets, target_mask = targets.to(device), target_mask.to(device)
    token_logps = target_token_logps(model, prompt_ids, prompt_mask, targets, target_mask)
    return (token_logps * target_mask).sum(dim=1).float()


# ---------------------------------------------------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class GateDecisions:
    """
    The output of [`compute_gate_decisions`], per prompt (shape `(P,)` each). A diagnostic whose inputs were not given
    is `None`.

    Args:
        gate (`torch.BoolTensor`):
            α of the gate mode.
        rank_policy (`torch.LongTensor` or `None`):
            rank_π(y*) among the rollouts (a rollout equal to y* not counted against it).
        difficulty (`torch.BoolTensor` or `None`):
            D = [rank_π(y*) > k_τ].
        rank_reward (`torch.LongTensor` or `None`):
            rank_R(y*) among the rollouts.
        r1, r2 (`torch.BoolTensor` or `None`):
            R1 and R2.
        unscorable (`torch.BoolTensor` or `None`):
            A score is missing (NaN) among the ground truth, the rollouts or the negatives.
        discriminability (`torch.BoolTensor` or `None`):
            R = R1 ∧ R2 ∧ ¬unscorable.
    """

    gate: torch.Tensor
    rank_policy: torch.Tensor | None = None
    difficulty: torch.Tensor | None = None
    rank_reward: torch.Tensor | None = None
    r1: torch.Tensor | None = None
    r2: torch.Tensor | None = None
    unscorable: torch.Tensor | None = None
    discriminability: torch.Tensor | None = None


def compute_gate_decisions(
    mode: str,
    tau: float,
    rho: float,
    is_ground_truth: torch.Tensor,
    rollout_logps: torch.Tensor | None = None,
    ground_truth_logps: torch.Tensor | None = None,
    rollout_scores: torch.Tensor | None = None,
    ground_truth_scores: torch.Tensor | None = None,
    negative_scores: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> GateDecisions:
    """
    The gate of every prompt of a (global) generation batch from its log-probs and reward scores: the one definition
    used by [`~adagrpo_trl.AdaGRPOTrainer`] and the stratified analysis (`docs/method.md#definitions`).

    A rollout equal to the ground truth ties with it: it is not counted against the ground truth (neither by the policy
    nor by R1), so float noise between two forwards (or two reward calls) of the same sequence cannot outrank it. A
    prompt with a NaN score among its ground truth, rollouts or negatives is *unscorable*: not discriminable, whatever
    R1 and R2 say on the other scores.

    Args:
        mode (`str`):
            The gate mode (`"adaptive"`, `"always"`, `"never"`, `"difficulty"`, `"discriminability"`).
        tau (`float`):
            τ, for D and R1.
        rho (`float`):
            ρ, for R2.
        is_ground_truth (`torch.BoolTensor` of shape `(P, K)`):
            Which rollouts equal their prompt's ground truth (see [`sequence_ids`]).
        rollout_logps, ground_truth_logps (`torch.Tensor` of shapes `(P, K)` and `(P,)`, *optional*):
            Summed untempered log π; needed by `"adaptive"` and `"difficulty"`.
        rollout_scores, ground_truth_scores, negative_scores (`torch.Tensor` of shapes `(P, K)`, `(P,)`, `(P, M)`, *optional*):
            Aggregated rewards ([`aggregate_rewards`]); a missing negative is `-inf`. Needed by `"adaptive"` and
            `"discriminability"`.
        valid (`torch.BoolTensor` of shape `(P, K)`, *optional*):
            Which rollouts are catalog items (`gate_candidates="valid"`): R1 and R2 then rank among the valid
            rollouts only, with cut-offs over the valid count (`docs/method.md#definitions`).

    Returns:
        [`GateDecisions`].

    Example:

    ```python
    >>> import torch
    >>> decisions = compute_gate_decisions(
    ...     "adaptive", tau=0.5, rho=0.5, is_ground_truth=torch.zeros(1, 2, dtype=torch.bool),
    ...     rollout_logps=torch.tensor([[-1.0, -2.0]]), ground_truth_logps=torch.tensor([-3.0]),
    ...     rollout_scores=torch.tensor([[0.1, 0.2]]), ground_truth_scores=torch.tensor([0.9]),
    ...     negative_scores=torch.tensor([[0.0]]),
    ... )
    >>> decisions.gate
    tensor([True])
    ```
    """
    decisions = GateDecisions(gate=torch.empty(0, dtype=torch.bool))
    if rollout_logps is not None and ground_truth_logps is not None:
        masked = rollout_logps.masked_fill(is_ground_truth, -torch.inf)
        decisions.rank_policy = rank_of_ground_truth(masked, ground_truth_logps)
        decisions.difficulty = policy_difficulty(masked, ground_truth_logps, tau)
    if rollout_scores is not None and ground_truth_scores is not None and negative_scores is not None:
        masked = rollout_scores.masked_fill(is_ground_truth, -torch.inf)
        decisions.rank_reward = rank_of_ground_truth(masked, ground_truth_scores)
        decisions.r1 = reward_top_tau(masked, ground_truth_scores, tau, valid)
        decisions.r2 = negatives_in_bottom_rho(rollout_scores, ground_truth_scores, negative_scores, rho, valid)
        counted_rollouts = rollout_scores if valid is None else rollout_scores.masked_fill(~valid, 0.0)
        decisions.unscorable = (
            torch.isnan(ground_truth_scores)
            | torch.isnan(counted_rollouts).any(dim=1)
            | torch.isnan(negative_scores).any(dim=1)
        )
        decisions.discriminability = decisions.r1 & decisions.r2 & ~decisions.unscorable
    if decisions.difficulty is None and decisions.discriminability is None and mode in ("always", "never"):
        decisions.gate = torch.full((is_ground_truth.size(0),), mode == "always", dtype=torch.bool)
    else:
        decisions.gate = compute_gate(mode, decisions.difficulty, decisions.discriminability)
    return decisions
