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
A controlled exposure-bias knob: a ranker whose scores lean toward what the logs exposed most.

A production ranker is trained on logs that a previous recommender exposed, so it over-scores popular items: right on
head ground truths, misled by popular distractors on tail ones. [`PopularityBiasedRanker`] models this on top of any
ranker: `score + λ · log(1 + count(item))`, with `count` the item's training frequency. λ = 0 is the ranker itself; the
teacher report (`adagrpo_trl.rankers.teacher_report`) shows per λ how head and tail quality and the popular-distractor
rate move. Why additive on the logit: a model trained on exposure-biased impressions learns logit(p) ≈ relevance +
log(exposure), and exposure grows with popularity; `log(1 + count)` is that term with a strength λ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import score_matrix


def check_popularity_bias(bias: Any) -> None:
    """Raises a `ValueError` naming the value unless λ is a finite number >= 0."""
    if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias) or bias < 0:
        raise ValueError(f"popularity_bias must be a finite number >= 0, got popularity_bias={bias!r}.")


class PopularityBiasedRanker:
    """
    Wraps a ranker and adds `bias · log(1 + item_counts[item])` to every score (unknown items count 0).

    Args:
        ranker (`Ranker`):
            Anything with `score(contexts, candidate_item_ids)` (and optionally `score_matrix`).
        item_counts (`Mapping[str, int]`):
            Training frequency of each item.
        bias (`float`):
            λ ≥ 0; 0 returns the ranker's scores unchanged.

    Example:

    ```python
    from adagrpo_trl.rankers import PopularityBiasedRanker, SASRecRanker

    biased = PopularityBiasedRanker(SASRecRanker.load("ranker"), {"i1": 120, "i2": 3}, bias=0.5)
    biased.score([{"history": ["i1"]}] * 2, ["i1", "i2"])
    ```
    """

    def __init__(self, ranker: Any, item_counts: Mapping[str, int], bias: float):
        if not callable(getattr(ranker, "score", None)):
            raise TypeError(f"ranker must have a `score(contexts, candidate_item_ids)` method, got {type(ranker)}.")
        check_popularity_bias(bias)
        self.ranker = ranker
        self.item_counts = {str(item): int(count) for item, count in item_counts.items()}
        self.bias = float(bias)

    def __repr__(self) -> str:
        return f"PopularityBiasedRanker({self.ranker!r}, bias={self.bias})"

    def __getattr__(self, name: str) -> Any:  # history_column, user_column, ... of the wrapped ranker
        if name == "ranker":
            raise AttributeError(name)
        return getattr(self.ranker, name)

    def offsets(self, item_ids: Sequence[Any]) -> np.ndarray:
        """`bias · log(1 + count)` of each item."""
        counts = np.array([self.item_counts.get(str(item), 0) for item in item_ids], dtype=np.float64)
        return self.bias * np.log1p(counts)

    def score(self, contexts: Sequence[Mapping[str, Any]], candidate_item_ids: Sequence[Any]) -> list[float]:
        """The wrapped ranker's scores plus the popularity offset of each candidate."""
        scores = np.asarray(self.ranker.score(contexts, candidate_item_ids), dtype=np.float64)
        if self.bias == 0.0:
            return scores.tolist()
        return (scores + self.offsets(candidate_item_ids)).tolist()

    def score_matrix(self, contexts: Sequence[Mapping[str, Any]], candidate_item_ids: Sequence[Any]) -> np.ndarray:
        """[`score`] for every context × candidate (uses the wrapped ranker's `score_matrix` when it has one)."""
        base = score_matrix(self.ranker, contexts, candidate_item_ids)
        return base + self.offsets(candidate_item_ids)[None, :].astype(base.dtype)
