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
The teacher report: is the ranker a teacher worth learning from, and where is it wrong?

RL can only move the policy toward what the reward knows and the policy does not. [`teacher_report`] measures the
ranker with the policy's own protocol (the same test users, a full ranking of every catalog item, HR@K and NDCG@10,
the history not masked, and masked as a second column), splits it by the ground truth's popularity (head / torso /
tail), compares it with a policy's per-user hits, and sweeps the popularity-bias knob λ of
[`~adagrpo_trl.rankers.PopularityBiasedRanker`]: head and tail HR@10 and AUC, and the popular-distractor rate. See
docs/rankers.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import score_matrix
from .popularity import check_popularity_bias
from .report import BUCKETS, popularity_buckets


DEFAULT_TEACHER_KS = (1, 5, 10)


def _ranks(scores: np.ndarray, target_columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based pessimistic rank of each row's target (ties count against it) and its AUC among the other columns."""
    target_scores = scores[np.arange(len(scores)), target_columns][:, None]
    higher_or_equal = (scores >= target_scores).sum(1) - 1  # the target itself is not a competitor
    lower = ((scores < target_scores) & np.isfinite(scores)).sum(1)  # a masked (-inf) item is no competitor
    ties = higher_or_equal - (scores > target_scores).sum(1)
    competitors = np.isfinite(scores).sum(1) - 1
    auc = (lower + 0.5 * ties) / np.maximum(competitors, 1)
    return 1 + higher_or_equal, auc


def _metrics(ranks: np.ndarray, auc: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    out: dict[str, float] = {"examples": int(len(ranks))}
    if not len(ranks):
        return {**out, **{f"hr@{k}": math.nan for k in ks}, "ndcg@10": math.nan, "auc": math.nan}
    for k in ks:
        out[f"hr@{k}"] = float((ranks <= k).mean())
    out["ndcg@10"] = float(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    out["auc"] = float(auc.mean())
    return out


def _by_bucket(ranks: np.ndarray, auc: np.ndarray, groups: np.ndarray, ks: Sequence[int]) -> dict[str, Any]:
    report = {"overall": _metrics(ranks, auc, ks)}
    for bucket in BUCKETS:
        selected = groups == bucket
        report[bucket] = _metrics(ranks[selected], auc[selected], ks)
    return report


def teacher_report(
    ranker: Any,
    examples: Sequence[Mapping[str, Any]],
    candidate_item_ids: Sequence[str],
    item_counts: Mapping[str, int],
    user_histories: Any = None,
    ks: Sequence[int] = DEFAULT_TEACHER_KS,
    popularity_biases: Sequence[float] = (0.0,),
    policy_hits: Sequence[bool] | None = None,
    policy_rollouts: Sequence[Sequence[str | None]] | None = None,
    num_rollouts: int = 16,
    head_fraction: float = 0.2,
    tail_fraction: float = 0.5,
    history_column: str = "history",
    target_column: str = "target_item",
    seed: int = 0,
) -> dict[str, Any]:
    """
    How good a teacher the ranker is, measured like the policy (full ranking of the catalog on the same rows).

    - `unmasked` / `masked`: HR@k, NDCG@10 and AUC (share of the other catalog items scored below the ground truth,
      ties one half) overall and per popularity bucket of the ground truth (`head`: the `head_fraction` most
      frequent training items, `tail`: the `tail_fraction` least frequent, by
      [`~adagrpo_trl.rankers.popularity_buckets`]). Ranks are pessimistic (a tie counts against the ground truth). In
      `masked`, the context's history items other than the ground truth are removed from the ranking.
    - `vs_policy` (with `policy_hits`): the shares of rows where both hit at 10, only the ranker, only the policy,
      neither. What the ranker can teach lives in `ranker_only`.
    - `popularity_bias`: per λ of `popularity_biases`, the unmasked `overall`/`head`/`torso`/`tail` metrics of the
      biased scores `s + λ·log(1 + count)`, and `popular_distractor_rate`: the share of rows where some rollout more
      popular (higher training count) than the ground truth outranks it. Rollouts are the policy's top items
      (`policy_rollouts`, e.g. its beam search, invalid ones skipped) or, without them, `num_rollouts` items drawn by
      training popularity without replacement (a stand-in for a popularity-leaning policy), seeded.

    Args:
        ranker (`Ranker`):
            Anything with `score(contexts, candidate_item_ids)`; a `score_matrix` method is used when present.
        examples (`Sequence[dict]`):
            The evaluation rows (`user_id`, `history`, `target_item`, and `target_position` with `user_histories`).
        candidate_item_ids (`Sequence[str]`):
            The items ranked: the catalog.
        item_counts (`Mapping[str, int]`):
            Training frequency of each item (buckets, bias, distractors).
        user_histories ([`~adagrpo_trl.data.UserHistories`], *optional*):
            Gives the ranker the rows' full histories (as the reward sees them in training).
        ks (`Sequence[int]`, *optional*, defaults to `(1, 5, 10)`):
            HR cut-offs.
        popularity_biases (`Sequence[float]`, *optional*, defaults to `(0.0,)`):
            The λ values to sweep.
        policy_hits (`Sequence[bool]`, *optional*):
            The policy's HR@10 hit of each row (e.g. `evaluate_recommendations(..., return_per_sample=True)`).
        policy_rollouts (`Sequence[Sequence[str | None]]`, *optional*):
            The policy's ranked items per row, used as the distractor rollouts.
        num_rollouts (`int`, *optional*, defaults to `16`):
            Rollouts per row for the distractor rate.
        head_fraction, tail_fraction (`float`, *optional*):
            Bucket sizes.
        history_column, target_column (`str`, *optional*):
            Column names.
        seed (`int`, *optional*, defaults to `0`):
            Seeds the popularity-drawn rollouts.

    Returns:
        `dict`: `num_examples`, `num_candidates`, `unmasked`, `masked`, `popularity_bias` (a list), and `vs_policy`
        when `policy_hits` is given. Format it with [`format_teacher_report`].

    Example:

    ```python
    from adagrpo_trl.rankers import SASRecRanker, teacher_report

    report = teacher_report(ranker, prepared.datasets["test"], prepared.catalog.item_ids, counts,
                            user_histories=prepared.user_histories, popularity_biases=[0.0, 1.0])
    ```
    """
    rows = list(examples)
    candidates = [str(item) for item in candidate_item_ids]
    column_of = {item: i for i, item in enumerate(candidates)}
    missing = [row[target_column] for row in rows if str(row[target_column]) not in column_of]
    if missing:
        raise ValueError(f"{len(missing)} ground truth(s) are not among the candidates, e.g. {missing[0]!r}.")
    if policy_hits is not None and len(policy_hits) != len(rows):
        raise ValueError(f"policy_hits has {len(policy_hits)} values for {len(rows)} rows.")
    if policy_rollouts is not None and len(policy_rollouts) != len(rows):
        raise ValueError(f"policy_rollouts has {len(policy_rollouts)} lists for {len(rows)} rows.")
    for bias in popularity_biases:
        check_popularity_bias(bias)
    contexts = user_histories.with_full_history(rows, history_column) if user_histories is not None else rows
    contexts = [{key: value for key, value in row.items() if key != target_column} for row in contexts]
    targets = np.array([column_of[str(row[target_column])] for row in rows], dtype=np.int64)
    buckets = popularity_buckets({item: item_counts.get(item, 0) for item in candidates}, head_fraction, tail_fraction)
    groups = np.array([buckets[str(row[target_column])] for row in rows])

    scores = score_matrix(ranker, contexts, candidates).astype(np.float64)
    ranks, auc = _ranks(scores, targets)
    masked = scores.copy()
    for r, context in enumerate(contexts):
        seen = [column_of[str(item)] for item in context.get(history_column) or [] if str(item) in column_of]
        if seen:
            masked[r, seen] = -np.inf
        masked[r, targets[r]] = scores[r, targets[r]]
    masked_ranks, masked_auc = _ranks(masked, targets)
    report: dict[str, Any] = {
        "num_examples": len(rows),
        "num_candidates": len(candidates),
        "unmasked": _by_bucket(ranks, auc, groups, ks),
        "masked": _by_bucket(masked_ranks, masked_auc, groups, ks),
    }
    if policy_hits is not None:
        policy = np.asarray(policy_hits, dtype=bool)
        teacher = ranks <= 10
        report["vs_policy"] = {
            "both": float((teacher & policy).mean()),
            "ranker_only": float((teacher & ~policy).mean()),
            "policy_only": float((~teacher & policy).mean()),
            "neither": float((~teacher & ~policy).mean()),
            "policy_hr@10": float(policy.mean()),
            "ranker_hr@10": float(teacher.mean()),
        }

    counts = np.array([item_counts.get(item, 0) for item in candidates], dtype=np.float64)
    rollout_columns = _rollouts(policy_rollouts, column_of, counts, targets, num_rollouts, seed)
    more_popular = counts[rollout_columns] > counts[targets][:, None]  # (rows, rollouts)
    sweep = []
    for bias in popularity_biases:
        biased = scores + float(bias) * np.log1p(counts)[None, :]
        biased_ranks, biased_auc = _ranks(biased, targets)
        outranks = (
            biased[np.arange(len(rows))[:, None], rollout_columns] > biased[np.arange(len(rows)), targets][:, None]
        )
        distractor = (outranks & more_popular & (rollout_columns >= 0)).any(1)
        sweep.append(
            {
                "popularity_bias": float(bias),
                **_by_bucket(biased_ranks, biased_auc, groups, ks),
                "popular_distractor_rate": float(distractor.mean()) if len(rows) else math.nan,
            }
        )
    report["popularity_bias"] = sweep
    return report


def _rollouts(
    policy_rollouts: Sequence[Sequence[str | None]] | None,
    column_of: Mapping[str, int],
    counts: np.ndarray,
    targets: np.ndarray,
    num_rollouts: int,
    seed: int,
) -> np.ndarray:
    """Candidate columns of each row's rollouts (`-1` pads a short list; the ground truth itself is never one)."""
    out = np.full((len(targets), num_rollouts), -1, dtype=np.int64)
    if policy_rollouts is not None:
        for r, ranked in enumerate(policy_rollouts):
            columns = [column_of[str(i)] for i in ranked if i is not None and str(i) in column_of]
            columns = [c for c in dict.fromkeys(columns) if c != targets[r]][:num_rollouts]
            out[r, : len(columns)] = columns
        return out
    rng = np.random.default_rng(seed)
    weights = counts + 1e-12
    for r, target in enumerate(targets):
        p = weights.copy()
        p[target] = 0.0
        take = min(num_rollouts, int((p > 0).sum()))
        out[r, :take] = rng.choice(len(p), size=take, replace=False, p=p / p.sum())
    return out


def format_teacher_report(report: Mapping[str, Any], digits: int = 4) -> str:
    """[`teacher_report`] as markdown: quality by bucket (unmasked and masked), vs the policy, and the λ sweep."""

    def number(value: Any) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    metrics = [key for key in report["unmasked"]["overall"] if key != "examples"]
    lines = [
        f"Ranker as a teacher: full ranking of {report['num_candidates']} items on {report['num_examples']} rows "
        "(ties pessimistic).",
        "",
        "| bucket | examples | " + " | ".join(metrics) + " | " + " | ".join(f"masked {m}" for m in metrics) + " |",
        "|" + "---|" * (2 + 2 * len(metrics)),
    ]
    for bucket, row in report["unmasked"].items():
        masked = report["masked"][bucket]
        cells = [number(row[m]) for m in metrics] + [number(masked[m]) for m in metrics]
        lines.append(f"| {bucket} | {row['examples']} | " + " | ".join(cells) + " |")
    if "vs_policy" in report:
        vs = report["vs_policy"]
        lines += [
            "",
            "| HR@10 vs the policy | both hit | ranker only | policy only | neither | ranker | policy |",
            "|---|---|---|---|---|---|---|",
            "| share of rows | "
            + " | ".join(number(vs[k]) for k in ("both", "ranker_only", "policy_only", "neither", "ranker_hr@10"))
            + f" | {number(vs['policy_hr@10'])} |",
        ]
    hr = max((m for m in metrics if m.startswith("hr@")), key=lambda m: int(m[3:]))
    label = hr.upper()
    lines += [
        "",
        f"| λ (popularity bias) | {label} | head {label} | tail {label} | head AUC | tail AUC | popular-distractor rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in report["popularity_bias"]:
        lines.append(
            f"| {entry['popularity_bias']:g} | {number(entry['overall'][hr])} | {number(entry['head'][hr])} | "
            f"{number(entry['tail'][hr])} | {number(entry['head']['auc'])} | {number(entry['tail']['auc'])} | "
            f"{number(entry['popular_distractor_rate'])} |"
        )
    return "\n".join(lines)


def prepared_teacher_report(
    ranker: Any,
    prepared: Any,
    split: str = "test",
    full_history: bool = True,
    max_examples: int | None = None,
    **report_kwargs: Any,
) -> dict[str, Any]:
    """
    [`teacher_report`] on a split of what `adagrpo-trl prepare` wrote: its rows (all users, or the first
    `max_examples`), the whole catalog as candidates, training counts from the training sequences, and the users'
    full histories (as the reward reads them) unless `full_history=False`.

    Args:
        ranker (`Ranker`):
            The ranker.
        prepared ([`~adagrpo_trl.data.PreparedData`]):
            The prepared data.
        split (`str`, *optional*, defaults to `"test"`):
            The split whose rows are ranked (the policy's evaluation split).
        full_history (`bool`, *optional*, defaults to `True`):
            Score with the full histories (needs data prepared with this version).
        max_examples (`int`, *optional*):
            Use the first rows only.
        **report_kwargs:
            [`teacher_report`] options (`popularity_biases`, `policy_hits`, `policy_rollouts`, ...).
    """
    from collections import Counter

    rows = prepared.datasets[split]
    if max_examples is not None:
        rows = rows.select(range(min(max_examples, len(rows))))
    counts = Counter(item for sequence in prepared.train_sequences for item in sequence)
    histories = prepared.user_histories if full_history and "target_position" in rows.column_names else None
    return teacher_report(
        ranker, list(rows), prepared.catalog.item_ids, counts, user_histories=histories, **report_kwargs
    )
