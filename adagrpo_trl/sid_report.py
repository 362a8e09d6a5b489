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
How good are the semantic IDs? Collisions, code usage and how well SID prefixes group items users consume together.

A generative recommender decodes the next item code by code, so its first codes should narrow the catalog to items
that follow the user's recent ones. [`sid_quality_report`] measures that on the training sequences: the share of
consecutive pairs (previous item, next item) whose SIDs share the first code, the first two codes, ..., beside the
share that random SIDs with the same code sizes would give. A lift near 1 means the prefix carries no collaborative
signal; dead codes and low perplexity mean wasted SID tokens.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .catalog import ItemCatalog
from .semantic_ids import SemanticIDResult


def _codes_of(
    sids: SemanticIDResult | ItemCatalog | np.ndarray, item_ids: Sequence[str] | None
) -> tuple[np.ndarray, list[str], list[int] | None, float | None]:
    """(codes, item ids, codebook sizes or None, collision rate or None) of SIDs given in one of three forms."""
    if isinstance(sids, SemanticIDResult):
        codes, ids, sizes, collision = sids.codes, sids.item_ids, sids.codebook_sizes, sids.collision_rate_before_dedup
    elif isinstance(sids, ItemCatalog):
        codes, ids, sizes, collision = sids.codes, sids.item_ids, None, None
    else:
        if item_ids is None:
            raise ValueError("A codes array needs `item_ids`, the item of each row.")
        codes, ids, sizes, collision = np.asarray(sids), [str(item) for item in item_ids], None, None
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != len(ids) or codes.shape[1] < 2:
        raise ValueError(
            f"codes must have one row per item id ({len(ids)}) and at least 2 columns (residual levels, then the "
            f"dedup level), got shape {codes.shape}."
        )
    return codes, list(ids), sizes, collision


def _group_sizes(prefixes: np.ndarray) -> np.ndarray:
    return np.unique(prefixes, axis=0, return_counts=True)[1]


