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
The stratified analysis behind AdaGRPO: where does the ranker's correction of the policy help?

For every sample of a split, the policy's K trie-constrained beams (the "policy order") and the ground truth y* form
the candidate set C = beams ∪ {y*}. The ground truth's rank in C by the policy's untempered log-prob (rank_π) and by
the reward (rank_R) give the diagnostics of the gate (`docs/method.md#definitions`), computed by the same functions as
the trainer's gate ([`~adagrpo_trl.gating.compute_gate_decisions`]), and re-ranking C by the reward measures the
ranker's correction (rank_π − rank_R, positive when the ranker moves the ground truth up). Samples are bucketed by
policy uncertainty × ranker discriminability, where the paper finds that the correction helps only in the
uncertain-and-discriminative cell, which is exactly the cell AdaGRPO's gate admits.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .catalog import ItemCatalog
from .constrained import (
    build_generation_config,
    generate_with_shared_prefill,
    isolated_generation_config,
    make_trie_processor_factory,
)
from .gating import (
    TRL_REWARD_KWARGS,
    aggregate_rewards,
    compute_gate_decisions,
    reward_kwargs,
    reward_scoring_batch,
    sample_cross_negatives,
    sanitize_rewards,
    sequence_ids,
    summed_sequence_logps,
    top_fraction_cutoff,
)
from .utils import cut_after_eos


COARSE_POLICY_BUCKETS = ("certain", "uncertain")
COARSE_RANKER_BUCKETS = ("discriminative", "non-discriminative")

# Keyword arguments TRL passes to every reward function besides the dataset columns (kept for old imports).
_TRL_REWARD_KWARGS = TRL_REWARD_KWARGS


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


