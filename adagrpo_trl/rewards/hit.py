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
The ground-truth hit reward: 1 when a rollout is the row's ground-truth item, else 0.

Every public offline result where RL beats SFT in generative recommendation keeps such a term beside the ranker's
score. AdaGRPO's gate must not judge with it: a hit reward ranks the ground truth first by construction, so R1 would
always hold. Give it a gate weight of 0 with `AdaGRPOConfig.gate_reward_weights` (the trainer refuses a nonzero one).
"""

from __future__ import annotations

import math
from typing import Any

from ..sid import normalize_sid_text
from .ranker_reward import SIDCatalog, completion_text


class HitReward:
    """
    A TRL reward function: `hit_reward` for a completion that is the row's ground-truth item, `miss_reward` for another
    catalog item, `invalid_reward` for a completion that is no catalog item.

    Args:
        catalog (`ItemCatalog`):
            Maps completions (SID strings) to item ids.
        hit_reward, miss_reward, invalid_reward (`float`, *optional*, default to `1.0`, `0.0`, `0.0`):
            The three values (a negative `invalid_reward` adds a hallucination penalty).
        target_column (`str`, *optional*, defaults to `"target_item"`):
            The dataset column with the ground-truth item id.
        name (`str`, *optional*, defaults to `"hit"`):
            The `__name__` under which TRL logs this reward.

    Example:

    ```python
    from adagrpo_trl import AdaGRPOConfig
    from adagrpo_trl.rewards import HitReward, RankerReward

    reward_funcs = [HitReward(catalog), RankerReward(ranker, catalog, transform="sigmoid")]
    args = AdaGRPOConfig(..., reward_weights=[1.0, 1.0], gate_reward_weights=[0.0, 1.0])  # the gate: ranker alone
    ```
    """

    # The ground truth scores the maximum by construction: a gate weighting that uses it is refused.
    scores_ground_truth_at_max = True
    supports_gate_scoring = True

    def __init__(
        self,
        catalog: SIDCatalog,
        hit_reward: float = 1.0,
        miss_reward: float = 0.0,
        invalid_reward: float = 0.0,
        target_column: str = "target_item",
        name: str = "hit",
    ):
        if not callable(getattr(catalog, "sid_to_item", None)):
            raise TypeError(f"catalog must have a `sid_to_item(sid)` method, got {type(catalog).__name__}.")
        for key, value in (
            ("hit_reward", hit_reward),
            ("miss_reward", miss_reward),
            ("invalid_reward", invalid_reward),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {key}={value!r}.")
        if not hit_reward > max(miss_reward, invalid_reward):
            raise ValueError(
                f"hit_reward={hit_reward!r} must exceed miss_reward={miss_reward!r} and invalid_reward={invalid_reward!r}."
            )
        self.catalog = catalog
        self.hit_reward, self.miss_reward, self.invalid_reward = (
            float(hit_reward),
            float(miss_reward),
            float(invalid_reward),
        )
        self.target_column = target_column
        self.__name__ = name

    def __repr__(self) -> str:
        return f"HitReward(name={self.__name__!r}, hit={self.hit_reward}, miss={self.miss_reward})"

    def __call__(self, prompts: Any = None, completions: list[Any] | None = None, **kwargs: Any) -> list[float]:
        if completions is None:
            raise ValueError(f"HitReward {self.__name__!r} needs `completions`.")
        targets = kwargs.get(self.target_column)
        if targets is None or len(targets) != len(completions):
            raise ValueError(
                f"HitReward {self.__name__!r} needs the dataset column {self.target_column!r} with one value per "
                "completion (keep remove_unused_columns=False)."
            )
        rewards = []
        for completion, target in zip(completions, targets, strict=True):
            item = self.catalog.sid_to_item(normalize_sid_text(completion_text(completion)))
            if item is None:
                rewards.append(self.invalid_reward)
            else:
                rewards.append(self.hit_reward if str(item) == str(target) else self.miss_reward)
        return rewards
