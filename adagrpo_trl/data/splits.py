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
Leave-one-out splits and next-item datasets in TRL's prompt-completion format.

Per user, interactions are ordered by timestamp; **ties keep the order of the log** (a stable sort), so a log written in
event order splits as it was written. The last item is the test target, the second-to-last the validation target and
the rest is the training prefix. Users with fewer than `min_interactions` (default 3) interactions are dropped, and the
number dropped is returned.

- train: one example per position `t >= 1` of the training prefix (a sliding window): the items before `t` predict
  item `t`.
- validation: the training prefix predicts the second-to-last item.
- test: everything but the last item (validation item included) predicts the last item.

Histories keep the `max_history` most recent items (TRL does not truncate prompts). Each row has `prompt` (the history
as SID strings in a template), `completion` (the target's SID string), and the context columns `user_id`, `history`
(item ids, oldest first) and `target_item` (item id), which GRPO passes to reward functions as keyword arguments.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from datasets import Dataset, DatasetDict, Features, List, Value


logger = logging.getLogger(__name__)

DEFAULT_PROMPT_TEMPLATE = "user history: {history} next item:"
# Words of the default template, for tokenizers built from scratch (`build_sid_tokenizer(..., words=PROMPT_WORDS)`).
PROMPT_WORDS = ("user", "history:", "next", "item:")

ROW_FEATURES = Features(
    {
        "prompt": Value("string"),
        "completion": Value("string"),
        "user_id": Value("string"),
        "history": List(Value("string")),
        "target_item": Value("string"),
    }
)


@dataclass
class LeaveOneOutSplit:
    """
    Chronological item sequences of the users kept by [`leave_one_out_split`].

    Args:
        user_ids (`list[str]`):
            The kept users, sorted by id (as strings).
        sequences (`list[list[str]]`):
            Each user's item ids, oldest first (ties in log order); at least `min_interactions` long.
        num_dropped_users (`int`):
            Users dropped for having fewer than `min_interactions` interactions.
    """

    user_ids: list[str]
    sequences: list[list[str]]
    num_dropped_users: int

    @property
    def train_sequences(self) -> list[list[str]]:
        """Each user's training prefix (all but the last two items): the only part SIDs or rankers may be fit on."""
        return [sequence[:-2] for sequence in self.sequences]

    def train_examples(self, max_history: int | None = None) -> list[dict[str, object]]:
        """Sliding-window examples of every training prefix, as `{"user_id", "history", "target_item"}` dicts."""
        return [
            {"user_id": user_id, "history": history, "target_item": target}
            for user_id, sequence in zip(self.user_ids, self.sequences, strict=True)
            for history, target in sliding_window_examples(sequence[:-2], max_history)
        ]

    def validation_examples(self, max_history: int | None = None) -> list[dict[str, object]]:
        """One example per user: the training prefix predicts the second-to-last item."""
        return [
            {"user_id": user_id, "history": _truncate(sequence[:-2], max_history), "target_item": sequence[-2]}
            for user_id, sequence in zip(self.user_ids, self.sequences, strict=True)
        ]

    def test_examples(self, max_history: int | None = None) -> list[dict[str, object]]:
        """One example per user: all but the last item (validation target included) predict the last item."""
        return [
            {"user_id": user_id, "history": _truncate(sequence[:-1], max_history), "target_item": sequence[-1]}
            for user_id, sequence in zip(self.user_ids, self.sequences, strict=True)
        ]


def _check_max_history(max_history: int | None) -> None:
    if max_history is not None and (not isinstance(max_history, int) or max_history < 1):
        raise ValueError(f"max_history must be a positive integer or None, got {max_history!r}.")


def _truncate(history: Sequence[str], max_history: int | None) -> list[str]:
    history = list(history)
    return history if max_history is None else history[-max_history:]


def sliding_window_examples(sequence: Sequence[str], max_history: int | None = None) -> list[tuple[list[str], str]]:
    """
    `(history, target)` for every position `t >= 1` of `sequence`: `history` is `sequence[:t]` cut to its
    `max_history` most recent items and `target` is `sequence[t]`.

    >>> sliding_window_examples(["a", "b", "c"], max_history=1)
    [(['a'], 'b'), (['b'], 'c')]
    """
    _check_max_history(max_history)
    sequence = list(sequence)
    return [
        (sequence[0 if max_history is None else max(0, t - max_history) : t], sequence[t])
        for t in range(1, len(sequence))
    ]


def _check_log(log_df: pd.DataFrame) -> None:
    missing = [column for column in ("user_id", "item_id", "timestamp") if column not in log_df.columns]
    if missing:
        raise ValueError(
            f"The log is missing column(s) {missing}; it has {list(log_df.columns)} (load it with "
            "adagrpo_trl.data.loaders, which normalises to user_id, item_id, timestamp)."
        )
    if len(log_df) == 0:
        raise ValueError("The log is empty.")
    for column in ("user_id", "item_id", "timestamp"):
        missing_values = log_df[column].isna().to_numpy()
        if missing_values.any():
            raise ValueError(f"The log has a missing {column} at row {int(missing_values.argmax())}.")


def leave_one_out_split(log_df: pd.DataFrame, min_interactions: int = 3) -> LeaveOneOutSplit:
    """
    Orders each user's interactions by timestamp (ties in log order) and keeps users with at least
    `min_interactions` interactions.

    Args:
        log_df (`pd.DataFrame`):
            A log with columns `user_id`, `item_id` and `timestamp` (e.g. from [`~adagrpo_trl.data.load_recbole`]).
            Ids are compared as strings. Repeated interactions with an item are kept.
        min_interactions (`int`, *optional*, defaults to `3`):
            Minimum interactions per user (at least 3: one to train on, one for validation, one for test).

    Returns:
        [`LeaveOneOutSplit`]: the kept users' sequences and the number of dropped users.
    """
    if not isinstance(min_interactions, int) or min_interactions < 3:
        raise ValueError(f"min_interactions must be an integer >= 3, got {min_interactions!r}.")
    _check_log(log_df)
    frame = pd.DataFrame(
        {
            "user_id": log_df["user_id"].astype(str).to_numpy(),
            "item_id": log_df["item_id"].astype(str).to_numpy(),
            "timestamp": log_df["timestamp"].to_numpy(),
        }
    )
    # a stable sort by (user, timestamp): equal timestamps keep their order in the log
    frame = frame.sort_values(["user_id", "timestamp"], kind="stable")
    grouped = frame.groupby("user_id", sort=True)["item_id"].agg(list)
    lengths = grouped.map(len)
    kept = grouped[lengths >= min_interactions]
    num_dropped = int((lengths < min_interactions).sum())
    if num_dropped:
        logger.info(
            "Dropped %d of %d users with fewer than %d interactions.", num_dropped, len(grouped), min_interactions
        )
    return LeaveOneOutSplit(
        user_ids=[str(user) for user in kept.index], sequences=list(kept.tolist()), num_dropped_users=num_dropped
    )


def format_prompt(history_sids: Sequence[str], template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """
    The prompt of a history: SID strings joined with spaces and put into `template` at `{history}`.

    >>> format_prompt(["<a_1><b_2>", "<a_0><b_5>"])
    'user history: <a_1><b_2> <a_0><b_5> next item:'
    """
    return template.format(history=" ".join(history_sids))


def _rows(
    examples: list[dict[str, object]], item_to_sid: Mapping[str, str], template: str, split: str
) -> dict[str, list]:
    columns: dict[str, list] = {name: [] for name in ROW_FEATURES}
    for example in examples:
        history, target = example["history"], example["target_item"]
        try:
            history_sids = [item_to_sid[item] for item in history]
            target_sid = item_to_sid[target]
        except KeyError as error:
            raise ValueError(
                f"Item {error.args[0]!r} (user {example['user_id']!r}, {split} split) has no SID in item_to_sid; "
                "build the SIDs over every item of the log."
            ) from None
        columns["prompt"].append(format_prompt(history_sids, template))
        columns["completion"].append(target_sid)
        columns["user_id"].append(example["user_id"])
        columns["history"].append(list(history))
        columns["target_item"].append(target)
    return columns


def build_datasets(
    log_df: pd.DataFrame,
    item_to_sid: Mapping[str, str],
    max_history: int = 20,
    min_interactions: int = 3,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
) -> DatasetDict:
    """
    Leave-one-out next-item datasets in TRL's prompt-completion format.

    Args:
        log_df (`pd.DataFrame`):
            A log with columns `user_id`, `item_id` and `timestamp`.
        item_to_sid (`Mapping[str, str]`):
            Item id -> SID string (e.g. [`~adagrpo_trl.semantic_ids.SemanticIDResult.item_to_sid`]); every item of
            the kept users must have one.
        max_history (`int`, *optional*, defaults to `20`):
            Histories keep this many most recent items.
        min_interactions (`int`, *optional*, defaults to `3`):
            Users with fewer interactions are dropped (the count is logged; [`leave_one_out_split`] returns it).
        prompt_template (`str`, *optional*, defaults to `"user history: {history} next item:"`):
            The prompt, with `{history}` replaced by the history's SIDs joined with spaces.

    Returns:
        [`~datasets.DatasetDict`] with `train` (sliding windows over the training prefixes), `validation` and `test`
        (one row per user), each with columns `prompt`, `completion`, `user_id`, `history` and `target_item`.
    """
    _check_max_history(max_history)
    if "{history}" not in prompt_template:
        raise ValueError(f"prompt_template must contain '{{history}}', got {prompt_template!r}.")
    split = leave_one_out_split(log_df, min_interactions=min_interactions)
    if not split.user_ids:
        raise ValueError(
            f"No user has at least {min_interactions} interactions ({split.num_dropped_users} users dropped)."
        )
    examples = {
        "train": split.train_examples(max_history),
        "validation": split.validation_examples(max_history),
        "test": split.test_examples(max_history),
    }
    datasets = DatasetDict(
        {
            name: Dataset.from_dict(_rows(rows, item_to_sid, prompt_template, name), features=ROW_FEATURES)
            for name, rows in examples.items()
        }
    )
    logger.info(
        "Built next-item datasets: %d users (%d dropped), %d train / %d validation / %d test rows.",
        len(split.user_ids),
        split.num_dropped_users,
        len(datasets["train"]),
        len(datasets["validation"]),
        len(datasets["test"]),
    )
    return datasets
