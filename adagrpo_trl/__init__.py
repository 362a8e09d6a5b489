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
from .catalog import ItemCatalog
from .constrained import (
    TrieLogitsProcessor,
    build_generation_config,
    generate_with_shared_prefill,
    make_trie_processor_factory,
)
from .data import PreparedData, UserHistories, prepare_data
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
from .rankers import (
    PopularityBiasedRanker,
    RankerError,
    SASRecConfig,
    SASRecRanker,
    format_quality_report,
    format_teacher_report,
    ranker_quality_report,
    teacher_report,
    train_ranker,
)
from .rewards import HitReward, RankerReward, get_reward_funcs
from .semantic_ids import SemanticIDResult, build_semantic_ids, default_item_features
from .sft import SIDSFTTrainer, build_policy, suggest_policy_size, train_sft
from .sid import codes_to_sids, format_sid, parse_sid, sid_token, sid_vocabulary
from .tokenization import build_sid_tokenizer, load_tokenizer
from .trie import PrefixTrie, build_trie


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
    "HitReward",
    "ItemCatalog",
    "PopularityBiasedRanker",
    "PrefixTrie",
    "PreparedData",
    "RankerError",
    "RankerReward",
    "RecommendationEvalCallback",
    "SASRecConfig",
    "SASRecRanker",
    "SIDSFTTrainer",
    "SemanticIDResult",
    "TrieLogitsProcessor",
    "UserHistories",
    "build_generation_config",
    "build_policy",
    "build_semantic_ids",
    "build_sid_tokenizer",
    "build_trie",
    "codes_to_sids",
    "compute_gate",
    "default_item_features",
    "evaluate_recommendations",
    "format_quality_report",
    "format_sid",
    "format_stratified_analysis",
    "format_teacher_report",
    "generate_with_shared_prefill",
    "get_reward_funcs",
    "load_tokenizer",
    "make_trie_processor_factory",
    "negatives_in_bottom_rho",
    "paired_bootstrap",
    "parse_sid",
    "policy_difficulty",
    "prepare_data",
    "rank_of_ground_truth",
    "ranker_quality_report",
    "reward_top_tau",
    "sample_cross_negatives",
    "sid_token",
    "sid_vocabulary",
    "stratified_analysis",
    "suggest_policy_size",
    "teacher_report",
    "top_fraction_cutoff",
    "train_ranker",
    "train_sft",
]
