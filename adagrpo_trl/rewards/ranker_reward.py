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
[`RankerReward`]: any ranker (a CTR model, SASRec, a remote service) as a TRL reward function and as the scorer of
AdaGRPO's gate. A ranker is anything with `score(contexts, candidate_item_ids)`, see
[`~adagrpo_trl.rankers.Ranker`].
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, Protocol

from ..rankers.base import Ranker, RankerError
from ..rankers.popularity import PopularityBiasedRanker, check_popularity_bias
from ..sid import normalize_sid_text


logger = logging.getLogger(__name__)

TRANSFORMS = ("raw", "sigmoid", "group_rank")
FAILURE_POLICIES = ("raise", "gate_out")

# Keyword arguments that TRL passes to reward functions and that are not dataset columns.
_TRL_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments", "prompts", "completions", "completion_ids")
# Gate modes of AdaGRPO in which the reward functions also score ground truths and cross-query negatives.
_MAX_VALIDITY_CACHE = 65_536
# TRL stores rewards as float32: a larger finite score would become inf there.
_FLOAT32_MAX = 3.4028234663852886e38


class SIDCatalog(Protocol):
    """The part of [`~adagrpo_trl.ItemCatalog`] a [`RankerReward`] needs."""

    def sid_to_item(self, sid: str) -> str | None: ...


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of the last message of a conversational completion."""
    if isinstance(completion, list):
        completion = completion[-1].get("content", "") if completion and isinstance(completion[-1], dict) else ""
    return completion if isinstance(completion, str) else ""


class RankerReward:
    """
    A TRL reward function that scores each completion (a generated item) with a ranker, in the context of its prompt.

    It is a plain callable (not an `nn.Module`, so TRL calls it with the rows instead of treating it as a
    sequence-classification model) with a stable `__name__`, under which TRL logs `rewards/<name>/mean`. It works for
    [`~trl.GRPOTrainer`] and for [`~adagrpo_trl.AdaGRPOTrainer`], whose gate scores the ground truth and the cross-query
    negatives of every prompt with the same object.

    For every row:

    1. The completion text (the last message's content for conversational completions) is stripped of whitespace and
       mapped to an item id with `catalog.sid_to_item`. A completion that is not a catalog item (a hallucination, a
       partial or a malformed SID) gets `invalid_reward` and is not sent to the ranker.
    2. Valid rows are scored by `ranker.score(contexts, item_ids)` in batches of `batch_size` (identical
       `(context, item)` pairs, frequent among the rollouts of one prompt, are scored once when `deduplicate=True`).
       The context of a row is a dict of its dataset columns (`user_id`, `history`, ...), as TRL passes them.
    3. The score is transformed (`transform`) and returned.

    Failures are never silent. A batch for which the ranker raises (including [`RankerError`] from
    [`~adagrpo_trl.rankers.HTTPRanker`] after its retries), exceeds `timeout`, or answers with the wrong number of
    scores fails as a whole; a non-finite (NaN/inf) score, or one beyond float32's range (TRL stores rewards as
    float32), fails its row. With `on_failure="raise"` the call raises a [`RankerError`] naming the reward, the ranker
    and the batch (its first item ids). With `on_failure="gate_out"` the failed rows get `None`: TRL turns it into
    NaN, excludes the row from this reward's statistics and from its group's baseline, and gives rollouts for which
    every reward function returned `None` zero advantage; AdaGRPO's gate treats a NaN ground-truth, rollout or
    negative score as non-discriminable, so the sample gets pure supervision. The number of failed rows of each call is
    logged through TRL's `log_metric` as `rewards/<name>/failures` (`rewards/ranker/failures` by default, averaged
    over the calls of a logging step) together with `rewards/<name>/invalid_rate`, and accumulated in `num_failures`.
    AdaGRPO discards the metrics logged while the gate scores ground truths and negatives (those rows are not
    rollouts); their failures still count in `num_failures` and show in `gate/unscorable_rate`.

    Transforms:

    - `"raw"`: the ranker's score.
    - `"sigmoid"`: `1 / (1 + exp(-score))`, for rankers that return logits.
    - `"group_rank"`: the rank of the score among the valid, scored rows of its group of `num_generations`
      consecutive rows (the rollouts of one prompt), scaled to `[0, 1]` (lowest 0, highest 1, ties share their mean
      rank, a lone row 0.5). Rows must come in whole groups: the call fails if the rows are not a multiple of
      `num_generations` or a group mixes prompts (e.g. a group straddling two processes).

    `"raw"` and `"sigmoid"` are monotone, so the gate's ranks are those of the ranker. `"group_rank"` is **not
    supported for AdaGRPO's gate** (`gate_mode="adaptive"` or `"discriminability"`): the gate scores each ground truth
    together with its M cross-query negatives in a separate call, so a rank there would be relative to those 1 + M rows
    and not comparable with the rollouts' ranks, which is what the gate compares. `supports_gate_scoring` is then
    `False` and [`~adagrpo_trl.AdaGRPOTrainer`] rejects the reward for those gate modes when it is built; use it with
    `gate_mode="always"`, `"never"`, `"difficulty"` or plain GRPO.

    A `None` from this reward always means a failure (never "not applicable"): `none_means_failure` is `True`, so
    [`~adagrpo_trl.AdaGRPOTrainer`] drops the other reward functions' values of a failed row too (the row is then
    unscorable: zero advantage, out of its group's baseline) instead of training on the remaining functions' partial
    reward, and its gate modes that trust the reward (`"adaptive"`, `"discriminability"`) do not admit the prompt.

    Args:
        ranker (`Ranker`):
            Any object with `score(contexts: list[dict], candidate_item_ids: list[str]) -> Sequence[float]`, e.g.
            [`~adagrpo_trl.rankers.SASRecRanker`] or [`~adagrpo_trl.rankers.HTTPRanker`].
        catalog (`ItemCatalog`):
            Maps SID strings to item ids; only `sid_to_item(sid) -> str | None` (`None` = not an item) is used.
        invalid_reward (`float`, *optional*, defaults to `-1.0`):
            Reward of a completion that is not a catalog item. It is returned as is (not transformed): keep it below
            the transformed scores (e.g. `-1.0` with `"sigmoid"` or `"group_rank"`, whose scores lie in `[0, 1]`).
        transform (`str`, *optional*, defaults to `"raw"`):
            `"raw"`, `"sigmoid"` or `"group_rank"` (see above).
        num_generations (`int`, *optional*):
            Group size of `"group_rank"`. Defaults to the calling trainer's `num_generations` (or
            `num_generations_eval` in evaluation) when it can be found through TRL's `log_metric` argument.
        batch_size (`int`, *optional*, defaults to `256`):
            Pairs per `ranker.score` call.
        on_failure (`str`, *optional*, defaults to `"raise"`):
            `"raise"` or `"gate_out"` (see above).
        timeout (`float`, *optional*):
            Seconds one `ranker.score` call may take; a slower call fails its batch. The call runs in a worker thread
            that cannot be interrupted: a hung in-process ranker keeps its thread, so prefer the ranker's own timeouts
            ([`~adagrpo_trl.rankers.HTTPRanker`] has them). `None` waits indefinitely.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            Decodes token ids in [`invalid_mask`]. Without it, [`invalid_mask`] answers from the completions this
            object has scored (AdaGRPO calls it right after the rollouts were scored, so this suffices there).
        context_columns (`list[str]`, *optional*):
            Dataset columns to put in each context. Defaults to every column TRL passes (all but `prompt` and
            `completion`). Restrict it for remote rankers, so that only what they need goes over the wire.
        deduplicate (`bool`, *optional*, defaults to `True`):
            Score identical `(context, item)` pairs of one call once.
        name (`str`, *optional*, defaults to `"ranker"`):
            The `__name__` under which TRL logs this reward.
        user_histories ([`~adagrpo_trl.data.UserHistories`], *optional*):
            Replaces each context's `history` by the user's full past (from the row's `user_id` and
            `target_position`), so a ranker reads more than the policy's truncated prompt. The ground truth and the
            gate's negatives are scored in the same contexts.
        popularity_bias (`float`, *optional*, defaults to `0.0`):
            λ of the exposure-bias knob: the ranker is wrapped in a
            [`~adagrpo_trl.rankers.PopularityBiasedRanker`] that adds `λ·log(1 + item_counts[item])` to its scores
            (before `transform`). Needs `item_counts` when > 0.
        item_counts (`Mapping[str, int]`, *optional*):
            Training frequency of each item, for `popularity_bias`.

    Example:

    ```python
    from adagrpo_trl import AdaGRPOTrainer, ItemCatalog
    from adagrpo_trl.rankers import SASRecRanker
    from adagrpo_trl.rewards import RankerReward

    reward = RankerReward(SASRecRanker.load("ranker"), ItemCatalog.load("catalog.json"), transform="sigmoid")
    trainer = AdaGRPOTrainer(model=..., reward_funcs=reward, args=..., train_dataset=...)
    ```
    """

    none_means_failure = True

    def __init__(
        self,
        ranker: Ranker,
        catalog: SIDCatalog,
        *,
        invalid_reward: float = -1.0,
        transform: str = "raw",
        num_generations: int | None = None,
        batch_size: int = 256,
        on_failure: str = "raise",
        timeout: float | None = None,
        tokenizer: Any = None,
        context_columns: Sequence[str] | None = None,
        deduplicate: bool = True,
        name: str = "ranker",
        user_histories: Any = None,
        popularity_bias: float = 0.0,
        item_counts: Mapping[str, int] | None = None,
    ):
        if not callable(getattr(ranker, "score", None)):
            raise TypeError(
                f"ranker must have a `score(contexts, candidate_item_ids)` method, got {type(ranker).__name__}."
            )
        if not callable(getattr(catalog, "sid_to_item", None)):
            raise TypeError(f"catalog must have a `sid_to_item(sid)` method, got {type(catalog).__name__}.")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {list(TRANSFORMS)}, got transform={transform!r}.")
        if on_failure not in FAILURE_POLICIES:
            raise ValueError(f"on_failure must be one of {list(FAILURE_POLICIES)}, got on_failure={on_failure!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got batch_size={batch_size!r}.")
        if num_generations is not None and (
            isinstance(num_generations, bool) or not isinstance(num_generations, int) or num_generations < 1
        ):
            raise ValueError(f"num_generations must be an integer >= 1, got num_generations={num_generations!r}.")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got timeout={timeout!r}.")
        if not isinstance(invalid_reward, (int, float)) or not math.isfinite(invalid_reward):
            raise ValueError(f"invalid_reward must be a finite number, got invalid_reward={invalid_reward!r}.")
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"name must be a non-empty string without '/', got name={name!r}.")
        check_popularity_bias(popularity_bias)
        if popularity_bias != 0.0 or item_counts is not None:
            if item_counts is None:
                raise ValueError(f"popularity_bias={popularity_bias!r} needs item_counts (training item frequencies).")
            ranker = PopularityBiasedRanker(ranker, item_counts, popularity_bias)  # validates popularity_bias
        if user_histories is not None and not callable(getattr(user_histories, "with_full_history", None)):
            raise TypeError(f"user_histories must be a UserHistories, got {type(user_histories).__name__}.")
        self.user_histories = user_histories
        self.popularity_bias = float(popularity_bias)
        self.ranker = ranker
        self.catalog = catalog
        self.invalid_reward = float(invalid_reward)
        self.transform = transform
        self.num_generations = num_generations
        self.batch_size = batch_size
        self.on_failure = on_failure
        self.timeout = timeout
        self.tokenizer = tokenizer
        self.context_columns = list(context_columns) if context_columns is not None else None
        self.deduplicate = deduplicate
        self.__name__ = name
        self.num_calls = 0
        self.num_failures = 0
        self._validity: OrderedDict[tuple[int, ...], bool] = OrderedDict()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return (
            f"RankerReward(name={self.__name__!r}, ranker={self.ranker!r}, transform={self.transform!r}, "
            f"on_failure={self.on_failure!r})"
        )

    @property
    def supports_gate_scoring(self) -> bool:
        """Whether AdaGRPO's gate may score ground truths and negatives with this reward (not with `"group_rank"`)."""
        return self.transform != "group_rank"

    # -- item parsing --------------------------------------------------------------------------------------------

    def parse_item(self, completion: Any) -> str | None:
        """The catalog item id of a completion (text or conversational), or `None` if it is not a catalog item."""
        return self.catalog.sid_to_item(normalize_sid_text(completion_text(completion)))

    def invalid_mask(self, completion_ids: list[list[int]]) -> list[bool]:
        """
        Whether each completion (token ids, as generated) is not a catalog item. AdaGRPO logs the share of flagged
        rollouts as `gate/invalid_rollout_rate`.

        With a `tokenizer`, the ids are decoded as TRL decodes completions (`skip_special_tokens=True`). Without one,
        the answer comes from the completions this object has scored (the last 65,536 distinct id sequences), and an
        unseen sequence raises a `KeyError` asking for a tokenizer.
        """
        if self.tokenizer is not None:
            texts = self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
            return [self.catalog.sid_to_item(normalize_sid_text(text)) is None for text in texts]
        mask = []
        with self._lock:
            for ids in completion_ids:
                key = tuple(int(i) for i in ids)
                if key not in self._validity:
                    raise KeyError(
                        f"RankerReward {self.__name__!r} has not scored the completion ids {list(key)} and has no "
                        "tokenizer to decode them; pass tokenizer=... to RankerReward."
                    )
                mask.append(not self._validity[key])
        return mask

    def _remember_validity(self, completion_ids: Sequence[Sequence[int]] | None, valid: list[bool]) -> None:
        if completion_ids is None or len(completion_ids) != len(valid):
            return
        with self._lock:
            for ids, ok in zip(completion_ids, valid, strict=True):
                key = tuple(int(i) for i in ids)
                self._validity[key] = ok
                self._validity.move_to_end(key)
            while len(self._validity) > _MAX_VALIDITY_CACHE:
                self._validity.popitem(last=False)

    # -- scoring -------------------------------------------------------------------------------------------------

    def __call__(
        self,
        prompts: list[Any] | None = None,
        completions: list[Any] | None = None,
        completion_ids: list[list[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if completions is None:
            raise ValueError(f"RankerReward {self.__name__!r} needs `completions`.")
        num_rows = len(completions)
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        trainer = getattr(log_metric, "__self__", None)  # TRL's bound method: its trainer, for group sizes

        contexts = self._contexts(kwargs, num_rows)
        item_ids = [self.parse_item(completion) for completion in completions]
        valid = [item is not None for item in item_ids]
        self._remember_validity(completion_ids, valid)

        rows = [i for i in range(num_rows) if valid[i]]
        scores, failed = self.score_items([contexts[i] for i in rows], [item_ids[i] for i in rows])
        raw: list[float | None] = [None] * num_rows
        for i, score, bad in zip(rows, scores, failed, strict=True):
            raw[i] = None if bad else score
        num_failed = sum(failed)

        if self.transform == "group_rank":
            rewards = self._group_rank(raw, valid, prompts, trainer)
        elif self.transform == "sigmoid":
            rewards = [None if s is None else _sigmoid(s) for s in raw]
        else:
            rewards = list(raw)
        for i in range(num_rows):
            if not valid[i]:
                rewards[i] = self.invalid_reward

        self.num_calls += 1
        if log_metric is not None:
            log_metric(f"rewards/{self.__name__}/failures", float(num_failed))
            log_metric(f"rewards/{self.__name__}/invalid_rate", (num_rows - len(rows)) / max(num_rows, 1))
        return rewards

    def score_items(self, contexts: list[dict[str, Any]], item_ids: list[str]) -> tuple[list[float], list[bool]]:
        """
        Raw ranker scores of `(context, item)` pairs under the failure policy, no transform.

        Returns:
            `tuple[list[float], list[bool]]`: the scores (NaN where failed) and whether each pair failed. With
            `on_failure="raise"` a failure raises a [`RankerError`] instead.
        """
        if len(contexts) != len(item_ids):
            raise ValueError(f"Got {len(contexts)} contexts for {len(item_ids)} items.")
        if not item_ids:
            return [], []
        if self.deduplicate:
            unique: dict[tuple[str, str], int] = {}
            index, order = [], []
            for row, (context, item) in enumerate(zip(contexts, item_ids, strict=True)):
                u = unique.setdefault((_context_key(context), item), len(unique))
                if u == len(order):
                    order.append(row)
                index.append(u)
        else:
            index = list(range(len(item_ids)))
            order = index
        unique_contexts = [contexts[row] for row in order]
        unique_items = [item_ids[row] for row in order]

        unique_scores = [math.nan] * len(order)
        unique_failed = [False] * len(order)
        for batch_number, start in enumerate(range(0, len(order), self.batch_size)):
            stop = min(start + self.batch_size, len(order))
            batch_items = unique_items[start:stop]
            scores, error = self._score_batch(unique_contexts[start:stop], batch_items)
            if error is not None:
                self._fail(error, batch_number, batch_items, stop - start)
                for u in range(start, stop):
                    unique_failed[u] = True
                continue
            bad = [u for u, s in enumerate(scores) if not _usable(s)]
            if bad:
                self._fail(
                    f"{len(bad)} non-finite or float32-overflowing score(s), e.g. {scores[bad[0]]!r} for item {batch_items[bad[0]]!r}",
                    batch_number,
                    batch_items,
                    len(bad),
                )
            for u, s in enumerate(scores):
                unique_scores[start + u] = s
                unique_failed[start + u] = not _usable(s)
        failed = [unique_failed[u] for u in index]
        self.num_failures += sum(failed)
        return [unique_scores[u] for u in index], failed

    def _score_batch(self, contexts: list[dict[str, Any]], item_ids: list[str]) -> tuple[list[float], str | None]:
        """One `ranker.score` call: the scores as floats, or the reason it failed."""
        try:
            if self.timeout is None:
                result = self.ranker.score(contexts, item_ids)
            else:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.__name__}-score")
                future = self._executor.submit(self.ranker.score, contexts, item_ids)
                try:
                    result = future.result(timeout=self.timeout)
                except FutureTimeoutError:
                    # The hung call keeps its worker; later calls get a fresh one.
                    self._executor.shutdown(wait=False)
                    self._executor = None
                    return [], f"timed out after {self.timeout} s"
            scores = [float(s) for s in _as_list(result)]
        except Exception as error:  # any ranker failure falls under the failure policy
            return [], f"{type(error).__name__}: {error}"
        if len(scores) != len(item_ids):
            return [], f"returned {len(scores)} scores for {len(item_ids)} candidates"
        return scores, None

    def _fail(self, reason: str, batch_number: int, batch_items: list[str], num_rows: int) -> None:
        message = (
            f"Ranker reward {self.__name__!r} ({self.ranker!r}) failed on batch {batch_number} "
            f"({len(batch_items)} pairs, first items {batch_items[:3]}): {reason}."
        )
        if self.on_failure == "raise":
            raise RankerError(message + " Set on_failure='gate_out' to gate such samples out instead.")
        logger.warning("%s %d row(s) gated out.", message, num_rows)

    def _contexts(self, kwargs: dict[str, Any], num_rows: int) -> list[dict[str, Any]]:
        columns = self.context_columns
        if columns is None:
            columns = [key for key in kwargs if key not in _TRL_KWARGS]
        else:
            missing = [key for key in columns if key not in kwargs]
            if missing:
                raise ValueError(
                    f"RankerReward {self.__name__!r}: context columns {missing} are not among the dataset columns "
                    f"passed to the reward ({sorted(k for k in kwargs if k not in _TRL_KWARGS)}). Keep "
                    "remove_unused_columns=False."
                )
        for key in columns:
            value = kwargs[key]
            if not isinstance(value, (list, tuple)) or len(value) != num_rows:
                raise ValueError(
                    f"RankerReward {self.__name__!r}: column {key!r} must be a list with one value per completion "
                    f"({num_rows}), got {type(value).__name__}."
                )
        contexts = [{key: kwargs[key][i] for key in columns} for i in range(num_rows)]
        if self.user_histories is not None:
            missing = [key for key in ("user_id", "target_position") if key not in kwargs]
            if missing:
                raise ValueError(
                    f"RankerReward {self.__name__!r}: user_histories needs the dataset columns {missing} (prepare the "
                    "data again with this version, and keep remove_unused_columns=False)."
                )
            full = self.user_histories.with_full_history(
                [
                    {"user_id": kwargs["user_id"][i], "target_position": kwargs["target_position"][i]}
                    for i in range(num_rows)
                ]
            )
            for context, row in zip(contexts, full, strict=True):
                context["history"] = row["history"]
        return contexts

    # -- transforms ----------------------------------------------------------------------------------------------

    def _group_rank(
        self, scores: list[float | None], valid: list[bool], prompts: list[Any] | None, trainer: Any
    ) -> list[float | None]:
        group = self.num_generations
        if group is None and trainer is not None:
            training = getattr(getattr(trainer, "model", None), "training", True)
            group = getattr(trainer, "num_generations" if training else "num_generations_eval", None)
        if not group:
            raise ValueError(
                f"RankerReward {self.__name__!r}: transform='group_rank' needs num_generations (the group size)."
            )
        num_rows = len(scores)
        if num_rows % group != 0:
            raise ValueError(
                f"RankerReward {self.__name__!r}: transform='group_rank' ranks within groups of num_generations={group} "
                f"consecutive rows, but got {num_rows} rows. Groups must not straddle processes: make "
                "per_device_train_batch_size * steps_per_generation a multiple of num_generations."
            )
        if prompts is not None and len(prompts) == num_rows:
            for start in range(0, num_rows, group):
                first = _context_key(prompts[start])
                if any(_context_key(p) != first for p in prompts[start + 1 : start + group]):
                    raise ValueError(
                        f"RankerReward {self.__name__!r}: transform='group_rank' expects each group of "
                        f"num_generations={group} consecutive rows to share one prompt; rows {start}-{start + group - 1} "
                        "do not."
                    )
        out: list[float | None] = [None] * num_rows
        for start in range(0, num_rows, group):
            members = [i for i in range(start, start + group) if valid[i] and scores[i] is not None]
            for i, rank in zip(members, _scaled_ranks([scores[i] for i in members]), strict=True):
                out[i] = rank
        return out


def _scaled_ranks(values: list[float]) -> list[float]:
    """Average ranks (ties share their mean rank) scaled to [0, 1]; a single value gets 0.5."""
    n = len(values)
    if n == 0:
        return []
    if n == 1:
        return [0.5]
    order = sorted(range(n), key=lambda i: values[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return [r / (n - 1) for r in ranks]


def _usable(score: float) -> bool:
    """A finite score that stays finite as TRL's float32 reward."""
    return math.isfinite(score) and abs(score) <= _FLOAT32_MAX


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _as_list(result: Any) -> list[Any]:
    if hasattr(result, "tolist"):  # numpy arrays, torch tensors
        result = result.tolist()
    if not isinstance(result, (list, tuple)):
        raise TypeError(f"score() must return a sequence of floats, got {type(result).__name__}")
    return list(result)


def _context_key(value: Any) -> str:
    """A hashable, order-independent key of a context dict (or any JSON-like value)."""
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)
