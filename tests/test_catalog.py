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
"""ItemCatalog: SID <-> item round trips, validation, JSON I/O and token ids (the trie: test_trie.py)."""

import itertools
import json
import os
import re

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from adagrpo_trl.catalog import ItemCatalog
from adagrpo_trl.sid import format_sid, parse_sid, sid_token, sid_vocabulary
from adagrpo_trl.tokenization import build_sid_tokenizer

from .toy import random_codes


CODEBOOK = [5, 4, 6, 3]


@pytest.fixture
def catalog():
    codes = random_codes(150, CODEBOOK)
    return ItemCatalog.from_codes([f"item-{i}" for i in range(len(codes))], codes)


@pytest.fixture
def sid_tokenizer():
    return build_sid_tokenizer(sid_vocabulary(CODEBOOK), words=["history", ":", "next"])


# ---------------------------------------------------------------------------------------------------------------------
# Round trips and look-ups
# ---------------------------------------------------------------------------------------------------------------------


def test_sid_item_round_trip(catalog):
    assert len(catalog) == 150 and catalog.num_levels == 4
    for index, (item_id, sid) in enumerate(zip(catalog.item_ids, catalog.sids, strict=True)):
        assert catalog.item_to_sid(item_id) == sid
        assert catalog.sid_to_item(sid) == item_id
        assert catalog.is_valid(sid) and item_id in catalog
        assert catalog.index(item_id) == index
        # The SID spells the codes with the tokenizer's token format.
        assert sid == "".join(sid_token(level, int(code)) for level, code in enumerate(catalog.codes[index]))
        assert parse_sid(sid) == tuple(catalog.codes[index].tolist())
        assert format_sid(parse_sid(sid)) == sid


def test_constructor_and_from_codes_agree(catalog):
    rebuilt = ItemCatalog(catalog.item_ids, catalog.sids)
    assert rebuilt.item_ids == catalog.item_ids and rebuilt.sids == catalog.sids
    np.testing.assert_array_equal(rebuilt.codes, catalog.codes)
    assert rebuilt.codes.dtype == np.int64 and rebuilt.codes.shape == (150, 4)
    with pytest.raises(ValueError):
        rebuilt.codes[0, 0] = 99  # read-only: the catalog cannot be corrupted through its view


def test_invalid_sids_and_unknown_items(catalog):
    sid = catalog.sids[0]
    absent = next(
        format_sid(c) for c in itertools.product(*map(range, CODEBOOK)) if not catalog.is_valid(format_sid(c))
    )
    for bad in [absent, sid[: sid.rindex("<")], sid + "<e_0>", "", "garbage", sid.upper(), None, 3]:
        assert catalog.sid_to_item(bad) is None
        assert not catalog.is_valid(bad)
    assert "no-such-item" not in catalog and 0 not in catalog
    with pytest.raises(KeyError, match="'no-such-item' is not in the catalog"):
        catalog.item_to_sid("no-such-item")
    assert catalog.item_ids is not catalog.item_ids  # copies: callers cannot mutate the catalog


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


def test_duplicate_item_ids_are_named():
    with pytest.raises(ValueError, match=r"Duplicate item id 'x' at item_ids\[2\] \(first at item_ids\[0\]\)"):
        ItemCatalog(["x", "y", "x"], ["<a_0><b_0>", "<a_0><b_1>", "<a_1><b_0>"])


def test_duplicate_sids_are_named():
    with pytest.raises(ValueError, match=r"Duplicate SID '<a_0><b_1>' at sids\[2\] \(first at sids\[1\]\)"):
        ItemCatalog(["x", "y", "z"], ["<a_0><b_0>", "<a_0><b_1>", "<a_0><b_1>"])
    with pytest.raises(ValueError, match="Duplicate SID"):
        ItemCatalog.from_codes(["x", "y"], np.array([[1, 2], [1, 2]]))


@pytest.mark.parametrize(
    "bad_sid, reason",
    [
        ("<a_1><c_2>", "level 1 should be 'b', got 'c'"),
        ("<b_1><c_2>", "level 0 should be 'a', got 'b'"),
        ("<a_1><b_x>", "character 5"),
        ("<a_01><b_2>", "leading zeros"),
        ("a_1b_2", "character 0"),
        ("<a_1> <b_2>", "character 5"),
        ("", "at least one token"),
        ("<a_1>", "has 1 levels, but sids\\[0\\] = '<a_0><b_0>' has 2"),
        ("<a_1><b_2><c_3>", "has 3 levels"),
    ],
)
def test_malformed_sids_are_named_with_their_index(bad_sid, reason):
    with pytest.raises(ValueError) as error:
        ItemCatalog(["x", "y"], ["<a_0><b_0>", bad_sid])
    message = str(error.value)
    assert message.startswith("sids[1]") and repr(bad_sid) in message
    assert re.search(reason, message), message


