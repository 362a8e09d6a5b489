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
Offline evaluation of a generative recommender: beam search, HR@K / NDCG@K on items, hallucination rate.

Every generated SID is mapped back to an item through the catalog, so metrics are on items, not on SID strings.
Unconstrained beams measure hallucination (returned SIDs that are no catalog item count as misses); trie-constrained
beams measure the ranking a deployed, constrained recommender would serve.
"""

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .catalog import ItemCatalog
from .constrained import (
    TrieProcessorFactory,
    build_generation_config,
    generate_with_shared_prefill,
    isolated_generation_config,
    make_trie_processor_factory,
)


DEFAULT_KS = (1, 5, 10, 20)


def hits_at_k(ranked_items: Sequence[Sequence[str | None]], targets: Sequence[str], k: int) -> np.ndarray:
    """
    Per-sample hit indicator: 1 where the target is among the first `k` recommended items.

    Args:
        ranked_items (`Sequence[Sequence[str | None]]`):
            Recommended item ids per sample, best first; `None` marks a hallucinated (invalid) recommendation.
        targets (`Sequence[str]`):
            The ground-truth item id of each sample.
        k (`int`):
            Cut-off.

    Returns:
        `np.ndarray` of shape `(num_samples,)` with values in {0, 1}.
    """
    _check_lengths(ranked_items, targets, k)
    return np.array([float(target in items[:k]) for items, target in zip(ranked_items, targets, strict=True)])


def ndcg_at_k(ranked_items: Sequence[Sequence[str | None]], targets: Sequence[str], k: int) -> np.ndarray:
    """
    Per-sample NDCG@k with a single relevant item: 1 / log2(rank + 1) if the target is at 1-based `rank` ≤ k, else 0.
    """
    _check_lengths(ranked_items, targets, k)
    gains = []
    for items, target in zip(ranked_items, targets, strict=True):
        top = list(items[:k])
        gains.append(1.0 / np.log2(top.index(target) + 2) if target in top else 0.0)
    return np.array(gains)


def hallucination_rate(ranked_items: Sequence[Sequence[str | None]], k: int = 10) -> float:
    """Share of the returned top-`k` recommendations that are not catalog items (`None`)."""
    slots = [item for items in ranked_items for item in items[:k]]
    if not slots:
        raise ValueError("hallucination_rate got no recommendations.")
    return float(np.mean([item is None for item in slots]))


def paired_bootstrap(
    per_sample_a: np.ndarray,
    per_sample_b: np.ndarray,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """
    Paired bootstrap over samples (users) of the difference `mean(b) - mean(a)`.

    Args:
        per_sample_a, per_sample_b (`np.ndarray` of shape `(num_samples,)`):
            The same per-sample metric (e.g. hits at 10) of two systems on the same samples, in the same order.
        num_resamples (`int`, *optional*, defaults to `2000`):
            Bootstrap resamples.
        confidence (`float`, *optional*, defaults to `0.95`):
            Width of the percentile interval.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the resampling.

    Returns:
        `dict` with `diff` (observed difference), `low`, `high` (percentile interval) and `p_value` (two-sided share of
        resampled differences on the other side of zero).
    """
    a, b = np.asarray(per_sample_a, dtype=float), np.asarray(per_sample_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired_bootstrap needs two non-empty 1-D arrays of equal length, got {a.shape} and {b.shape}."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, a.size, size=(num_resamples, a.size))
    diffs = (b[indices] - a[indices]).mean(axis=1)
    alpha = (1 - confidence) / 2
    observed = float((b - a).mean())
    if observed >= 0:
        p_value = min(1.0, 2 * float((diffs <= 0).mean()))
    else:
        p_value = min(1.0, 2 * float((diffs >= 0).mean()))
    return {
        "diff": observed,
        "low": float(np.quantile(diffs, alpha)),
        "high": float(np.quantile(diffs, 1 - alpha)),
        "p_value": p_value,
    }


@torch.no_grad()
def recommend(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    catalog: ItemCatalog,
    num_beams: int = 20,
    constrained: bool = False,
    batch_size: int = 16,
    show_progress: bool = True,
) -> list[list[str | None]]:
    """
    Top-`num_beams` recommendations per prompt by beam search, best first, as item ids (`None` for a generated SID
    that is not a catalog item; with `constrained=True` that never happens).

    Args:
        model ([`~transformers.PreTrainedModel`]):
            The policy.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Its tokenizer (SID tokens as single tokens).
        prompts (`Sequence[str]`):
            Prompt texts, tokenised as TRL tokenises them (`tokenizer(text=...)`).
        catalog ([`ItemCatalog`]):
            Maps generated SIDs back to items; also the trie when `constrained=True`.
        num_beams (`int`, *optional*, defaults to `20`):
            Beam width and number of recommendations returned per prompt.
        constrained (`bool`, *optional*, defaults to `False`):
            Constrain decoding to catalog items with a prefix trie.
        batch_size (`int`, *optional*, defaults to `16`):
            Prompts per generate call.
        show_progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}.")
    if constrained and num_beams > len(catalog):
        raise ValueError(f"Constrained beam search needs num_beams <= catalog size, got {num_beams} > {len(catalog)}.")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    factory = _trie_factory(catalog, tokenizer) if constrained else None
    config = build_generation_config(
        max_new_tokens=catalog.num_levels + 1, num_beams=num_beams, do_sample=False, tokenizer=tokenizer
    )
    recommendations: list[list[str | None]] = []
    batches = range(0, len(prompts), batch_size)
    for start in tqdm(batches, desc="beam search", disable=not show_progress, leave=False):
        encoded = tokenizer(
            text=list(prompts[start : start + batch_size]), return_tensors="pt", padding=True, padding_side="left"
        )
        input_ids, attention_mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
        processors = [factory(input_ids.size(1))] if factory is not None else []
        with isolated_generation_config(model):
            sequences = generate_with_shared_prefill(model, input_ids, attention_mask, config, processors)
        # Decode each distinct generated sequence once (the beams of a batch repeat popular items).
        generated = [tuple(ids) for ids in sequences[:, input_ids.size(1) :].tolist()]
        distinct = list(dict.fromkeys(generated))
        texts = tokenizer.batch_decode(distinct, skip_special_tokens=True)
        item_of = {ids: catalog.sid_to_item(text.strip()) for ids, text in zip(distinct, texts, strict=True)}
        items = [item_of[ids] for ids in generated]
        recommendations.extend(items[i : i + num_beams] for i in range(0, len(items), num_beams))
    model.train(was_training)
    return recommendations


