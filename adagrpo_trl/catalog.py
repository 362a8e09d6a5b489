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
The item catalog: item ids <-> semantic IDs (SIDs) one to one, validity checks, the catalog's SID token ids and prefix
trie, and JSON I/O.

The SID grammar (`"<a_12><b_7><c_201><d_0>"`) is in [`adagrpo_trl.sid`], the trie in [`adagrpo_trl.trie`]; every item
of a catalog has the same number of levels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .sid import check_codes, codes_to_sids, format_sid, parse_sid, sid_pattern, sid_token

# `PrefixTrie` and `build_trie` lived here before `adagrpo_trl.trie`; `format_sid`/`parse_sid` before `adagrpo_trl.sid`.
from .trie import PrefixTrie, build_trie, token_id_tuple
from .utils import atomic_write


_FORMAT = "adagrpo_trl.ItemCatalog"
_VERSION = 1


class ItemCatalog:
    """
    The items a policy may recommend: item ids (strings) and their semantic IDs (SID strings), one to one.

    Args:
        item_ids (`Sequence[str]`):
            Item ids, distinct.
        sids (`Sequence[str]`):
            The SID string of each item, distinct, all with the same number of levels, e.g. `"<a_1><b_2><c_3><d_0>"`.

    Raises:
        `ValueError`: on different lengths, an empty catalog, a duplicate item id or SID, or a malformed SID (the
        message names the offending value and its index).
        `TypeError`: if an item id is not a string.

    Example:

    ```python
    import numpy as np
    from adagrpo_trl import ItemCatalog

    catalog = ItemCatalog.from_codes(["i1", "i2"], np.array([[0, 1, 2], [0, 2, 0]]))
    catalog.item_to_sid("i2")  # '<a_0><b_2><c_0>'
    catalog.sid_to_item("<a_0><b_1><c_2>")  # 'i1'
    catalog.sid_to_item("<a_9><b_9><c_9>")  # None: not a catalog item (a hallucination)
    catalog.save("catalog.json")
    ```
    """

    def __init__(self, item_ids: Sequence[str], sids: Sequence[str]):
        item_ids, sids = list(item_ids), list(sids)
        if len(item_ids) != len(sids):
            raise ValueError(f"item_ids and sids must have the same length, got {len(item_ids)} and {len(sids)}.")
        if not item_ids:
            raise ValueError("An ItemCatalog needs at least one item.")
        for index, sid in enumerate(sids):
            if not isinstance(sid, str):
                raise ValueError(f"SIDs must be strings; sids[{index}] is {type(sid).__name__} {sid!r}.")
        num_levels = len(self._parse(sids[0], 0))
        pattern = sid_pattern(num_levels)
        matches = [pattern.fullmatch(sid) for sid in sids]
        if not all(matches):
            index = next(i for i, match in enumerate(matches) if match is None)
            codes = self._parse(sids[index], index)  # raises for malformed SIDs, with the reason
            raise ValueError(
                f"sids[{index}] = {sids[index]!r} has {len(codes)} levels, but sids[0] = {sids[0]!r} has {num_levels}; "
                "all items of a catalog have the same number of levels."
            )
        codes = np.array([match.groups() for match in matches], dtype=np.int64).reshape(len(sids), num_levels)
        del matches
        self._init(item_ids, sids, codes)

    @staticmethod
    def _parse(sid: str, index: int) -> tuple[int, ...]:
        try:
            return parse_sid(sid)
        except ValueError as error:
            raise ValueError(f"sids[{index}]: {error}") from None

    def _init(self, item_ids: list[str], sids: list[str], codes: np.ndarray) -> None:
        for index, item_id in enumerate(item_ids):
            if not isinstance(item_id, str):
                raise TypeError(
                    f"Item ids must be strings; item_ids[{index}] is {type(item_id).__name__} {item_id!r} "
                    "(convert ids with str() first)."
                )
        self._index_of_item = {item_id: index for index, item_id in enumerate(item_ids)}
        if len(self._index_of_item) != len(item_ids):
            self._raise_duplicate(item_ids, "item id", "item_ids")
        self._index_of_sid = {sid: index for index, sid in enumerate(sids)}
        if len(self._index_of_sid) != len(sids):
            self._raise_duplicate(sids, "SID", "sids")
        self._item_ids = item_ids
        self._sids = sids
        codes.setflags(write=False)
        self._codes = codes

    @staticmethod
    def _raise_duplicate(values: list[str], what: str, name: str) -> None:
        first_seen: dict[str, int] = {}
        for index, value in enumerate(values):
            if value in first_seen:
                raise ValueError(
                    f"Duplicate {what} {value!r} at {name}[{index}] (first at {name}[{first_seen[value]}])."
                )
            first_seen[value] = index

    @classmethod
    def from_codes(cls, item_ids: Sequence[str], codes: np.ndarray) -> ItemCatalog:
        """
        Builds a catalog from integer codes, one row per item and one column per level (e.g. residual k-means codes
        plus a dedup level).

        Args:
            item_ids (`Sequence[str]`):
                Item ids, distinct.
            codes (`np.ndarray` of shape `(num_items, num_levels)`):
                Non-negative integer codes (< 10⁹), distinct rows, at most 26 levels.

        Returns:
            [`ItemCatalog`].
        """
        codes = check_codes(codes)
        item_ids = list(item_ids)
        if len(item_ids) != codes.shape[0]:
            raise ValueError(
                f"item_ids and codes must have the same length, got {len(item_ids)} and {codes.shape[0]}."
            )
        if not item_ids:
            raise ValueError("An ItemCatalog needs at least one item.")
        sids = codes_to_sids(codes)
        catalog = cls.__new__(cls)
        catalog._init(item_ids, sids, codes)
        return catalog

    # -- look-ups ----------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._item_ids)

    def __contains__(self, item_id: object) -> bool:
        """`item_id in catalog`: whether `item_id` is an item id of the catalog (use [`is_valid`] for SIDs)."""
        return isinstance(item_id, str) and item_id in self._index_of_item

    def __repr__(self) -> str:
        return f"ItemCatalog(num_items={len(self)}, num_levels={self.num_levels})"

    @property
    def item_ids(self) -> list[str]:
        """Item ids, in catalog order (a copy)."""
        return list(self._item_ids)

    @property
    def sids(self) -> list[str]:
        """SID strings, in catalog order (a copy)."""
        return list(self._sids)

    @property
    def num_levels(self) -> int:
        """SID tokens per item."""
        return self._codes.shape[1]

    @property
    def codes(self) -> np.ndarray:
        """Codes as a read-only `np.ndarray` of shape `(num_items, num_levels)`, dtype int64."""
        return self._codes

    def index(self, item_id: str) -> int:
        """Catalog row of `item_id`. Raises `KeyError` if it is not in the catalog."""
        try:
            return self._index_of_item[item_id]
        except (KeyError, TypeError):
            raise KeyError(f"Item id {item_id!r} is not in the catalog ({len(self)} items).") from None

    def item_to_sid(self, item_id: str) -> str:
        """The SID string of `item_id`. Raises `KeyError` if it is not in the catalog."""
        return self._sids[self.index(item_id)]

    def sid_to_item(self, sid: str) -> str | None:
        """The item id of a SID string, or `None` if it is not a catalog item (malformed, partial or unknown)."""
        index = self._index_of_sid.get(sid) if isinstance(sid, str) else None
        return None if index is None else self._item_ids[index]

    def is_valid(self, sid: str) -> bool:
        """Whether `sid` is exactly the SID string of a catalog item."""
        return isinstance(sid, str) and sid in self._index_of_sid

    # -- tokens and trie ---------------------------------------------------------------------------------------------

    def token_ids(self, tokenizer: Any) -> torch.Tensor:
        """
        The token ids of every item's SID tokens.

        Args:
            tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
                A tokenizer in which each SID token of the catalog is one token (e.g. from
                [`~adagrpo_trl.tokenization.build_sid_tokenizer`], or a pretrained tokenizer with the SID tokens added).

        Returns:
            `torch.LongTensor` of shape `(num_items, num_levels)`.

        Raises:
            `ValueError`: naming the first SID token that the tokenizer lacks or does not encode as a single token.
        """
        vocab = tokenizer.get_vocab()
        result = np.empty(self._codes.shape, dtype=np.int64)
        for level in range(self.num_levels):
            column = self._codes[:, level]
            used = np.unique(column)
            tokens = [sid_token(level, code) for code in used.tolist()]
            ids = []
            for token in tokens:
                if token not in vocab:
                    raise ValueError(
                        f"The tokenizer lacks the SID token {token!r} (add the catalog's SID tokens with "
                        "tokenizer.add_tokens, or build the tokenizer with build_sid_tokenizer)."
                    )
                ids.append(vocab[token])
            encoded = tokenizer(tokens, add_special_tokens=False)["input_ids"]
            for token, token_id, pieces in zip(tokens, ids, encoded, strict=True):
                if list(pieces) != [token_id]:
                    raise ValueError(
                        f"The tokenizer splits the SID token {token!r} into {list(pieces)} instead of encoding it as "
                        f"its single id {token_id}; add it as an (added) token."
                    )
            lookup = np.zeros(int(used[-1]) + 1, dtype=np.int64)
            lookup[used] = ids
            result[:, level] = lookup[column]
        return torch.from_numpy(result)

    def check_tokenizer(
        self, tokenizer: Any, catalog_source: str = "the catalog", tokenizer_source: str = "the tokenizer"
    ) -> torch.Tensor:
        """
        Checks that `tokenizer` encodes every SID token of the catalog as one token, e.g. that a catalog file and a
        checkpoint's tokenizer were prepared together, and returns [`token_ids`].

        Args:
            tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
                The tokenizer.
            catalog_source (`str`, *optional*, defaults to `"the catalog"`):
                Where the catalog comes from (e.g. its file), for the message.
            tokenizer_source (`str`, *optional*, defaults to `"the tokenizer"`):
                Where the tokenizer comes from (e.g. its folder), for the message.

        Raises:
            `ValueError`: naming both sources and the first SID token the tokenizer lacks or splits.
        """
        try:
            return self.token_ids(tokenizer)
        except ValueError as error:
            raise ValueError(
                f"The catalog {catalog_source} does not match the tokenizer {tokenizer_source}: {error} Was the catalog "
                "prepared for another tokenizer (another data folder or codebook)? Use the catalog.json of the data "
                "folder the model was trained on."
            ) from None

    def check_sids(self, values: Sequence[Any], source: str = "the dataset", column: str = "completion") -> None:
        """
        Checks that every value is exactly the SID string of a catalog item (e.g. a dataset's ground-truth column).

        Args:
            values (`Sequence[Any]`):
                One value per row.
            source (`str`, *optional*, defaults to `"the dataset"`):
                What the rows belong to (a file, a split), for the message.
            column (`str`, *optional*, defaults to `"completion"`):
                The column the values come from, for the message.

        Raises:
            `ValueError`: naming `source`, the first bad row (0-based), `column`, the value and the reason (a malformed
            SID, or a well-formed SID that is no catalog item), and how many rows are bad.
        """
        index_of_sid = self._index_of_sid
        bad = [row for row, value in enumerate(values) if not (isinstance(value, str) and value in index_of_sid)]
        if not bad:
            return
        row, value = bad[0], values[bad[0]]
        try:
            codes = parse_sid(value)
        except ValueError as error:
            reason = str(error).rstrip(".")
        else:
            if len(codes) != self.num_levels:
                reason = f"it has {len(codes)} SID levels, the catalog's items have {self.num_levels}"
            else:
                reason = f"a well-formed SID, but no item of the catalog ({len(self)} items) has it"
        raise ValueError(
            f"{source}: row {row}: {column!r} = {value!r} is not the SID of a catalog item: {reason} ({len(bad)} bad "
            f"row(s) of {len(values)} in total). Rebuild the dataset from the same catalog."
        )

    def build_trie(self, token_ids: torch.Tensor, eos_token_id: int | Sequence[int] | None = None) -> PrefixTrie:
        """
        The catalog's prefix trie over `token_ids` (from [`token_ids`]); see [`~adagrpo_trl.trie.build_trie`]. `item_of_node` gives
        catalog rows.
        """
        if tuple(token_ids.shape) != self._codes.shape:
            raise ValueError(
                f"token_ids must have shape {self._codes.shape} (items, levels) for this catalog, got "
                f"{tuple(token_ids.shape)}."
            )
        return build_trie(token_ids, eos_token_id)

    # -- I/O ---------------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """
        Writes the catalog as human-readable JSON, one item per line, atomically (a temporary file in the same
        directory, then `os.replace`): readers never see a partial file.

        Args:
            path (`str` or `os.PathLike`):
                Destination file.
        """
        header = {"format": _FORMAT, "version": _VERSION, "num_items": len(self), "num_levels": self.num_levels}

        def write(temporary: str) -> None:
            with open(temporary, "w", encoding="utf-8") as file:
                file.write("{\n")
                for key, value in header.items():
                    file.write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
                file.write('  "items": [\n')
                last = len(self) - 1
                for index, (item_id, sid) in enumerate(zip(self._item_ids, self._sids, strict=True)):
                    line = json.dumps({"item_id": item_id, "sid": sid}, ensure_ascii=False)
                    file.write(f"    {line}{',' if index < last else ''}\n")
                file.write("  ]\n}\n")

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ItemCatalog:
        """
        Reads a catalog written by [`save`] and validates it like the constructor.

        Args:
            path (`str` or `os.PathLike`):
                The JSON file.

        Raises:
            `ValueError`: naming the file, if it is not a valid catalog file.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as file:
                data = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
        try:
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                raise ValueError(f'not an ItemCatalog file (expected "format": {json.dumps(_FORMAT)}).')
            if data.get("version") != _VERSION:
                raise ValueError(f"unsupported catalog version {data.get('version')!r} (expected {_VERSION}).")
            items = data.get("items")
            if not isinstance(items, list):
                raise ValueError('"items" must be a list of {"item_id": ..., "sid": ...} objects.')
            item_ids, sids = [], []
            for index, item in enumerate(items):
                if not isinstance(item, dict) or set(item) != {"item_id", "sid"}:
                    raise ValueError(f'items[{index}] must be an object with keys "item_id" and "sid", got {item!r}.')
                item_ids.append(item["item_id"])
                sids.append(item["sid"])
            catalog = cls(item_ids, sids)
            for key, actual in (("num_items", len(catalog)), ("num_levels", catalog.num_levels)):
                if key in data and data[key] != actual:
                    raise ValueError(f'"{key}" is {data[key]!r} but the items give {actual}.')
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from None
        return catalog


__all__ = ["ItemCatalog", "PrefixTrie", "build_trie", "format_sid", "parse_sid", "token_id_tuple"]
