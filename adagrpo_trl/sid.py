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
"""
The semantic-ID (SID) grammar, in one place.

A SID *token* is `<{letter}_{code}>`: the level's letter (`a` for level 0, `b` for level 1, ... at most 26 levels)
and a non-negative integer code below 10⁹, written without leading zeros. A SID *string* is one token per level, levels
consecutive from `a`, with nothing between them, e.g. `"<a_12><b_7><c_201><d_0>"`. SID strings and code tuples
therefore correspond one to one: [`format_sid`] and [`parse_sid`] are inverse.

Example:

```python
from adagrpo_trl.sid import format_sid, parse_sid, sid_token

sid_token(1, 7)  # '<b_7>'
format_sid((12, 7, 201, 0))  # '<a_12><b_7><c_201><d_0>'
parse_sid("<a_12><b_7>")  # (12, 7)
```
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Sequence

import numpy as np


LEVEL_LETTERS = string.ascii_lowercase  # the letter of each level: a SID has at most 26 levels
MAX_CODE = 10**9  # codes are < MAX_CODE, so they fit int64 after any per-level offset
_CODE = r"(0|[1-9][0-9]{0,8})"  # no leading zeros (one string per code), < MAX_CODE
# One SID token: group 1 is the level letter, group 2 the code.
SID_TOKEN_RE = re.compile(r"<([a-z])_" + _CODE + ">")


def sid_pattern(num_levels: int) -> re.Pattern:
    """The regular expression of a whole SID string of `num_levels` levels; group `i + 1` is the code of level `i`."""
    return re.compile("".join(f"<{LEVEL_LETTERS[level]}_{_CODE}>" for level in range(num_levels)))


def sid_token(level: int, code: int) -> str:
    """
    The token of `code` at SID `level` (0-based): `sid_token(1, 7) == "<b_7>"`.

    Raises:
        `ValueError`: if `level` is not in `[0, 26)` or `code` is not an integer in `[0, 10⁹)`, naming the value.
    """
    if not (isinstance(level, (int, np.integer)) and 0 <= level < len(LEVEL_LETTERS)):
        raise ValueError(f"SID level must be an integer in [0, {len(LEVEL_LETTERS)}), got {level!r}.")
    try:
        value = operator.index(code)
    except TypeError:
        raise ValueError(f"SID code must be an integer, got {type(code).__name__} {code!r}.") from None
    if not 0 <= value < MAX_CODE:
        raise ValueError(f"SID code must be in [0, {MAX_CODE}), got {code!r}.")
    return f"<{LEVEL_LETTERS[level]}_{value}>"


def sid_vocabulary(codebook_sizes: Sequence[int]) -> list[str]:
    """Every SID token of codebooks of the given sizes, level by level: `sid_vocabulary([2, 1]) == ["<a_0>", "<a_1>",
    "<b_0>"]`."""
    if not codebook_sizes or any(size < 1 for size in codebook_sizes):
        raise ValueError(f"codebook_sizes must be a non-empty list of positive sizes, got {list(codebook_sizes)}.")
    return [sid_token(level, code) for level, size in enumerate(codebook_sizes) for code in range(size)]


def format_sid(codes: Sequence[int]) -> str:
    """
    The SID string of a code tuple, one code per level: `format_sid((3, 0)) == "<a_3><b_0>"`; the inverse of
    [`parse_sid`].

    Raises:
        `ValueError`: for no codes, more than 26, or a code that is not an integer in `[0, 10⁹)`, naming the value.
    """
    codes = list(codes)
    if not 0 < len(codes) <= len(LEVEL_LETTERS):
        raise ValueError(f"A SID has 1 to {len(LEVEL_LETTERS)} levels, got {len(codes)} codes: {codes!r}.")
    try:
        return "".join(sid_token(level, code) for level, code in enumerate(codes))
    except ValueError as error:
        raise ValueError(f"Cannot format the codes {codes!r} as a SID: {error}") from None


def parse_sid(sid: str) -> tuple[int, ...]:
    """
    Parses a SID string into its codes, one per level: `parse_sid("<a_3><b_0>") == (3, 0)`; the inverse of
    [`format_sid`].

    Args:
        sid (`str`):
            Concatenated SID tokens of consecutive levels `a, b, c, ...`, codes without leading zeros.

    Returns:
        `tuple[int, ...]`: the code of each level.

    Raises:
        `ValueError`: if `sid` is not a well-formed SID, naming it and the reason.
    """
    if not isinstance(sid, str):
        raise ValueError(f"A SID must be a string, got {type(sid).__name__} {sid!r}.")
    codes, position = [], 0
    while position < len(sid):
        match = SID_TOKEN_RE.match(sid, position)
        if match is None:
            raise ValueError(
                f"Malformed SID {sid!r}: expected a SID token like '<{LEVEL_LETTERS[len(codes) % 26]}_0>' "
                f"(code without leading zeros) at character {position}."
            )
        expected = LEVEL_LETTERS[len(codes)] if len(codes) < len(LEVEL_LETTERS) else None
        if match.group(1) != expected:
            raise ValueError(
                f"Malformed SID {sid!r}: level {len(codes)} should be '{expected}', got '{match.group(1)}' "
                "(levels must be consecutive, starting at 'a')."
            )
        codes.append(int(match.group(2)))
        position = match.end()
    if not codes:
        raise ValueError("Malformed SID '': a SID has at least one token.")
    return tuple(codes)


def check_codes(codes: np.ndarray) -> np.ndarray:
    """
    `codes` as an int64 array of shape `(num_items, num_levels)`, after checking that it can be written as SIDs.

    Raises:
        `ValueError`: for another shape, no level or more than 26, non-integer codes, or a code outside `[0, 10⁹)`
        (naming its row).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(f"codes must have shape (num_items, num_levels) with num_levels > 0, got {codes.shape}.")
    if codes.shape[1] > len(LEVEL_LETTERS):
        raise ValueError(f"SIDs have at most {len(LEVEL_LETTERS)} levels (a-z), got {codes.shape[1]}.")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}.")
    bad = (codes < 0) | (codes >= MAX_CODE)
    if bad.any():
        index = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"codes must be in [0, 1e9); codes[{index}] = {codes[index].tolist()}.")
    return codes.astype(np.int64)