@torch.no_grad()
def stratified_analysis(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    catalog: ItemCatalog,
    reward_func: Callable[..., Sequence[float | None]] | Sequence[Callable[..., Sequence[float | None]]],
    num_generations: int = 20,
    tau: float = 0.25,
    rho: float = 0.5,
    num_cross_negatives: int = 0,
    reward_weights: Sequence[float] | None = None,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 16,
    max_samples: int | None = None,
    prompt_column: str = "prompt",
    completion_column: str = "completion",
    context_columns: Sequence[str] | None = None,
    seed: int = 0,
    return_per_sample: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """
    Buckets the samples of a split by the policy's uncertainty about the ground truth and the reward's ability to
    discriminate it, and reports per bucket how much re-ranking the policy's beams by the reward moves the ground truth.

    For each sample (prompt x, ground truth y*):

    1. The policy's K = `num_generations` trie-constrained beams o_1..o_K (beam search ranks by summed log-prob, no
       length penalty).
    2. ℓ_k = log π(o_k | x) and ℓ* = log π(y* | x), summed over the item tokens and EOS with a plain (untempered)
       forward, as [`~adagrpo_trl.AdaGRPOTrainer`]'s gate computes them. rank_π(y*) = 1 + #{k : ℓ_k > ℓ*}; a beam equal
       to y* is not counted against it. y* may be absent from the beams.
    3. s_k and s* = the reward of each beam and of y*, scored in the sample's context (the reward functions are called
       as TRL calls them: `reward_func(prompts=..., completions=..., completion_ids=..., **context_columns)`, one row
       per candidate; several functions are combined by `reward_weights` as in GRPO). rank_R(y*) = 1 + #{k : s_k > s*}.
    4. With k_τ = ceil(τ·K): the policy is *uncertain* if rank_π > k_τ (D of the gate) and the reward is
       *discriminative* if rank_R ≤ k_τ (R1) and, with `num_cross_negatives` M > 0, every one of M cross-query negatives
       (beams of other samples of the same batch, seeded) lies in the reward's bottom-ρ (R2). R = R1 ∧ R2; the gate of
       `gate_mode="adaptive"` admits D ∧ R.

    Ranks are taken within C = beams ∪ {y*}: "before" orders C by the policy's log-prob (rank_π), "after" by the reward
    (rank_R), and the *ranker correction* is before − after (positive: the reward moves the ground truth up).
    `hr@k/policy` and `hr@k/reranked` are the shares of samples with the ground truth in the top k of C in each order.
    Because y* is always in C, these are diagnostics of the orderings, not the HR of a deployed recommender (see
    [`~adagrpo_trl.evaluation.evaluate_recommendations`]); `gt_in_beams` says how often the policy itself found y*.

    Args:
        model ([`~transformers.PreTrainedModel`]):
            The policy (a causal LM with the SID tokens).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Its tokenizer; prompts are plain text, tokenised as TRL tokenises them.
        dataset ([`~datasets.Dataset`] or `Sequence[dict]`):
            Rows with `prompt_column`, `completion_column` (the ground-truth SID string) and the context columns the
            reward needs (`user_id`, `history`, `target_item`, ...).
        catalog ([`~adagrpo_trl.ItemCatalog`]):
            The items; beams are constrained to them.
        reward_func (`Callable` or `Sequence[Callable]`):
            TRL-style reward function(s), e.g. a [`~adagrpo_trl.RankerReward`]. `None` scores become NaN: a NaN
            beam never outranks y*, a NaN y* makes the sample non-discriminative and puts y* last after re-ranking.
        num_generations (`int`, *optional*, defaults to `20`):
            K, the beams per sample (at most the catalog size).
        tau (`float`, *optional*, defaults to `0.25`):
            τ of the gate.
        rho (`float`, *optional*, defaults to `0.5`):
            ρ of the gate (used only with `num_cross_negatives > 0`).
        num_cross_negatives (`int`, *optional*, defaults to `0`):
            M of the gate; `0` makes R = R1.
        reward_weights (`Sequence[float]`, *optional*):
            One weight per reward function; defaults to 1 each.
        ks (`Sequence[int]`, *optional*, defaults to `(1, 5, 10)`):
            Cut-offs of the within-C hit rates; those above K + 1 are dropped.
        batch_size (`int`, *optional*, defaults to `16`):
            Prompts per beam-search call; also the pool of cross-query negatives.
        max_samples (`int`, *optional*):
            Analyse only the first `max_samples` rows.
        prompt_column, completion_column (`str`, *optional*):
            Column names.
        context_columns (`Sequence[str]`, *optional*):
            Columns passed to the reward; defaults to every column except the prompt and the completion (as TRL).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the cross-query negatives.
        return_per_sample (`bool`, *optional*, defaults to `False`):
            Add `per_sample`: per-sample lists (`rank_policy`, `rank_reward`, `in_beams`, `uncertain`,
            `discriminative`, ...).
        show_progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar.

    Returns:
        `dict` (JSON-friendly) with the settings, `summary` (statistics over all samples and the rates of the gate's
        diagnostics), `buckets` (the 2×2 table: `policy` in {"certain", "uncertain"} × `ranker` in {"discriminative",
        "non-discriminative"}) and `fine_buckets` (`policy_rank` in {"1", "2-k_τ", ">k_τ", "absent"} × `ranker_rank` in
        {"1", "2-k_τ", ">k_τ"}, where "absent" means y* is not among the beams). Each bucket row has `count`, `share`,
        `rank_before`, `rank_after`, `correction`, `hr@k/policy`, `hr@k/reranked`, `gt_in_beams` (means over the
        bucket; `None` for an empty bucket). Render it with [`format_stratified_analysis`].

    Example:

    ```python
    from adagrpo_trl import RankerReward
    from adagrpo_trl.analysis import format_stratified_analysis, stratified_analysis

    reward = RankerReward(ranker, catalog)
    result = stratified_analysis(model, tokenizer, prepared.datasets["validation"], catalog, reward, tau=0.25)
    print(format_stratified_analysis(result))
    ```
    """
    reward_funcs = list(reward_func) if isinstance(reward_func, (list, tuple)) else [reward_func]
    if not reward_funcs:
        raise ValueError("stratified_analysis needs at least one reward function.")
    for func in reward_funcs:
        if isinstance(func, torch.nn.Module) or not callable(func):
            raise TypeError(
                f"reward_func must be TRL-style callable(s) (prompts=, completions=, completion_ids=, **columns), got "
                f"{type(func).__name__}; wrap reward models in a function."
            )
    weights = torch.ones(len(reward_funcs)) if reward_weights is None else torch.tensor(reward_weights, dtype=float)
    if weights.numel() != len(reward_funcs):
        raise ValueError(f"Got {weights.numel()} reward_weights for {len(reward_funcs)} reward functions.")
    if num_generations < 1 or num_generations > len(catalog):
        raise ValueError(f"num_generations must be in [1, catalog size={len(catalog)}], got {num_generations}.")
    if num_cross_negatives < 0:
        raise ValueError(f"num_cross_negatives must be >= 0, got {num_cross_negatives}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer has no eos_token_id; every item ends with EOS.")
    k_tau = top_fraction_cutoff(tau, num_generations)
    top_fraction_cutoff(rho, num_generations + 1)  # validates rho
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= num_generations + 1})

    rows = list(dataset)
    if max_samples is not None:
        rows = rows[:max_samples]
    if not rows:
        raise ValueError("stratified_analysis got an empty dataset.")
    for index, row in enumerate(rows):
        for column in (prompt_column, completion_column):
            if column not in row:
                raise ValueError(f"Row {index} has no column {column!r} (columns: {sorted(row)}).")
        if not isinstance(row[prompt_column], str):
            raise ValueError(
                f"Row {index}: stratified_analysis supports text prompts, got {type(row[prompt_column])}."
            )
        if not catalog.is_valid(row[completion_column]):
            raise ValueError(f"Row {index}: ground truth {row[completion_column]!r} is not a catalog SID.")
    if context_columns is None:
        context_columns = [key for key in rows[0] if key not in (prompt_column, completion_column, "completion_ids")]
    for column in context_columns:
        if column in TRL_REWARD_KWARGS:
            raise ValueError(f"Context column {column!r} clashes with a keyword TRL passes to reward functions.")
        if column not in rows[0]:
            raise ValueError(f"Context column {column!r} is not in the dataset (columns: {sorted(rows[0])}).")

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    factory = make_trie_processor_factory(catalog, tokenizer)
    config = build_generation_config(
        max_new_tokens=catalog.num_levels + 1, num_beams=num_generations, do_sample=False, tokenizer=tokenizer
    )
    generator = torch.Generator().manual_seed(seed)
    eos = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    per_sample: dict[str, list] = {
        name: []
        for name in (
            "rank_policy",
            "rank_reward",
            "in_beams",
            "uncertain",
            "r1",
            "r2",
            "discriminative",
            "unscorable",
            "gate",
        )
    }
    try:
        batches = range(0, len(rows), batch_size)
        for start in tqdm(batches, desc="stratified analysis", disable=not show_progress, leave=False):
            batch = rows[start : start + batch_size]
            prompts = [row[prompt_column] for row in batch]
            encoded = tokenizer(text=prompts, return_tensors="pt", padding=True, padding_side="left")
            input_ids, attention_mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
            with isolated_generation_config(model):
                sequences = generate_with_shared_prefill(
                    model, input_ids, attention_mask, config, [factory(input_ids.size(1))]
                )
            beams = cut_after_eos(sequences[:, input_ids.size(1) :], eos)
            truths = [
                tokenizer(text=row[completion_column], add_special_tokens=False)["input_ids"] + [eos] for row in batch
            ]
            num_prompts, group = len(batch), num_generations

            # Policy: summed untempered log-probs of every beam and of the ground truth.
            candidates = [
                beams[p * group : (p + 1) * group] + [truths[p]] for p in range(num_prompts)
            ]  # (P, K+1) id lists
            flat = [ids for group_ids in candidates for ids in group_ids]
            row_prompt = torch.arange(num_prompts, device=device).repeat_interleave(group + 1)
            logps = _sequence_logps(
                model, input_ids[row_prompt], attention_mask[row_prompt], flat, pad_id, device
            ).view(num_prompts, group + 1)
            same_as_truth = torch.tensor(
                [[ids == truths[p] for ids in beams[p * group : (p + 1) * group]] for p in range(num_prompts)],
                dtype=torch.bool,
            ).view(num_prompts, group)
            in_beams = same_as_truth.any(dim=1)

            # Cross-query negatives: beams of other prompts of this batch, never equal to the ground truth.
            row_ids, truth_ids = sequence_ids(beams, truths)
            negatives = sample_cross_negatives(row_ids, truth_ids, group, num_cross_negatives, generator)

            # Reward: every beam, the ground truth and the negatives, in the sample's context.
            scoring_batch = reward_scoring_batch(
                batch,
                prompts,
                [candidates[p] + [beams[n] for n in negatives[p].tolist() if n >= 0] for p in range(num_prompts)],
                context_columns,
            )
            scores = _score(reward_funcs, weights, *scoring_batch, tokenizer)
            beam_scores = torch.empty(num_prompts, group, dtype=torch.float64)
            truth_scores = torch.empty(num_prompts, dtype=torch.float64)
            negative_scores = torch.full((num_prompts, num_cross_negatives), -torch.inf, dtype=torch.float64)
            cursor = 0
            for p in range(num_prompts):
                beam_scores[p] = scores[cursor : cursor + group]
                truth_scores[p] = scores[cursor + group]
                cursor += group + 1
                available = int((negatives[p] >= 0).sum())
                negative_scores[p, :available] = scores[cursor : cursor + available]
                cursor += available
            # The gate's own decisions, by the function the trainer calls.
            decisions = compute_gate_decisions(
                "adaptive",
                tau,
                rho,
                same_as_truth,
                rollout_logps=logps[:, :group],
                ground_truth_logps=logps[:, group],
                rollout_scores=beam_scores,
                ground_truth_scores=truth_scores,
                negative_scores=negative_scores,
            )
            # A ground truth the reward cannot score is last after re-ranking.
            rank_reward = torch.where(torch.isnan(truth_scores), group + 1 - in_beams.long(), decisions.rank_reward)

            per_sample["rank_policy"] += decisions.rank_policy.tolist()
            per_sample["rank_reward"] += rank_reward.tolist()
            per_sample["in_beams"] += in_beams.tolist()
            per_sample["uncertain"] += decisions.difficulty.tolist()
            per_sample["r1"] += decisions.r1.tolist()
            per_sample["r2"] += decisions.r2.tolist()
            per_sample["discriminative"] += decisions.discriminability.tolist()
            per_sample["unscorable"] += decisions.unscorable.tolist()
            per_sample["gate"] += decisions.gate.tolist()
    finally:
        model.train(was_training)

    arrays = {name: np.asarray(values) for name, values in per_sample.items()}
    result: dict[str, Any] = {
        "num_samples": len(rows),
        "num_generations": num_generations,
        "tau": tau,
        "k_tau": k_tau,
        "rho": rho,
        "num_cross_negatives": num_cross_negatives,
        "ks": ks,
    }
    everyone = np.ones(len(rows), dtype=bool)
    summary = _bucket_stats(arrays, everyone, ks)
    summary.update(
        uncertain_rate=float(arrays["uncertain"].mean()),
        r1_rate=float(arrays["r1"].mean()),
        r2_rate=float(arrays["r2"].mean()),
        discriminative_rate=float(arrays["discriminative"].mean()),
        gate_rate=float(arrays["gate"].mean()),
        unscorable_rate=float(arrays["unscorable"].mean()),
    )
    result["summary"] = summary

    buckets = []
    for policy in COARSE_POLICY_BUCKETS:
        for ranker in COARSE_RANKER_BUCKETS:
            mask = (arrays["uncertain"] == (policy == "uncertain")) & (
                arrays["discriminative"] == (ranker == "discriminative")
            )
            buckets.append(
                {"policy": policy, "ranker": ranker, "gate": policy == "uncertain" and ranker == "discriminative"}
                | _bucket_stats(arrays, mask, ks)
            )
    result["buckets"] = buckets

    policy_labels = _rank_labels(arrays["rank_policy"], k_tau)
    policy_labels[~arrays["in_beams"]] = "absent"
    ranker_labels = _rank_labels(arrays["rank_reward"], k_tau)
    fine = []
    for policy in _label_order(k_tau) + ["absent"]:
        for ranker in _label_order(k_tau):
            mask = (policy_labels == policy) & (ranker_labels == ranker)
            fine.append({"policy_rank": policy, "ranker_rank": ranker} | _bucket_stats(arrays, mask, ks))
    result["fine_buckets"] = fine
    if return_per_sample:
        result["per_sample"] = {name: [v.item() for v in values] for name, values in arrays.items()}
    return result


