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
What a ranker is: the [`Ranker`] protocol (`score(contexts, candidate_item_ids)`), the [`RankerError`] a ranker raises
when it cannot score a batch, and [`resolve_dotted_path`], which finds a user's ranker from `"pkg.module:attr"`.

A *ranker* is any object with

```python
def score(self, contexts: list[dict], candidate_item_ids: list[str]) -> Sequence[float]: ...
```

returning one score per `(context, candidate)` pair, higher = better. Contexts are the dataset columns of each row
(`user_id`, `history`, ...), candidates are catalog item ids.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


class RankerError(RuntimeError):
    """A ranker could not score a batch: it raised, timed out, or returned a wrong-length or non-finite answer."""


@runtime_checkable
class Ranker(Protocol):
    """Anything with `score(contexts, candidate_item_ids) -> Sequence[float]` (one score per pair, higher = better)."""

    def score(self, contexts: list[dict[str, Any]], candidate_item_ids: list[str]) -> Sequence[float]: ...


def resolve_dotted_path(path: str) -> Any:
    """The object at `"pkg.module:attr"` (or `"pkg.module.attr"`); raises `ValueError` saying what failed."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not a dotted path 'package.module:attribute'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"Cannot import module {module_name!r} of {path!r}: {error}") from error
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"Module {module_name!r} has no attribute {attr!r} (from {path!r}).")
        obj = getattr(obj, part)
    return obj


def score_matrix(ranker: Any, contexts: Sequence[Mapping[str, Any]], candidate_item_ids: Sequence[Any]) -> np.ndarray:
    """
    Scores of every candidate in every context, `(len(contexts), len(candidate_item_ids))`: the ranker's own
    `score_matrix` when it has one, else `score` on every pair (slow for large catalogs, but any ranker works).
    """
    fast = getattr(ranker, "score_matrix", None)
    if callable(fast):
        return np.asarray(fast(contexts, candidate_item_ids), dtype=np.float32)
    rows = []
    for context in contexts:
        rows.append(np.asarray(ranker.score([context] * len(candidate_item_ids), list(candidate_item_ids))))
    return np.asarray(rows, dtype=np.float32).reshape(len(contexts), len(candidate_item_ids))
