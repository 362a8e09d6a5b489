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

import re

import numpy as np
import pandas as pd
import pytest

from adagrpo_trl.scripts.configs import PrepareArguments
from adagrpo_trl.semantic_ids import (
    build_item_features,
    build_semantic_ids,
    cooccurrence_features,
    cooccurrence_matrix,
    default_codebook_size,
    default_item_features,
    item_text_features,
    load_item_embeddings,
    parse_feature_sources,
)
from adagrpo_trl.sid import codes_to_sids


def blobs(num_blobs=4, per_blob=25, dim=8, spread=0.05, seed=0):
    """Well-separated Gaussian blobs: items of a blob are similar, items of different blobs are not."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_blobs, dim)) * 10
    labels = np.repeat(np.arange(num_blobs), per_blob)
    features = centers[labels] + spread * rng.standard_normal((len(labels), dim))
    return features, labels, [f"item{index}" for index in range(len(labels))]


def collision_rate(codes):
    return 1 - len({tuple(row) for row in codes[:, :-1].tolist()}) / len(codes)


class TestBuildSemanticIDs:
    def test_dedup_makes_colliding_catalog_unique(self):
        # 10 distinct feature rows, each repeated 3 times: identical rows cannot be told apart by k-means
        rng = np.random.default_rng(0)
        distinct = rng.standard_normal((10, 5))
        features = np.repeat(distinct, 3, axis=0)
        item_ids = [f"i{index}" for index in range(30)]
        result = build_semantic_ids(features, item_ids, num_levels=2, codebook_size=16)
        assert result.codes.shape == (30, 3)
        assert len({tuple(row) for row in result.codes.tolist()}) == 30
        assert len(set(result.sids())) == 30
        # identical rows share all residual codes and are numbered 0, 1, 2 in catalog order by the dedup level
        for group in range(10):
            rows = result.codes[3 * group : 3 * group + 3]
            assert (rows[:, :-1] == rows[0, :-1]).all()
            assert rows[:, -1].tolist() == [0, 1, 2]
        # 10 distinct prefixes for 30 items
        assert result.collision_rate_before_dedup == pytest.approx(2 / 3)
        assert result.codebook_sizes == [16, 16, 3]

    def test_collision_rate_matches_codes(self):
        features, _, item_ids = blobs(num_blobs=3, per_blob=40, spread=1.0)
        result = build_semantic_ids(features, item_ids, num_levels=2, codebook_size=3)
        assert result.collision_rate_before_dedup == pytest.approx(collision_rate(result.codes))
        assert result.collision_rate_before_dedup > 0  # 120 items in 9 cells must collide
        assert result.num_items == 120
        assert len({tuple(row) for row in result.codes.tolist()}) == 120
        assert result.codebook_sizes[-1] == result.codes[:, -1].max() + 1

    def test_no_collisions_when_cells_suffice(self):
        features, _, item_ids = blobs(num_blobs=4, per_blob=1)
        result = build_semantic_ids(features, item_ids, num_levels=1, codebook_size=4)
        assert result.collision_rate_before_dedup == 0.0
        assert (result.codes[:, -1] == 0).all()

    def test_similar_items_share_prefix(self):
        features, labels, item_ids = blobs(num_blobs=4, per_blob=25)
        result = build_semantic_ids(features, item_ids, num_levels=3, codebook_size=4)
        first = result.codes[:, 0]
        # level 0 recovers the blobs exactly: same blob <=> same first code
        for blob in range(4):
            assert len(set(first[labels == blob].tolist())) == 1
        assert len(set(first.tolist())) == 4

    def test_deterministic_with_seed(self):
        features, _, item_ids = blobs(num_blobs=5, per_blob=30, spread=2.0)
        first = build_semantic_ids(features, item_ids, seed=3)
        second = build_semantic_ids(features.copy(), list(item_ids), seed=3)
        np.testing.assert_array_equal(first.codes, second.codes)
        assert first.sids() == second.sids()
        assert first.collision_rate_before_dedup == second.collision_rate_before_dedup

    def test_code_usage(self):
        features, _, item_ids = blobs(num_blobs=4, per_blob=10, spread=1.0)
        result = build_semantic_ids(features, item_ids, num_levels=2, codebook_size=4)
        assert len(result.code_usage) == 2
        for level, usage in enumerate(result.code_usage):
            assert usage == len(np.unique(result.codes[:, level])) / 4
        assert result.code_usage[0] == 1.0
        # only 3 distinct points: at most 3 of 8 codes can be used at any level
        features = np.repeat(np.eye(3), 5, axis=0)
        result = build_semantic_ids(features, [f"i{i}" for i in range(15)], num_levels=2, codebook_size=8)
        assert result.code_usage[0] == 3 / 8
        assert result.code_usage[1] == 1 / 8  # residuals are all zero after level 0
        assert (result.codes[:, :-1] < 8).all()

    def test_default_codebook_size(self):
        assert default_codebook_size(1000, 3) == 20  # ceil(2 * 10)
        assert default_codebook_size(1000, 3, factor=1.0) == 10
        assert default_codebook_size(1, 3) == 2  # clipped below
        assert default_codebook_size(10**9, 2) == 256  # clipped above
        features, _, item_ids = blobs(num_blobs=4, per_blob=16)
        result = build_semantic_ids(features, item_ids, num_levels=2)
        assert result.codebook_sizes[:2] == [default_codebook_size(64, 2)] * 2 == [16, 16]

    def test_sids_and_tokens(self):
        features, _, item_ids = blobs(num_blobs=2, per_blob=5)
        result = build_semantic_ids(features, item_ids, num_levels=2, codebook_size=2)
        sids = result.sids()
        assert all(re.fullmatch(r"<a_\d+><b_\d+><c_\d+>", sid) for sid in sids)
        assert result.item_to_sid() == dict(zip(item_ids, sids, strict=True))
        vocabulary = set(result.sid_tokens())
        assert all(token in vocabulary for sid in sids for token in re.findall(r"<[a-z]_\d+>", sid))
        assert codes_to_sids(np.array([[3, 0, 12]])) == ["<a_3><b_0><c_12>"]

    def test_to_catalog(self):
        features, _, item_ids = blobs(num_blobs=3, per_blob=4)
        result = build_semantic_ids(features, item_ids, num_levels=2, codebook_size=3)
        catalog = result.to_catalog()
        assert len(catalog) == 12
        assert list(catalog.sids) == result.sids()


class TestValidation:
    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_features(self, bad):
        features, _, item_ids = blobs()
        features[7, 2] = bad
        with pytest.raises(ValueError, match=r"non-finite value (nan|inf|-inf) at row 7, column 2"):
            build_semantic_ids(features, item_ids)

    def test_count_mismatch(self):
        features, _, item_ids = blobs(num_blobs=2, per_blob=5)
        with pytest.raises(ValueError, match=r"features has 10 rows but item_ids has 9 ids"):
            build_semantic_ids(features, item_ids[:-1])

    def test_duplicate_ids(self):
        features, _, item_ids = blobs(num_blobs=2, per_blob=5)
        item_ids[6] = "item2"
        with pytest.raises(ValueError, match=r"Duplicate item id 'item2' at index 6 \(first at index 2\)"):
            build_semantic_ids(features, item_ids)

    def test_non_string_ids(self):
        with pytest.raises(ValueError, match=r"item_ids must be strings, got int 1 at index 0"):
            build_semantic_ids(np.zeros((2, 2)), [1, 2])

    def test_empty(self):
        with pytest.raises(ValueError, match="empty"):
            build_semantic_ids(np.zeros((0, 4)), [])
        with pytest.raises(ValueError, match="2-D"):
            build_semantic_ids(np.zeros(4), ["a", "b", "c", "d"])

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"num_levels": 0}, "num_levels"),
            ({"num_levels": 26}, "num_levels"),
            ({"codebook_size": 0}, "codebook_size"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        features, _, item_ids = blobs(num_blobs=2, per_blob=5)
        with pytest.raises(ValueError, match=match):
            build_semantic_ids(features, item_ids, **kwargs)


class TestFeatures:
    def test_text_features_group_similar_texts(self):
        texts = ["Toy Story 1995 Animation Comedy", "Aladdin 1992 Animation Comedy", "Heat 1995 Crime Thriller",
                 "Se7en 1995 Crime Thriller", "Lion King 1994 Animation Comedy", "Fargo 1996 Crime Thriller"]  # fmt: skip
        features = item_text_features(texts, dim=4)
        assert features.shape == (6, 4)
        unit = features / np.linalg.norm(features, axis=1, keepdims=True)
        similarity = unit @ unit.T
        animation, crime = [0, 1, 4], [2, 3, 5]
        within = np.mean([similarity[i, j] for group in (animation, crime) for i in group for j in group if i != j])
        across = np.mean([similarity[i, j] for i in animation for j in crime])
        assert within > across + 0.3
        np.testing.assert_allclose(features, item_text_features(texts, dim=4))  # seeded SVD

    def test_text_features_errors(self):
        with pytest.raises(ValueError, match="texts is empty"):
            item_text_features([])
        with pytest.raises(ValueError, match="all item texts empty"):
            item_text_features(["", " "])
        with pytest.raises(ValueError, match=r"got NoneType None at index 1"):
            item_text_features(["a", None])

    def test_cooccurrence_matrix(self):
        counts = cooccurrence_matrix([["a", "b", "c"], ["b", "a"]], ["a", "b", "c", "d"], window=1).toarray()
        expected = np.zeros((4, 4))
        expected[0, 1] = expected[1, 0] = 2  # a-b adjacent in both sequences
        expected[1, 2] = expected[2, 1] = 1  # b-c adjacent once; a-c are two apart (outside the window)
        np.testing.assert_array_equal(counts, expected)
        counts = cooccurrence_matrix([["a", "b", "c"]], ["a", "b", "c"], window=None).toarray()
        assert counts[0, 2] == 1

    def test_cooccurrence_features(self):
        item_ids = [f"i{index}" for index in range(8)]
        # two communities: items 0-3 and items 4-7 never co-occur across
        sequences = [["i0", "i1", "i2", "i3"], ["i3", "i1", "i0", "i2"], ["i4", "i5", "i6", "i7"], ["i7", "i5", "i6"]]
        features = cooccurrence_features(sequences, item_ids, dim=3)
        unit = features / np.linalg.norm(features, axis=1, keepdims=True)
        similarity = unit @ unit.T
        assert similarity[:4, :4].mean() > similarity[:4, 4:].mean() + 0.5
        with pytest.raises(ValueError, match=r"Sequence 1 contains item 'x9'"):
            cooccurrence_features([["i0"], ["i1", "x9"]], item_ids)

    def test_default_item_features(self):
        item_ids = ["a", "b", "c", "d"]
        texts = ["red apple", "green apple", "blue car", "red car"]
        sequences = [["a", "b"], ["c", "d"], ["a", "b", "c"]]
        features = default_item_features(item_ids, texts=texts, sequences=sequences, text_dim=2, cooccurrence_dim=2,
                                         cooccurrence_weight=0.5)  # fmt: skip
        assert features.shape == (4, 4)
        np.testing.assert_allclose(np.linalg.norm(features[:, :2], axis=1), 1.0)
        np.testing.assert_allclose(np.linalg.norm(features[:, 2:], axis=1), 0.5)
        assert default_item_features(item_ids, texts=texts, text_dim=2).shape == (4, 2)
        with pytest.raises(ValueError, match="needs texts, sequences or both"):
            default_item_features(item_ids)
        with pytest.raises(ValueError, match="texts has 3 entries but item_ids has 4"):
            default_item_features(item_ids, texts=texts[:3])


class TestFeatureSources:
    def test_parse(self):
        assert parse_feature_sources("text+cooccurrence") == ("text", "cooccurrence")
        assert parse_feature_sources(" embeddings + cooccurrence ") == ("embeddings", "cooccurrence")
        with pytest.raises(
            ValueError,
            match=r"Unknown SID feature source 'ngrams' in 'text\+ngrams'; valid sources are 'text', 'cooccurrence', "
            r"'embeddings'",
        ):
            parse_feature_sources("text+ngrams")
        with pytest.raises(ValueError, match="name a source twice"):
            parse_feature_sources("text+text")
        with pytest.raises(ValueError, match="non-empty string"):
            parse_feature_sources("")

    def test_mix_is_default_item_features(self):
        texts = ["a b", "a c", "d e", "d f"]
        sequences = [["i0", "i1", "i2"], ["i1", "i3"], ["i2", "i3", "i0"]]
        item_ids = ["i0", "i1", "i2", "i3"]
        mixed = build_item_features(item_ids, "text+cooccurrence", texts=texts, sequences=sequences)
        np.testing.assert_allclose(mixed, default_item_features(item_ids, texts=texts, sequences=sequences))
        weighted = build_item_features(item_ids, "cooccurrence", sequences=sequences, cooccurrence_weight=3.0)
        np.testing.assert_allclose(weighted, 3.0 * default_item_features(item_ids, sequences=sequences))
        with pytest.raises(ValueError, match="'text' \\(in 'text'\\) needs item texts"):
            build_item_features(item_ids, "text", sequences=sequences)
        with pytest.raises(ValueError, match="cooccurrence_weight must be positive, got 0"):
            build_item_features(item_ids, "cooccurrence", sequences=sequences, cooccurrence_weight=0)

    def test_embeddings(self):
        embeddings = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
        # alone: used as given, rows reordered to the catalog (extra rows ignored)
        features = build_item_features(
            ["z", "x"], "embeddings", embeddings=embeddings, embedding_item_ids=["x", "y", "z"]
        )
        np.testing.assert_allclose(features, [[0.0, 2.0], [3.0, 4.0]])
        # in a mix: row-normalised like the other blocks
        mixed = build_item_features(
            ["x", "z"], "embeddings+cooccurrence", sequences=[["x", "z"]], embeddings=embeddings,
            embedding_item_ids=["x", "y", "z"],
        )  # fmt: skip
        np.testing.assert_allclose(mixed[:, -2:], [[0.6, 0.8], [0.0, 1.0]])  # blocks: text, co-occurrence, embeddings
        with pytest.raises(ValueError, match=r"1 item\(s\) of the log have no feature row, e.g. 'w'"):
            build_item_features(["x", "w"], "embeddings", embeddings=embeddings, embedding_item_ids=["x", "y", "z"])
        with pytest.raises(ValueError, match="needs embeddings and their item ids"):
            build_item_features(["x"], "embeddings")

    def test_load_item_embeddings(self, tmp_path):
        matrix = np.arange(6, dtype=np.float64).reshape(3, 2)
        np.save(tmp_path / "emb.npy", matrix)
        (tmp_path / "emb.txt").write_text("a\nb\nc\n")
        loaded, ids = load_item_embeddings(tmp_path / "emb.npy")
        np.testing.assert_allclose(loaded, matrix)
        assert ids == ["a", "b", "c"]
        (tmp_path / "two.txt").write_text("a\nb\n")
        with pytest.raises(ValueError, match=r"shape \(3, 2\) but .*two.txt lists 2 item ids"):
            load_item_embeddings(tmp_path / "emb.npy", item_ids_path=tmp_path / "two.txt")
        pd.DataFrame({"item_id": [1, 2], "x": [0.5, 1.5], "y": [2.0, 3.0]}).to_csv(tmp_path / "emb.csv", index=False)
        loaded, ids = load_item_embeddings(tmp_path / "emb.csv")
        np.testing.assert_allclose(loaded, [[0.5, 2.0], [1.5, 3.0]])
        assert ids == ["1", "2"]
        pd.DataFrame({"item_id": ["a", "b"], "vector": [[1.0, 2.0], [3.0, 4.0]]}).to_parquet(tmp_path / "emb.parquet")
        loaded, ids = load_item_embeddings(tmp_path / "emb.parquet")
        np.testing.assert_allclose(loaded, [[1.0, 2.0], [3.0, 4.0]])
        pd.DataFrame({"item_id": ["a"], "name": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
        with pytest.raises(ValueError, match=r"must be numeric .* got non-numeric \['name'\]"):
            load_item_embeddings(tmp_path / "bad.csv")
        with pytest.raises(ValueError, match=r"\.npy, \.csv or \.parquet"):
            (tmp_path / "emb.json").write_text("{}")
            load_item_embeddings(tmp_path / "emb.json")


@pytest.mark.parametrize("codebook_size", [1, 0, -3])
def test_codebook_size_below_two_is_an_error_naming_it(codebook_size):
    features, _, item_ids = blobs(num_blobs=2, per_blob=5)
    with pytest.raises(ValueError, match=rf"codebook_size must be an integer >= 2 .*, got {codebook_size}\."):
        build_semantic_ids(features, item_ids, codebook_size=codebook_size)
    with pytest.raises(ValueError, match=rf"codebook_size must be an integer >= 2 .*, got {codebook_size}\."):
        PrepareArguments(dataset="ml-100k", output_dir="x", codebook_size=codebook_size)


def test_prepare_arguments_check_the_feature_options():
    assert PrepareArguments(dataset="ml-100k", output_dir="x").sid_features == "text+cooccurrence"
    with pytest.raises(ValueError, match=r"Unknown SID feature source 'bert' in 'bert'; valid sources are"):
        PrepareArguments(dataset="ml-100k", output_dir="x", sid_features="bert")
    with pytest.raises(ValueError, match=r"the 'embeddings' source needs the sid_embeddings file"):
        PrepareArguments(dataset="ml-100k", output_dir="x", sid_features="embeddings")
    with pytest.raises(ValueError, match=r"sid_embeddings='e.npy'"):
        PrepareArguments(dataset="ml-100k", output_dir="x", sid_embeddings="e.npy")
    with pytest.raises(ValueError, match=r"sid_cooccurrence_weight must be positive, got -1.0"):
        PrepareArguments(dataset="ml-100k", output_dir="x", sid_cooccurrence_weight=-1.0)
    args = PrepareArguments(dataset="ml-100k", output_dir="x", sid_features="embeddings+text", sid_embeddings="e.npy")
    assert args.sid_embeddings == "e.npy"
