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
"""The SID grammar: tokens, vocabularies, format_sid/parse_sid round trips (seeded random cases) and their errors."""

import re

import numpy as np
import pytest

from adagrpo_trl.sid import (
    MAX_CODE,
    SID_TOKEN_RE,
    codes_to_sids,
    format_sid,
    normalize_sid_text,
    parse_sid,
    sid_pattern,
    sid_token,
    sid_vocabulary,
)


def test_sid_vocabulary_and_tokens():
    assert sid_token(0, 12) == "<a_12>" and sid_token(3, 0) == "<d_0>" and sid_token(25, 7) == "<z_7>"
    assert sid_token(1, np.int64(3)) == "<b_3>"
    assert sid_vocabulary([2, 3]) == ["<a_0>", "<a_1>", "<b_0>", "<b_1>", "<b_2>"]
    with pytest.raises(ValueError, match="-1"):
        sid_token(0, -1)
    with pytest.raises(ValueError, match="26"):
        sid_token(26, 0)
    with pytest.raises(ValueError, match="1000000000"):
        sid_token(0, MAX_CODE)
    with pytest.raises(ValueError, match=r"float 2\.0"):
        sid_token(0, 2.0)
    with pytest.raises(ValueError, match=r"\[4, 0\]"):
        sid_vocabulary([4, 0])


def random_code_tuples(seed, count=500):
    """Code tuples of 1 to 26 levels, codes spread over every digit count from 0 to MAX_CODE - 1."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        num_levels = int(rng.integers(1, 27))
        digits = rng.integers(1, 10, size=num_levels)
        yield tuple(int(rng.integers(0, 10**d)) for d in digits)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_format_and_parse_are_inverse(seed):
    for codes in random_code_tuples(seed):
        sid = format_sid(codes)
        assert parse_sid(sid) == codes
        assert format_sid(parse_sid(sid)) == sid
        assert sid == "".join(sid_token(level, code) for level, code in enumerate(codes))
        assert sid_pattern(len(codes)).fullmatch(sid).groups() == tuple(str(code) for code in codes)
        assert [int(code) for _, code in SID_TOKEN_RE.findall(sid)] == list(codes)
        assert normalize_sid_text(" ".join(SID_TOKEN_RE.sub(r"\g<0> ", sid).split())) == sid


def test_codes_to_sids_is_format_sid_per_row():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, MAX_CODE, size=(50, 4))
    assert codes_to_sids(codes) == [format_sid(row) for row in codes.tolist()]
    assert codes_to_sids(np.array([[3, 0, 12]])) == ["<a_3><b_0><c_12>"]
    for bad, reason in [
        (np.array([1, 2]), r"shape \(num_items, num_levels\)"),
        (np.zeros((2, 27), dtype=int), "at most 26 levels"),
        (np.array([[0.5, 1.0]]), "integers"),
        (np.array([[0, 1], [2, -3]]), r"codes\[1\] = \[2, -3\]"),
    ]:
        with pytest.raises(ValueError, match=reason):
            codes_to_sids(bad)


@pytest.mark.parametrize(
    "bad_sid, reason",
    [
        ("", "at least one token"),
        ("<b_1>", "level 0 should be 'a', got 'b'"),
        ("<a_1><c_2>", "level 1 should be 'b', got 'c'"),
        ("<a_01>", "leading zeros"),
        ("<a_1000000000>", "character 0"),
        ("<a_1> <b_2>", "character 5"),
        ("<a_1><b_2>x", "character 10"),
        ("<A_1>", "character 0"),
        ("a_1", "character 0"),
    ],
)
def test_parse_errors_name_the_value_and_the_reason(bad_sid, reason):
    with pytest.raises(ValueError, match=re.escape(repr(bad_sid)) + ".*" + reason):
        parse_sid(bad_sid)


@pytest.mark.parametrize("bad", [None, 3, b"<a_1>", ("<a_1>",)])
def test_parse_rejects_non_strings_naming_them(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_sid(bad)


@pytest.mark.parametrize(
    "bad_codes, reason",
    [
        ((), r"1 to 26 levels, got 0 codes: \[\]"),
        (tuple(range(27)), "got 27 codes"),
        ((1, -2), r"\[1, -2\].*-2"),
        ((1, MAX_CODE), r"\[1, 1000000000\]"),
        ((1, 2.5), r"\[1, 2\.5\].*float 2\.5"),
        ((1, "2"), r"\[1, '2'\].*str '2'"),
    ],
)
def test_format_errors_name_the_codes(bad_codes, reason):
    with pytest.raises(ValueError, match=reason):
        format_sid(bad_codes)
