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
Reward functions: [`RankerReward`] (any ranker as a TRL reward function and as the scorer of AdaGRPO's gate),
[`HitReward`] (the ground-truth hit) and the
registry that resolves reward names used by recipes ([`get_reward_funcs`]: `"sasrec"`, `"http"`, or a dotted path
`my_pkg.module:my_ranker`). The rankers themselves live in [`adagrpo_trl.rankers`].

The ranker names this package exported before `adagrpo_trl.rankers` existed (`SASRecRanker`, `HTTPRanker`,
`train_ranker`, ...) still import from here; the HTTP ones are imported on first use, so importing this package does
not import Starlette, Uvicorn or HTTPX.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ..rankers.base import Ranker, RankerError
from ..rankers.report import format_quality_report, popularity_buckets, ranker_quality_report
from ..rankers.sasrec import SASRecConfig, SASRecRanker, sequences_from_logs, train_ranker
from .hit import HitReward
from .ranker_reward import RankerReward
from .registry import (
    REWARD_FACTORIES,
    dotted_path_reward,
    get_reward_funcs,
    hit_reward,
    http_reward,
    resolve_dotted_path,
    sasrec_reward,
)


if TYPE_CHECKING:
    from ..rankers.http import HTTPRanker, RankerServerThread, create_app, run_server_in_thread, serve_ranker

# Names of `adagrpo_trl.rankers.http`, imported on first access (it imports Starlette, Uvicorn and HTTPX).
_HTTP_NAMES = ("HTTPRanker", "RankerServerThread", "create_app", "run_server_in_thread", "serve_ranker")


def __getattr__(name: str) -> Any:
    if name in _HTTP_NAMES:
        return getattr(importlib.import_module("..rankers.http", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "REWARD_FACTORIES",
    "HTTPRanker",
    "HitReward",
    "Ranker",
    "RankerError",
    "RankerReward",
    "RankerServerThread",
    "SASRecConfig",
    "SASRecRanker",
    "create_app",
    "dotted_path_reward",
    "format_quality_report",
    "get_reward_funcs",
    "hit_reward",
    "http_reward",
    "popularity_buckets",
    "ranker_quality_report",
    "resolve_dotted_path",
    "run_server_in_thread",
    "sasrec_reward",
    "sequences_from_logs",
    "serve_ranker",
    "train_ranker",
]
