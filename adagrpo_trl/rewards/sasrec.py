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
"""Moved to [`adagrpo_trl.rankers.sasrec`] and [`adagrpo_trl.rankers.report`]; re-exported here for old imports."""

from ..rankers.report import BUCKETS, format_quality_report, popularity_buckets, ranker_quality_report
from ..rankers.sasrec import SASRecConfig, SASRecModel, SASRecRanker, sequences_from_logs, train_ranker


__all__ = [
    "BUCKETS",
    "SASRecConfig",
    "SASRecModel",
    "SASRecRanker",
    "format_quality_report",
    "popularity_buckets",
    "ranker_quality_report",
    "sequences_from_logs",
    "train_ranker",
]