def format_stratified_analysis(result: dict[str, Any], digits: int = 3) -> str:
    """
    Renders the output of [`stratified_analysis`] as markdown: a settings line, the 2×2 table (policy uncertainty ×
    ranker discriminability; the gate admits the starred row) and the finer policy-rank × ranker-rank table.

    Args:
        result (`dict`):
            The output of [`stratified_analysis`].
        digits (`int`, *optional*, defaults to `3`):
            Decimals of the numbers.

    Returns:
        `str`: markdown.
    """
    ks = result["ks"]
    k_tau = result["k_tau"]
    summary = result["summary"]

    def number(value: Any) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    def columns(stats: dict[str, Any]) -> list[str]:
        cells = [
            f"{stats['share']:.{digits}f}",
            str(stats["count"]),
            number(stats["rank_before"]),
            number(stats["rank_after"]),
            number(stats["correction"]),
        ]
        cells += [f"{number(stats[f'hr@{k}/policy'])} → {number(stats[f'hr@{k}/reranked'])}" for k in ks]
        cells.append(number(stats["gt_in_beams"]))
        return cells

    stat_header = ["share", "n", "rank before", "rank after", "correction"]
    stat_header += [f"HR@{k} π → R" for k in ks] + ["y* in beams"]

    def table(header: list[str], body: list[list[str]]) -> list[str]:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return lines + ["| " + " | ".join(cells) + " |" for cells in body]

    lines = [
        f"Stratified analysis: {result['num_samples']} samples, K={result['num_generations']} beams, "
        f"τ={result['tau']} (k_τ={k_tau}), ρ={result['rho']}, M={result['num_cross_negatives']} cross-query "
        f"negatives. Gate rate {summary['gate_rate']:.{digits}f}, uncertain {summary['uncertain_rate']:.{digits}f}, "
        f"discriminative {summary['discriminative_rate']:.{digits}f}. Ranks are within the beams ∪ ground truth; "
        "correction = rank before (policy) − rank after (reward), positive when the reward helps.",
        "",
    ]
    body = [
        [("**" if b["gate"] else "") + f"{b['policy']} × {b['ranker']}" + ("** (gate)" if b["gate"] else "")]
        + columns(b)
        for b in result["buckets"]
    ]
    body.append(["all"] + columns(summary))
    lines += table(["policy × ranker"] + stat_header, body)
    lines.append("")
    body = [[b["policy_rank"], b["ranker_rank"]] + columns(b) for b in result["fine_buckets"] if b["count"] > 0]
    lines += table(["rank_π(y*)", "rank_R(y*)"] + stat_header, body)
    return "\n".join(lines)


