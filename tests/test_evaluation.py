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

import math

import numpy as np
import pytest

from adagrpo_trl import ItemCatalog
from adagrpo_trl.evaluation import (
    evaluate_recommendations,
    hallucination_rate,
    hits_at_k,
    ndcg_at_k,
    paired_bootstrap,
    recommend,
)

from . import toy


RANKED = [["a", "b", "c"], [None, "x", "a"], ["b", None, None], ["z", "y", "x"]]
TARGETS = ["a", "a", "a", "x"]


def test_hits_ndcg_and_hallucination_by_hand():
    assert hits_at_k(RANKED, TARGETS, 1).tolist() == [1, 0, 0, 0]
    assert hits_at_k(RANKED, TARGETS, 3).tolist() == [1, 1, 0, 1]
    np.testing.assert_allclose(ndcg_at_k(RANKED, TARGETS, 3), [1.0, 0.5, 0.0, 0.5])
    np.testing.assert_allclose(ndcg_at_k(RANKED, TARGETS, 2), [1.0, 0.0, 0.0, 0.0])
    assert hallucination_rate(RANKED, k=3) == pytest.approx(3 / 12)
    assert hallucination_rate(RANKED, k=1) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="3 ranked lists for 4 targets"):
        hits_at_k(RANKED[:3], TARGETS, 1)


def test_paired_bootstrap():
    a = np.zeros(200)
    b = np.r_[np.ones(50), np.zeros(150)]
    result = paired_bootstrap(a, b, seed=1)
    assert result["diff"] == pytest.approx(0.25)
    assert 0.15 < result["low"] < 0.25 < result["high"] < 0.35
    assert result["p_value"] < 0.01
    same = paired_bootstrap(b, b)
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap(a, b[:10])


def _catalog():
    return ItemCatalog([f"item{i}" for i in range(len(toy.ITEMS))], toy.ITEMS)


def test_constrained_beam_search_returns_the_whole_catalog_ranked(tokenizer):
    catalog = _catalog()
    model = toy.make_model(tokenizer)
    prompts = [row["prompt"] for row in toy.make_dataset(3)]
    ranked = recommend(model, tokenizer, prompts, catalog, num_beams=16, constrained=True, show_progress=False)
    for items in ranked:
        assert sorted(items) == sorted(catalog.item_ids)  # width = catalog size: every item exactly once


def test_evaluate_recommendations_properties(tokenizer):
    catalog = _catalog()
    model = toy.make_model(tokenizer)
    dataset = [
        {"prompt": row["prompt"], "target_item": catalog.sid_to_item(row["completion"])} for row in toy.make_dataset(6)
    ]
    results = evaluate_recommendations(
        model,
        tokenizer,
        dataset,
        catalog,
        ks=(1, 5, 16),
        num_beams=16,
        hallucination_k=16,
        show_progress=False,
        return_per_sample=True,
    )
    assert results["num_samples"] == 6
    assert results["constrained/hr@16"] == 1.0  # every catalog item is returned
    assert 0 < results["hallucination"] <= 1  # an untrained policy writes invalid SIDs unconstrained
    for prefix in ("", "constrained/"):
        assert results[f"{prefix}hr@1"] <= results[f"{prefix}hr@5"] <= results[f"{prefix}hr@16"]
        assert results[f"{prefix}ndcg@16"] <= results[f"{prefix}hr@16"]
        assert math.isclose(results[f"{prefix}hr@5"], results["per_sample"][f"{prefix}hr@5"].mean())


def test_evaluate_rejects_bad_rows(tokenizer):
    catalog = _catalog()
    model = toy.make_model(tokenizer)
    with pytest.raises(ValueError, match="'unknown' is not in the catalog"):
        evaluate_recommendations(
            model,
            tokenizer,
            [{"prompt": "x", "target_item": "unknown"}],
            catalog,
            ks=(1,),
            hallucination_k=1,
            num_beams=4,
        )
    with pytest.raises(ValueError, match="no column 'target_item'"):
        evaluate_recommendations(model, tokenizer, [{"prompt": "x"}], catalog, ks=(1,), hallucination_k=1, num_beams=4)
    with pytest.raises(ValueError, match="num_beams=4"):
        evaluate_recommendations(model, tokenizer, [{"prompt": "x", "target_item": "item0"}], catalog, num_beams=4)