# The trie of each (catalog, tokenizer) pair, built once for every evaluation that uses them (not once per call).
_TRIE_FACTORIES: "weakref.WeakKeyDictionary[ItemCatalog, weakref.WeakKeyDictionary]" = weakref.WeakKeyDictionary()


def _trie_factory(catalog: ItemCatalog, tokenizer: Any) -> TrieProcessorFactory:
    try:
        per_tokenizer = _TRIE_FACTORIES.setdefault(catalog, weakref.WeakKeyDictionary())
        factory = per_tokenizer.get(tokenizer)
        if factory is None:
            factory = per_tokenizer[tokenizer] = make_trie_processor_factory(catalog, tokenizer)
        return factory
    except TypeError:  # an object that cannot be weakly referenced: no cache
        return make_trie_processor_factory(catalog, tokenizer)


def evaluate_recommendations(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    catalog: ItemCatalog,
    ks: Sequence[int] = DEFAULT_KS,
    num_beams: int = 20,
    hallucination_k: int = 10,
    batch_size: int = 16,
    prompt_column: str = "prompt",
    target_column: str = "target_item",
    constrained: bool = True,
    return_per_sample: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """
    HR@K, NDCG@K and hallucination of a generative recommender on a dataset split.

    Unconstrained beam search gives `hr@K`, `ndcg@K` (an invalid SID counts as a miss) and `hallucination` (share of
    the returned top-`hallucination_k` SIDs that are no catalog item). With `constrained=True`, trie-constrained beam
    search also gives `constrained/hr@K` and `constrained/ndcg@K`.

    Args:
        model, tokenizer:
            The policy and its tokenizer.
        dataset ([`~datasets.Dataset`] or `Sequence[dict]`):
            Rows with `prompt_column` and `target_column` (the ground-truth item id).
        catalog ([`ItemCatalog`]):
            The item catalog.
        ks (`Sequence[int]`, *optional*, defaults to `(1, 5, 10, 20)`):
            Cut-offs; each must be ≤ `num_beams`.
        num_beams (`int`, *optional*, defaults to `20`):
            Beam width.
        hallucination_k (`int`, *optional*, defaults to `10`):
            Cut-off of the hallucination rate.
        batch_size (`int`, *optional*, defaults to `16`):
            Prompts per generate call.
        prompt_column, target_column (`str`, *optional*):
            Column names.
        constrained (`bool`, *optional*, defaults to `True`):
            Also run trie-constrained beam search.
        return_per_sample (`bool`, *optional*, defaults to `False`):
            Add `per_sample`: per-sample arrays (`hr@K`, `ndcg@K`, ...) for [`paired_bootstrap`].
        show_progress (`bool`, *optional*, defaults to `True`):
            Show progress bars.

    Returns:
        `dict[str, float]` (plus `num_samples` and, on request, `per_sample`).
    """
    if max(ks) > num_beams or hallucination_k > num_beams:
        raise ValueError(
            f"Cut-offs {list(ks)} and hallucination_k={hallucination_k} must be <= num_beams={num_beams}."
        )
    prompts, targets = prompts_and_targets(dataset, catalog, prompt_column, target_column)

    results: dict[str, Any] = {"num_samples": len(prompts)}
    per_sample: dict[str, np.ndarray] = {}
    modes = [("", False)] + ([("constrained/", True)] if constrained else [])
    for prefix, is_constrained in modes:
        ranked = recommend(
            model, tokenizer, prompts, catalog, num_beams, is_constrained, batch_size, show_progress=show_progress
        )
        for k in ks:
            per_sample[f"{prefix}hr@{k}"] = hits_at_k(ranked, targets, k)
            per_sample[f"{prefix}ndcg@{k}"] = ndcg_at_k(ranked, targets, k)
        if not is_constrained:
            results["hallucination"] = hallucination_rate(ranked, hallucination_k)
    results.update({name: float(values.mean()) for name, values in per_sample.items()})
    if return_per_sample:
        results["per_sample"] = per_sample
    return results


def prompts_and_targets(
    dataset: Any,
    catalog: ItemCatalog,
    prompt_column: str = "prompt",
    target_column: str = "target_item",
    max_samples: int | None = None,
) -> tuple[list[str], list[str]]:
    """
    The prompts and target item ids of an evaluation split (the first `max_samples` rows), checked: every row has both
    columns and every target is a catalog item; errors name the row.
    """
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}.")
    rows = list(dataset)[:max_samples]
    if not rows:
        raise ValueError("The evaluation dataset is empty.")
    for index, row in enumerate(rows):
        for column in (prompt_column, target_column):
            if column not in row:
                raise ValueError(f"Row {index} has no column {column!r} (columns: {sorted(row)}).")
        if row[target_column] not in catalog:
            raise ValueError(f"Row {index}: target item {row[target_column]!r} is not in the catalog.")
    return [row[prompt_column] for row in rows], [row[target_column] for row in rows]


def _check_lengths(ranked_items: Sequence[Sequence[Any]], targets: Sequence[str], k: int) -> None:
    if len(ranked_items) != len(targets):
        raise ValueError(f"Got {len(ranked_items)} ranked lists for {len(targets)} targets.")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
