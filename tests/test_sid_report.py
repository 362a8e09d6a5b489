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
from adagrpo_trl.data import prepare_data, simulate_exposure_biased_logs
from adagrpo_trl.semantic_ids import SemanticIDResult
from adagrpo_trl.sid_report import sid_quality_report, sid_report_markdown


# A hand-made catalog: 2 residual levels + dedup. a/b and d/e collide on the residual codes.
ITEM_IDS = ["a", "b", "c", "d", "e", "f"]
CODES = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1], [2, 1, 0]])
# distinct consecutive pairs: a-b, b-c, d-e, e-f, f-a (e-e is a repeat and is skipped)
SEQUENCES = [["a", "b", "c"], ["d", "e", "e", "f"], ["f", "a"]]


def entropy(*counts):
    total = sum(counts)
    return -sum(count / total * math.log2(count / total) for count in counts)


def check_exact(report, level0_size):
    assert report["num_items"] == 6 and report["num_levels"] == 3
    assert report["collision_rate_before_dedup"] == pytest.approx(1 - 4 / 6)  # 4 distinct residual tuples
    level0, level1 = report["levels"]
    assert level0["codebook_size"] == level0_size and level0["used_codes"] == 3
    assert level0["usage"] == pytest.approx(3 / level0_size)
    assert level0["entropy_bits"] == pytest.approx(entropy(3, 2, 1))  # codes 0, 1, 2 hold 3, 2, 1 items
    assert level0["perplexity"] == pytest.approx(2 ** entropy(3, 2, 1))
    assert level1["used_codes"] == 2 and level1["entropy_bits"] == pytest.approx(entropy(4, 2))
    assert report["num_pairs"] == 5
    depth1, depth2 = report["prefix_grouping"]
    # first code shared by a-b, b-c, d-e (3 of 5); random SIDs: groups of 3, 2, 1 -> (3*2 + 2*1) / (6*5)
    assert depth1 == {"depth": 1, "share": 3 / 5, "random_share": pytest.approx(8 / 30), "lift": pytest.approx(2.25)}
    # first two codes shared by a-b, d-e (2 of 5); groups (0,0):2, (0,1):1, (1,0):2, (2,1):1 -> 4 / 30
    assert depth2 == {"depth": 2, "share": 2 / 5, "random_share": pytest.approx(4 / 30), "lift": pytest.approx(3.0)}


class TestSIDQualityReport:
    def test_codes_array(self):
        check_exact(sid_quality_report(CODES, SEQUENCES, item_ids=ITEM_IDS), level0_size=3)

    def test_catalog(self):
        catalog = ItemCatalog.from_codes(ITEM_IDS, CODES)
        check_exact(sid_quality_report(catalog, SEQUENCES), level0_size=3)

    def test_semantic_id_result_uses_its_codebook_sizes(self):
        result = SemanticIDResult(
            item_ids=ITEM_IDS,
            codes=CODES,
            codebook_sizes=[4, 2, 2],
            collision_rate_before_dedup=1 - 4 / 6,
            code_usage=[0.75, 1.0],
            num_items=6,
        )
        check_exact(sid_quality_report(result, SEQUENCES), level0_size=4)  # one dead code of 4

    def test_without_sequences(self):
        report = sid_quality_report(CODES, item_ids=ITEM_IDS)
        assert "prefix_grouping" not in report and len(report["levels"]) == 2

    def test_markdown(self):
        table = sid_report_markdown(sid_quality_report(CODES, SEQUENCES, item_ids=ITEM_IDS), title="toy")
        assert table.startswith("### toy\n")
        assert "collision rate before dedup 33.33%, 5 consecutive training pairs." in table
        assert "| 0 | 3 | 3 | 100% | 2.7 | 60.00% | 26.67% | 2.25 |" in table
        assert "| 1 | 2 | 2 | 100% | 1.9 | 40.00% | 13.33% | 3.00 |" in table

    def test_errors(self):
        with pytest.raises(ValueError, match=r"Training sequence 1 holds item 'zz', which has no SID"):
            sid_quality_report(CODES, [["a"], ["b", "zz"]], item_ids=ITEM_IDS)
        with pytest.raises(ValueError, match="needs `item_ids`"):
            sid_quality_report(CODES)
        with pytest.raises(ValueError, match=r"one row per item id \(5\)"):
            sid_quality_report(CODES, item_ids=ITEM_IDS[:5])


def test_prepare_writes_the_report_and_the_feature_sources():
    simulated = simulate_exposure_biased_logs(num_users=60, num_items=40, seed=0)
    prepared = prepare_data(simulated.log, simulated.items, num_levels=2, sid_features="cooccurrence", seed=0)
    assert prepared.summary["sid_features"] == "cooccurrence"
    quality = prepared.summary["sid_quality"]
    assert quality["collision_rate_before_dedup"] == prepared.summary["semantic_ids"]["collision_rate_before_dedup"]
    assert [entry["depth"] for entry in quality["prefix_grouping"]] == [1, 2]
    assert [entry["depth"] for entry in quality["validation_prefix_grouping"]] == [1, 2]
    assert "| validation: next item shares prefix | random SIDs | lift |" in sid_report_markdown(quality)
    # the default mix, on a log whose items have no text, goes on with co-occurrence alone
    assert prepare_data(simulated.log, num_levels=2).summary["sid_features"] == "cooccurrence"
    assert prepare_data(simulated.log, simulated.items, num_levels=2).summary["sid_features"] == "text+cooccurrence"
    with pytest.raises(ValueError, match=r"sid_features='text' needs item texts"):
        prepare_data(simulated.log, num_levels=2, sid_features="text")
    with pytest.raises(ValueError, match=r"Unknown SID feature source 'ngrams' in 'text\+ngrams'"):
        prepare_data(simulated.log, simulated.items, sid_features="text+ngrams")
