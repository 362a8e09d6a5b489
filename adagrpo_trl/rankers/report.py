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
How reliable a ranker is, by item popularity: [`ranker_quality_report`] scores each example's target against random
items and reports AUC and HR@k overall and for the head, torso and tail of the catalog. On exposure-biased logs a ranker
is accurate on popular items and close to chance on rare ones, which is why AdaGRPO trusts it per sample
(`docs/method.md#definitions`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


BUCKETS = ("head", "torso", "tail")


def popularity_buckets(
    item_popularity: Mapping[str, float], head_fraction: float = 0.2, tail_fraction: float = 0.5
) -> dict[str, str]:
    """
    Splits items into popularity buckets: the `head_fraction` most frequent items are `"head"`, the `tail_fraction`
    least frequent `"tail"`, the rest `"torso"` (ties broken by item id, so the split is deterministic).
    """
    if not (0 < head_fraction < 1 and 0 < tail_fraction < 1 and head_fraction + tail_fraction <= 1):
        raise ValueError(
            f"Need 0 < head_fraction, tail_fraction < 1 with head_fraction + tail_fraction <= 1, got "
            f"{head_fraction} and {tail_fraction}."
        )
    items = sorted(item_popularity, key=lambda i: (-float(item_popularity[i]), str(i)))
    n = len(items)
    num_head = round(head_fraction * n)
    num_tail = round(tail_fraction * n)
    buckets = {}
    for rank, item in enumerate(items):
        buckets[str(item)] = "head" if rank < num_head else ("tail" if rank >= n - num_tail else "torso")
    return buckets


def ranker_quality_report(
    ranker: Any,
    eval_examples: Iterable[Mapping[str, Any]],
    item_popularity: Mapping[str, float],
    num_negatives: int = 100,
    k: int = 10,
    head_fraction: float = 0.2,
    tail_fraction: float = 0.5,
    target_column: str = "target_item",
    batch_size: int = 4096,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """
    Measures how well a ranker separates each example's target item from random items, overall and by the target's
    popularity bucket (head / torso / tail by training frequency). On exposure-biased logs a ranker is reliable on the
    head and close to chance on the tail: the reason AdaGRPO trusts the ranker only per sample.

    For each example, `num_negatives` items are drawn uniformly (seeded) from the items of `item_popularity` other than
    the target, and scored with the target in the example's context.

    - AUC: the share of negatives scored below the target (ties count one half), averaged over examples.
    - HR@k: the share of examples whose target ranks among the top `k` of the `1 + num_negatives` candidates
      (ties counted pessimistically).

    Args:
        ranker (`Ranker`):
            Anything with `score(contexts, candidate_item_ids)`.
        eval_examples (`Iterable[Mapping[str, Any]]`):
            Rows with the context the ranker reads (e.g. `history`) and the target item id under `target_column`.
        item_popularity (`Mapping[str, float]`):
            Training frequency of every candidate item; items absent from it are never negatives and count as tail
            when they are targets.
        num_negatives (`int`, *optional*, defaults to `100`):
            Negatives per example.
        k (`int`, *optional*, defaults to `10`):
            Cut-off of HR@k.
        head_fraction, tail_fraction (`float`, *optional*, default to `0.2` and `0.5`):
            Bucket sizes, as fractions of the items in `item_popularity`.
        target_column (`str`, *optional*, defaults to `"target_item"`):
            Key of the target item id.
        batch_size (`int`, *optional*, defaults to `4096`):
            Pairs per `ranker.score` call.
        seed (`int`, *optional*, defaults to `0`):
            Seeds the negatives.

    Returns:
        `dict[str, dict[str, float]]`: for `"overall"`, `"head"`, `"torso"` and `"tail"`, the keys `"examples"`,
        `"auc"` and `f"hr@{k}"` (NaN for an empty bucket). Format it with [`format_quality_report`].
    """
    buckets = popularity_buckets(item_popularity, head_fraction, tail_fraction)
    universe = np.array(sorted(str(i) for i in item_popularity), dtype=object)
    if len(universe) < 2:
        raise ValueError("item_popularity needs at least two items.")
    rng = np.random.default_rng(seed)
    examples = list(eval_examples)
    contexts, candidates, groups = [], [], []
    for example in examples:
        target = str(example[target_column])
        pool = universe[universe != target]
        negatives = rng.choice(pool, size=num_negatives, replace=len(pool) < num_negatives).tolist()
        context = {key: value for key, value in example.items() if key != target_column}
        contexts.extend([context] * (1 + num_negatives))
        candidates.extend([target, *negatives])
        groups.append(buckets.get(target, "tail"))
    scores: list[float] = []
    for start in range(0, len(candidates), batch_size):
        scores.extend(
            float(s)
            for s in ranker.score(contexts[start : start + batch_size], candidates[start : start + batch_size])
        )
    per_example = np.array(scores, dtype=np.float64).reshape(len(examples), 1 + num_negatives)
    target_scores, negative_scores = per_example[:, :1], per_example[:, 1:]
    auc = ((negative_scores < target_scores).sum(1) + 0.5 * (negative_scores == target_scores).sum(1)) / num_negatives
    hits = (negative_scores >= target_scores).sum(1) < k
    report = {}
    groups = np.array(groups)
    for name, selected in [("overall", np.ones(len(examples), dtype=bool))] + [(b, groups == b) for b in BUCKETS]:
        count = int(selected.sum())
        report[name] = {
            "examples": count,
            "auc": float(auc[selected].mean()) if count else math.nan,
            f"hr@{k}": float(hits[selected].mean()) if count else math.nan,
        }
    return report


def format_quality_report(report: Mapping[str, Mapping[str, float]]) -> str:
    """The report of [`ranker_quality_report`] as a markdown table: one row per bucket."""
    metrics = [key for key in next(iter(report.values())) if key != "examples"]
    header = "| bucket | examples | " + " | ".join(m.upper() for m in metrics) + " |"
    lines = [header, "|" + "---|" * (2 + len(metrics))]
    for name, row in report.items():
        values = " | ".join("n/a" if math.isnan(row[m]) else f"{row[m]:.4f}" for m in metrics)
        lines.append(f"| {name} | {int(row['examples'])} | {values} |")
    return "\n".join(lines)