def codes_to_sids(codes: np.ndarray) -> list[str]:
    """
    The SID string of each row of `codes`: `codes_to_sids([[3, 0, 7]]) == ["<a_3><b_0><c_7>"]` (vectorised
    [`format_sid`]).

    Args:
        codes (`np.ndarray` of shape `(num_items, num_levels)`):
            Non-negative integer codes (< 10⁹), at most 26 levels.

    Returns:
        `list[str]`: one SID per row.

    Raises:
        `ValueError`: see [`check_codes`].
    """
    codes = check_codes(codes)
    # Checked once for the array, so the tokens are formatted directly (large catalogs).
    columns = [
        [f"<{LEVEL_LETTERS[level]}_{code}>" for code in codes[:, level].tolist()] for level in range(codes.shape[1])
    ]
    return ["".join(parts) for parts in zip(*columns, strict=True)]


def normalize_sid_text(text: str) -> str:
    """
    A decoded completion as a SID string: all whitespace removed. SID strings contain no whitespace, but a pretrained
    tokenizer may decode added SID tokens with spaces between them (`"<a_1> <b_2>"`).
    """
    return "".join(text.split())


__all__ = [
    "LEVEL_LETTERS",
    "MAX_CODE",
    "SID_TOKEN_RE",
    "check_codes",
    "codes_to_sids",
    "format_sid",
    "normalize_sid_text",
    "parse_sid",
    "sid_pattern",
    "sid_token",
    "sid_vocabulary",
]
