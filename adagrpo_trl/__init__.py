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
"""AdaGRPO for generative recommendation: NLL-anchored GRPO with a per-sample binary gate, as a TRL extension."""

__version__ = "0.1.0.dev0"

from typing import TYPE_CHECKING, Any

from .adagrpo_config import AdaGRPOConfig
from .adagrpo_trainer import AdaGRPOTrainer
from .analysis import format_stratified_analysis, stratified_analysis
from .callbacks import RecommendationEvalCallback
from .catalog import ItemCatalog, PrefixTrie, build_trie
from .constrained import TrieLogitsProcessor, build_generation_config, make_trie_processor_factory
from .evaluation import evaluate_recommendations, paired_bootstrap
from .gating import (
    compute_gate,
    negatives_in_bottom_rho,
    policy_difficulty,
    rank_of_ground_truth,
    reward_top_tau,
    sample_cross_negatives,
    top_fraction_cutoff,
)
from .rankers import RankerError, SASRecRanker
from .rewards import RankerReward, get_reward_funcs


if TYPE_CHECKING:
    from .rankers.http import HTTPRanker


def __getattr__(name: str) -> Any:
    # The HTTP client is imported on first use, so that importing adagrpo_trl does not import Starlette/Uvicorn/HTTPX.
    if name == "HTTPRanker":
        from .rankers.http import HTTPRanker

        return HTTPRanker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdaGRPOConfig",
    "AdaGRPOTrainer",
    "HTTPRanker",
    "RankerError",
    "RecommendationEvalCallback",
    "RankerReward",
    "SASRecRanker",
    "evaluate_recommendations",
    "format_stratified_analysis",
    "get_reward_funcs",
    "paired_bootstrap",
    "ItemCatalog",
    "PrefixTrie",
    "TrieLogitsProcessor",
    "build_generation_config",
    "build_trie",
    "make_trie_processor_factory",
    "compute_gate",
    "negatives_in_bottom_rho",
    "policy_difficulty",
    "rank_of_ground_truth",
    "reward_top_tau",
    "sample_cross_negatives",
    "stratified_analysis",
    "top_fraction_cutoff",
]
