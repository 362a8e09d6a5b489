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

import numpy as np
import pandas as pd
import pytest

from adagrpo_trl.data import SPARSE_PROXIES, leave_one_out_split, log_statistics, sparse_proxy
from adagrpo_trl.data.prepare import load_log


def dense_log(num_users=800, num_items=2000, seed=0):
    """A MovieLens-like dense log: every user has 40-120 interactions, items drawn with Zipf popularity."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, num_items + 1)
    popularity /= popularity.sum()
    rows = []
    for user in range(num_users):
        length = int(rng.integers(40, 121))
        items = rng.choice(num_items, size=length, replace=False, p=popularity)
        times = np.sort(rng.uniform(0, 1e6, size=length))
        rows += [(f"u{user}", f"i{item}", time) for item, time in zip(items, times, strict=True)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).sample(frac=1.0, random_state=seed)


@pytest.fixture(scope="module")
def log():
    return dense_log()


class TestSparseProxy:
    def test_deterministic_for_a_seed(self, log):
        first = sparse_proxy(log, num_users=300, seed=3)
        pd.testing.assert_frame_equal(first, sparse_proxy(log, num_users=300, seed=3))
        other = sparse_proxy(log, num_users=300, seed=4)
        assert not first.equals(other)
        assert set(first["user_id"]) != set(other["user_id"])

    def test_documented_statistics(self, log):
        proxy = sparse_proxy(log, num_users=600, mean_interactions=7.0, seed=0)
        stats = log_statistics(proxy)
        assert stats["num_users"] == 600
        assert 6.3 <= stats["mean_interactions_per_user"] <= 7.7  # geometric lengths of mean 7 (600 draws)
        assert proxy.groupby("user_id").size().min() >= 3  # every user survives a leave-one-out split
        assert stats["num_items"] > 0.5 * stats["num_interactions"] / 7  # many distinct items for so few rows
        # long-tail items kept: the default ("tail") windows put more interactions on rare items than the full log,
        # and than windows drawn at random
        assert stats["long_tail_share"] > log_statistics(log)["long_tail_share"]
        assert stats["long_tail_share"] > log_statistics(sparse_proxy(log, 600, position="random"))["long_tail_share"]
        assert leave_one_out_split(proxy).num_dropped_users == 0

    @pytest.mark.parametrize("position", ["tail", "random", "first", "last"])
    def test_windows_are_contiguous_slices_of_each_history(self, log, position):
        proxy = sparse_proxy(log, num_users=50, position=position, seed=1)
        ordered = log.sort_values(["user_id", "timestamp"], kind="stable")
        for user, rows in proxy.groupby("user_id", sort=False):
            history = ordered[ordered["user_id"] == user]["item_id"].tolist()
            window = rows["item_id"].tolist()
            assert rows["timestamp"].is_monotonic_increasing
            starts = [index for index in range(len(history)) if history[index : index + len(window)] == window]
            assert starts, f"{user}: {window} is not a slice of the history"
            if position == "first":
                assert starts[0] == 0
            if position == "last":
                assert starts[-1] == len(history) - len(window)

    def test_min_interactions_equal_to_mean_gives_fixed_lengths(self, log):
        proxy = sparse_proxy(log, num_users=20, mean_interactions=4, min_interactions=4)
        assert proxy.groupby("user_id").size().eq(4).all()

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"position": "middle"}, r"position must be one of \['tail', 'random', 'first', 'last'\], got 'middle'"),
            ({"num_users": 10_000}, r"num_users=10000 but only 800 users"),
            ({"num_users": 0}, r"num_users must be a positive integer, got 0"),
            ({"mean_interactions": 2.0}, r"mean_interactions must be >= min_interactions \(3\), got 2.0"),
        ],
    )
    def test_bad_arguments(self, log, kwargs, match):
        with pytest.raises(ValueError, match=match):
            sparse_proxy(log, **kwargs)

    def test_missing_columns(self):
        with pytest.raises(ValueError, match=r"lacks column\(s\) \['timestamp'\]"):
            sparse_proxy(pd.DataFrame({"user_id": ["a"], "item_id": ["b"]}))

    def test_prepare_name(self, monkeypatch):
        # `prepare --dataset ml-1m-sparse` cuts the seed-0 proxy out of ML-1M (loaded here from a stand-in log)
        stand_in = dense_log(num_users=3400, num_items=500, seed=1)
        monkeypatch.setattr("adagrpo_trl.data.prepare.load_movielens", lambda name, **kwargs: (stand_in, None))
        assert SPARSE_PROXIES == {"ml-1m-sparse": "ml-1m"}
        proxy, items = load_log("ml-1m-sparse")
        pd.testing.assert_frame_equal(proxy, sparse_proxy(stand_in, seed=0))
        assert items is None and proxy["user_id"].nunique() == 3300


def test_log_statistics_exact():
    log = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "c", "c", "c", "c", "c"],
            "item_id": ["x", "x", "y", "x", "z", "x", "y", "w", "v", "x"],
        }
    )
    # item counts: x 5, y 2, z 1, w 1, v 1 -> head (ceil(0.2 * 5) = 1 item) holds 5 of 10 interactions
    assert log_statistics(log) == {
        "num_users": 3,
        "num_items": 5,
        "num_interactions": 10,
        "mean_interactions_per_user": 10 / 3,
        "median_interactions_per_user": 3.0,
        "long_tail_share": 0.5,
        "singleton_item_share": 0.6,
    }
    with pytest.raises(ValueError, match=r"head_fraction must be in \(0, 1\), got 1.5"):
        log_statistics(log, head_fraction=1.5)