def sid_quality_report(
    sids: SemanticIDResult | ItemCatalog | np.ndarray,
    train_sequences: Sequence[Sequence[str]] | None = None,
    item_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """
    Quality figures of a catalog's semantic IDs.

    - `collision_rate_before_dedup`: the share of items that the residual codes (all levels but the last, dedup
      one) do not identify, `1 - #distinct residual code tuples / num_items` (as in
      [`~adagrpo_trl.semantic_ids.SemanticIDResult`]).
    - `levels`: per residual level, `codebook_size`, `used_codes`, `usage` (used / size), `entropy_bits` of the
      codes' distribution over items and `perplexity` (`2 ** entropy`; equal to the size when every code holds as
      many items).
    - `prefix_grouping` (with `train_sequences`): for each prefix depth `d` (1 = the first code), over consecutive
      pairs of *different* items in the sequences, `share` = the fraction whose SIDs share the first `d` codes, and
      `random_share` = the expected fraction when the same SIDs are shuffled over the items (same code sizes), i.e.
      `sum_g n_g (n_g - 1) / (N (N - 1))` over the items' prefix groups `g`; `lift = share / random_share`.

    Args:
        sids ([`~adagrpo_trl.semantic_ids.SemanticIDResult`], [`~adagrpo_trl.ItemCatalog`] or `np.ndarray`):
            The SIDs; an array holds one row of codes per item (last column: the dedup level) and needs `item_ids`.
        train_sequences (`Sequence[Sequence[str]]`, *optional*):
            Users' training sequences of item ids (never validation or test items).
        item_ids (`Sequence[str]`, *optional*):
            With a codes array: the item of each row.

    Returns:
        `dict[str, Any]`: `num_items`, `num_levels` (dedup included), `collision_rate_before_dedup`, `levels`,
        and `num_pairs` and `prefix_grouping` when `train_sequences` is given.

    Raises:
        `ValueError`: a sequence holding an item without a SID (naming it), or codes that do not match `item_ids`.

    Example:

    ```python
    >>> import numpy as np

    from .catalog import ItemCatalog
    from .semantic_ids import SemanticIDResult
    >>> from adagrpo_trl.sid_report import sid_quality_report
    >>> codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # one residual level + dedup
    >>> report = sid_quality_report(codes, [["a", "b", "c", "d"]], item_ids=["a", "b", "c", "d"])
    >>> report["prefix_grouping"][0]["share"], report["prefix_grouping"][0]["random_share"]
    (0.6666666666666666, 0.3333333333333333)
    ```
    """
    codes, ids, sizes, collision = _codes_of(sids, item_ids)
    num_items, num_levels = codes.shape
    residual_levels = num_levels - 1
    residual = codes[:, :residual_levels]
    if collision is None:
        collision = 1.0 - len(_group_sizes(residual)) / num_items if num_items else 0.0
    levels = []
    for level in range(residual_levels):
        counts = np.bincount(codes[:, level])
        size = int(sizes[level]) if sizes is not None else len(counts)
        probabilities = counts[counts > 0] / num_items
        entropy = float(-(probabilities * np.log2(probabilities)).sum())
        levels.append(
            {
                "level": level,
                "codebook_size": size,
                "used_codes": int((counts > 0).sum()),
                "usage": float((counts > 0).sum() / size),
                "entropy_bits": entropy,
                "perplexity": float(2.0**entropy),
            }
        )
    report: dict[str, Any] = {
        "num_items": int(num_items),
        "num_levels": int(num_levels),
        "collision_rate_before_dedup": float(collision),
        "levels": levels,
    }
    if train_sequences is None:
        return report

    row_of = {item: row for row, item in enumerate(ids)}
    previous, following = [], []
    for index, sequence in enumerate(train_sequences):
        for item in sequence:
            if item not in row_of:
                raise ValueError(f"Training sequence {index} holds item {item!r}, which has no SID in the catalog.")
        rows = [row_of[item] for item in sequence]
        for before, after in zip(rows[:-1], rows[1:], strict=True):
            if before != after:
                previous.append(before)
                following.append(after)
    previous_rows, following_rows = np.asarray(previous, dtype=np.int64), np.asarray(following, dtype=np.int64)
    grouping = []
    for depth in range(1, residual_levels + 1):
        prefix = residual[:, :depth]
        counts = _group_sizes(prefix)
        random_share = float((counts * (counts - 1)).sum() / (num_items * (num_items - 1))) if num_items > 1 else 0.0
        if len(previous_rows):
            share = float(np.all(prefix[previous_rows] == prefix[following_rows], axis=1).mean())
        else:
            share = math.nan
        grouping.append(
            {
                "depth": depth,
                "share": share,
                "random_share": random_share,
                "lift": share / random_share if random_share > 0 else math.nan,
            }
        )
    report["num_pairs"] = len(previous_rows)
    report["prefix_grouping"] = grouping
    return report


def sid_report_markdown(report: dict[str, Any], title: str | None = None) -> str:
    """
    A markdown table of a [`sid_quality_report`]: one row per residual level with its code usage and the share of
    next items whose SID shares the prefix ending at that level, against random SIDs; with a
    `validation_prefix_grouping` entry (as `prepare` adds: held-out pairs, last training item -> validation item),
    the same two columns for those pairs.
    """
    lines = [f"### {title}", ""] if title else []
    lines.append(
        f"{report['num_items']} items, {report['num_levels']} SID levels (dedup included), "
        f"collision rate before dedup {report['collision_rate_before_dedup']:.2%}"
        + (f", {report['num_pairs']} consecutive training pairs." if "num_pairs" in report else ".")
    )
    columns = ["level", "codebook size", "used codes", "usage", "perplexity"]
    groupings = []
    for key, name in (("prefix_grouping", "train"), ("validation_prefix_grouping", "validation")):
        if key in report:
            columns += [f"{name}: next item shares prefix", "random SIDs", "lift"]
            groupings.append({entry["depth"]: entry for entry in report[key]})
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for level in report["levels"]:
        cells = [
            str(level["level"]),
            str(level["codebook_size"]),
            str(level["used_codes"]),
            f"{level['usage']:.0%}",
            f"{level['perplexity']:.1f}",
        ]
        for grouping in groupings:
            entry = grouping[level["level"] + 1]
            cells += [f"{entry['share']:.2%}", f"{entry['random_share']:.2%}", f"{entry['lift']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