def test_other_constructor_errors():
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        ItemCatalog(["x", "y"], ["<a_0>"])
    with pytest.raises(ValueError, match="at least one item"):
        ItemCatalog([], [])
    with pytest.raises(TypeError, match=r"item_ids\[1\] is int 7"):
        ItemCatalog(["x", 7], ["<a_0>", "<a_1>"])
    with pytest.raises(ValueError, match=r"sids\[0\] is int"):
        ItemCatalog(["x"], [5])
    with pytest.raises(ValueError, match=r"codes\[1\] = \[-1, 0\]"):
        ItemCatalog.from_codes(["x", "y"], np.array([[0, 0], [-1, 0]]))
    with pytest.raises(ValueError, match="shape"):
        ItemCatalog.from_codes(["x", "y"], np.array([0, 1]))
    with pytest.raises(ValueError, match="integers"):
        ItemCatalog.from_codes(["x"], np.array([[0.5, 1.0]]))


# ---------------------------------------------------------------------------------------------------------------------
# JSON I/O
# ---------------------------------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_human_readable(tmp_path, catalog):
    path = tmp_path / "catalog.json"
    catalog.save(path)
    loaded = ItemCatalog.load(path)
    assert loaded.item_ids == catalog.item_ids and loaded.sids == catalog.sids
    np.testing.assert_array_equal(loaded.codes, catalog.codes)
    data = json.loads(path.read_text())
    assert data["num_items"] == 150 and data["num_levels"] == 4
    assert data["items"][0] == {"item_id": catalog.item_ids[0], "sid": catalog.sids[0]}
    lines = path.read_text().splitlines()
    assert sum('"sid"' in line for line in lines) == 150  # one item per line
    assert os.listdir(tmp_path) == ["catalog.json"]  # no temporary file left behind


def test_save_is_atomic(tmp_path, catalog, monkeypatch):
    path = tmp_path / "catalog.json"
    small = ItemCatalog(["x"], ["<a_0>"])
    small.save(path)
    before = path.read_text()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        catalog.save(path)
    assert path.read_text() == before  # the old file is intact
    assert os.listdir(tmp_path) == ["catalog.json"]  # and the temporary file is gone
    monkeypatch.undo()
    catalog.save(path)  # overwrite works
    assert ItemCatalog.load(path).sids == catalog.sids


def test_unicode_item_ids_survive_save_load(tmp_path):
    catalog = ItemCatalog(["Amélie (2001)", 'quote "x"'], ["<a_0><b_1>", "<a_1><b_0>"])
    catalog.save(tmp_path / "c.json")
    assert ItemCatalog.load(tmp_path / "c.json").item_ids == catalog.item_ids


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{not json", "not valid JSON"),
        ('{"format": "other", "version": 1, "items": []}', "not an ItemCatalog file"),
        ('{"format": "adagrpo_trl.ItemCatalog", "version": 9, "items": []}', "unsupported catalog version 9"),
        ('{"format": "adagrpo_trl.ItemCatalog", "version": 1, "items": [{"item_id": "x"}]}', r"items\[0\]"),
        (
            '{"format": "adagrpo_trl.ItemCatalog", "version": 1, "items": '
            '[{"item_id": "x", "sid": "<a_0>"}, {"item_id": "x", "sid": "<a_1>"}]}',
            "Duplicate item id 'x'",
        ),
        (
            '{"format": "adagrpo_trl.ItemCatalog", "version": 1, "items": [{"item_id": "x", "sid": "<b_0>"}]}',
            "level 0 should be 'a'",
        ),
        (
            '{"format": "adagrpo_trl.ItemCatalog", "version": 1, "num_items": 2, "items": '
            '[{"item_id": "x", "sid": "<a_0>"}]}',
            '"num_items" is 2',
        ),
    ],
)
def test_load_errors_name_the_file(tmp_path, content, reason):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=reason) as error:
        ItemCatalog.load(path)
    assert str(error.value).startswith(str(path))


# ---------------------------------------------------------------------------------------------------------------------
# Token ids
# ---------------------------------------------------------------------------------------------------------------------


def test_token_ids_match_the_tokenizer(catalog, sid_tokenizer):
    token_ids = catalog.token_ids(sid_tokenizer)
    assert token_ids.dtype == torch.long and token_ids.shape == (150, 4)
    for row, sid in zip(token_ids.tolist(), catalog.sids, strict=True):
        assert sid_tokenizer(sid, add_special_tokens=False)["input_ids"] == row
        assert sid_tokenizer.decode(row) == sid


def test_token_ids_name_a_missing_token(sid_tokenizer):
    catalog = ItemCatalog(["x", "y"], ["<a_0><b_0>", "<a_0><b_9>"])  # the tokenizer's level b has 4 codes
    with pytest.raises(ValueError, match="lacks the SID token '<b_9>'"):
        catalog.token_ids(sid_tokenizer)


def test_token_ids_name_a_split_token():
    # "<a_1>" is in the vocabulary, but a punctuation pre-tokenizer splits it: it would never encode as one token.
    vocab = {
        "<pad>": 0,
        "<eos>": 1,
        "<unk>": 2,
        "<a_0>": 3,
        "<a_1>": 4,
        "<": 5,
        ">": 6,
        "a": 7,
        "_": 8,
        "1": 9,
        "0": 10,
    }
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Punctuation()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
    with pytest.raises(ValueError, match=r"splits the SID token '<a_0>' into \[5, 7, 8, 10, 6\]"):
        ItemCatalog(["x", "y"], ["<a_0>", "<a_1>"]).token_ids(tokenizer)
