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
The user → full-history lookup that lets a ranker read more of a user's past than the policy's prompt holds.

The policy's prompt keeps the `max_history` most recent items (a short prompt is cheap to generate from); a production
ranker reads a long behaviour sequence. Each dataset row carries `user_id` and `target_position` (the target's index in
the user's chronological sequence), and [`UserHistories`] returns `sequence[:target_position]`: the user's whole past
before that target and nothing after it. The lookup stores each user's sequence without its last (test) item, so
neither a training, a validation nor a test row can read its own target or a later item.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..utils import atomic_write_json


USER_HISTORIES_FILE = "user_histories.json"


class UserHistories:
    """
    Each user's chronological item sequence, without its test item, for full-history ranker contexts.

    Args:
        sequences (`Mapping[str, Sequence[str]]`):
            User id → item ids, oldest first (the test item already removed).

    Example:

    ```python
    from adagrpo_trl.data import UserHistories

    histories = UserHistories({"u1": ["a", "b", "c"]})
    histories.history("u1", target_position=2)  # ["a", "b"]: the past of the row whose target is "c"
    ```
    """

    def __init__(self, sequences: Mapping[str, Sequence[str]]):
        self.sequences = {str(user): [str(item) for item in items] for user, items in sequences.items()}

    @classmethod
    def from_split(cls, split: Any) -> UserHistories:
        """The lookup of a [`LeaveOneOutSplit`]: every user's sequence without its last (test) item."""
        return cls({user: sequence[:-1] for user, sequence in zip(split.user_ids, split.sequences, strict=True)})

    def __len__(self) -> int:
        return len(self.sequences)

    def __contains__(self, user_id: object) -> bool:
        return str(user_id) in self.sequences

    def history(self, user_id: Any, target_position: int, max_len: int | None = None) -> list[str]:
        """
        The items of `user_id` before position `target_position`, the `max_len` most recent when given.

        Raises:
            `KeyError`: for an unknown user. `ValueError`: for a position outside `[0, len(sequence)]`, naming both.
        """
        user = str(user_id)
        if user not in self.sequences:
            raise KeyError(f"UserHistories has no user {user_id!r}.")
        sequence = self.sequences[user]
        if isinstance(target_position, bool) or not 0 <= int(target_position) <= len(sequence):
            raise ValueError(
                f"target_position={target_position!r} of user {user_id!r} is outside [0, {len(sequence)}] (the "
                "user's known past); was the lookup built from another split?"
            )
        past = sequence[: int(target_position)]
        return past[-max_len:] if max_len is not None else past

    def with_full_history(
        self, rows: Sequence[Mapping[str, Any]], history_column: str = "history", max_len: int | None = None
    ) -> list[dict[str, Any]]:
        """
        Copies of `rows` (each with `user_id` and `target_position`) whose `history_column` holds the full past.

        Raises:
            `ValueError`: naming the row and the missing column.
        """
        out = []
        for number, row in enumerate(rows):
            missing = [key for key in ("user_id", "target_position") if key not in row]
            if missing:
                raise ValueError(
                    f"Row {number} has no {missing} column(s): full histories need `user_id` and `target_position` "
                    "(prepare the data again with this version)."
                )
            out.append({**row, history_column: self.history(row["user_id"], row["target_position"], max_len)})
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Writes the lookup as JSON, atomically."""
        atomic_write_json(path, self.sequences)

    @classmethod
    def load(cls, path: str | os.PathLike) -> UserHistories:
        """Reads a lookup written by [`save`]."""
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ValueError(f"{path} is not a user-histories file (a JSON object of user id -> item list).")
        return cls(data)
