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
"""The public API: every name of `adagrpo_trl.__all__` imports, the names README shows import, old paths keep working."""

import importlib

import pytest

import adagrpo_trl


def test_all_is_sorted_complete_and_importable():
    assert adagrpo_trl.__all__ == sorted(adagrpo_trl.__all__)
    assert len(set(adagrpo_trl.__all__)) == len(adagrpo_trl.__all__)
    for name in adagrpo_trl.__all__:
        assert getattr(adagrpo_trl, name) is not None, name
        namespace = {}
        exec(f"from adagrpo_trl import {name}", namespace)  # the form users write
        assert namespace[name] is getattr(adagrpo_trl, name)
    with pytest.raises(AttributeError, match="NOPE"):
        adagrpo_trl.NOPE  # noqa: B018


@pytest.mark.parametrize(
    "module, names",
    [
        (
            "adagrpo_trl",
            ["build_semantic_ids", "SemanticIDResult", "default_item_features", "format_sid", "parse_sid"],
        ),
        ("adagrpo_trl", ["prepare_data", "train_ranker", "ranker_quality_report", "evaluate_recommendations"]),
        ("adagrpo_trl.data", ["prepare_data", "simulate_exposure_biased_logs"]),
        ("adagrpo_trl.rankers", ["SASRecRanker", "HTTPRanker", "serve_ranker", "RankerServerThread"]),
        ("adagrpo_trl.tokenization", ["build_sid_tokenizer", "load_tokenizer"]),
        ("adagrpo_trl.constrained", ["TrieLogitsProcessor", "generate_with_shared_prefill"]),
    ],
)
def test_documented_names_import(module, names):
    imported = importlib.import_module(module)
    for name in names:
        assert hasattr(imported, name), f"{module}.{name}"


def test_moved_names_keep_their_old_paths():
    from adagrpo_trl import semantic_ids, sid, tokenization, trie
    from adagrpo_trl.catalog import PrefixTrie, build_trie, format_sid, parse_sid, token_id_tuple

    assert (PrefixTrie, build_trie, token_id_tuple) == (trie.PrefixTrie, trie.build_trie, trie.token_id_tuple)
    assert (format_sid, parse_sid) == (sid.format_sid, sid.parse_sid)
    assert (tokenization.sid_token, tokenization.sid_vocabulary) == (sid.sid_token, sid.sid_vocabulary)
    assert semantic_ids.codes_to_sids is sid.codes_to_sids
