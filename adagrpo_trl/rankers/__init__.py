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
Rankers: what a ranker is ([`Ranker`], [`RankerError`]), the built-in [`SASRecRanker`] with its training
([`train_ranker`]), its quality report by item popularity ([`ranker_quality_report`]), the teacher report
([`teacher_report`]), the popularity-bias knob ([`PopularityBiasedRanker`]), and a ranker as an HTTP
service ([`HTTPRanker`] client, [`serve_ranker`] / [`RankerServerThread`] server). A ranker becomes a TRL reward
function through [`~adagrpo_trl.rewards.RankerReward`].

The HTTP names are imported on first use, so importing this package does not import Starlette, Uvicorn or HTTPX.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .base import Ranker, RankerError, resolve_dotted_path
from .popularity import PopularityBiasedRanker
from .report import BUCKETS, format_quality_report, popularity_buckets, ranker_quality_report
from .sasrec import (
    SASRecConfig,
    SASRecModel,
    SASRecRanker,
    sequences_from_logs,
    train_ranker,
    train_ranker_from_prepared,
)
from .teacher import format_teacher_report, prepared_teacher_report, teacher_report


if TYPE_CHECKING:
    from .http import HTTPRanker, RankerServerThread, create_app, serve_ranker

# Names of the `http` submodule, imported on first access (it imports Starlette, Uvicorn and HTTPX).
_HTTP_NAMES = ("HTTPRanker", "RankerServerThread", "create_app", "serve_ranker")


def __getattr__(name: str) -> Any:
    if name in _HTTP_NAMES:
        return getattr(importlib.import_module(".http", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUCKETS",
    "HTTPRanker",
    "PopularityBiasedRanker",
    "Ranker",
    "RankerError",
    "RankerServerThread",
    "SASRecConfig",
    "SASRecModel",
    "SASRecRanker",
    "create_app",
    "format_quality_report",
    "format_teacher_report",
    "popularity_buckets",
    "prepared_teacher_report",
    "ranker_quality_report",
    "resolve_dotted_path",
    "sequences_from_logs",
    "serve_ranker",
    "teacher_report",
    "train_ranker",
    "train_ranker_from_prepared",
]