def _sequence_logps(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    targets: list[list[int]],
    pad_token_id: int,
    device: torch.device,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Summed untempered log π(target | prompt) per row, on the CPU: the trainer's gate function, in chunks."""
    logps = []
    for start in range(0, len(targets), chunk_size):
        chunk = slice(start, start + chunk_size)
        logps.append(
            summed_sequence_logps(
                model, prompt_ids[chunk].to(device), prompt_mask[chunk].to(device), targets[chunk], pad_token_id
            ).cpu()
        )
    return torch.cat(logps)


def _score(
    reward_funcs: list[Callable[..., Sequence[float | None]]],
    weights: torch.Tensor,
    context_rows: list[dict[str, Any]],
    prompts: list[Any],
    completion_ids: list[list[int]],
    tokenizer: Any,
) -> torch.Tensor:
    """
    Weighted reward of every candidate in its sample's context (see [`~adagrpo_trl.gating.reward_scoring_batch`]),
    sanitised and aggregated as in training; NaN where no function could score it.
    """
    completions = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    kwargs = reward_kwargs(context_rows)
    per_func = torch.empty(len(completion_ids), len(reward_funcs), dtype=torch.float64)
    for i, func in enumerate(reward_funcs):
        values = func(
            prompts=list(prompts),
            completions=completions,
            completion_ids=[list(ids) for ids in completion_ids],
            trainer_state=None,
            log_extra=_no_op,
            log_metric=_no_op,
            **kwargs,
        )
        values = list(values)
        if len(values) != len(completion_ids):
            name = getattr(func, "__name__", type(func).__name__)
            raise ValueError(f"Reward {name!r} returned {len(values)} scores for {len(completion_ids)} candidates.")
        per_func[:, i] = torch.tensor([np.nan if v is None else float(v) for v in values], dtype=torch.float64)
    per_func = sanitize_rewards(per_func, [getattr(func, "none_means_failure", False) for func in reward_funcs])
    return aggregate_rewards(per_func, weights)


def _middle_label(k_tau: int) -> str:
    return "2" if k_tau == 2 else f"2-{k_tau}"


def _label_order(k_tau: int) -> list[str]:
    return ["1"] + ([_middle_label(k_tau)] if k_tau >= 2 else []) + [f">{k_tau}"]


def _rank_labels(ranks: np.ndarray, k_tau: int) -> np.ndarray:
    labels = np.full(ranks.shape, f">{k_tau}", dtype=object)
    labels[(ranks >= 2) & (ranks <= k_tau)] = _middle_label(k_tau)
    labels[ranks == 1] = "1"
    return labels


def _bucket_stats(arrays: dict[str, np.ndarray], mask: np.ndarray, ks: Sequence[int]) -> dict[str, Any]:
    count = int(mask.sum())
    total = mask.size

    def mean(values: np.ndarray) -> float | None:
        return float(values[mask].mean()) if count else None

    before, after = arrays["rank_policy"].astype(float), arrays["rank_reward"].astype(float)
    stats: dict[str, Any] = {
        "count": count,
        "share": count / total if total else 0.0,
        "rank_before": mean(before),
        "rank_after": mean(after),
        "correction": mean(before - after),
    }
    for k in ks:
        stats[f"hr@{k}/policy"] = mean((before <= k).astype(float))
        stats[f"hr@{k}/reranked"] = mean((after <= k).astype(float))
    stats["gt_in_beams"] = mean(arrays["in_beams"].astype(float))
    return stats
