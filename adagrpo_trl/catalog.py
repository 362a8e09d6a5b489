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
The item catalog: item ids <-> semantic IDs (SIDs), validity checks, JSON I/O and the prefix trie of the catalog as
tensors (CSR), which [`~adagrpo_trl.constrained.TrieLogitsProcessor`] uses to constrain generation to catalog items.

A SID string is the concatenation of one SID token per level, levels `a, b, c, ...` in order, e.g.
`"<a_12><b_7><c_201><d_0>"` (see [`~adagrpo_trl.tokenization.sid_token`]). Every item of a catalog has the same
number of levels, and codes are written without leading zeros, so SID strings and code tuples correspond one to one.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .utils import atomic_write


_FORMAT = "adagrpo_trl.ItemCatalog"
_VERSION = 1
_CODE = r"(0|[1-9][0-9]{0,8})"  # no leading zeros (one string per code), < 1e9 (fits int64 after any offset)
_TOKEN_RE = re.compile(r"<([a-z])_" + _CODE + ">")


def _sid_pattern(num_levels: int) -> re.Pattern:
    return re.compile("".join(f"<{string.ascii_lowercase[level]}_{_CODE}>" for level in range(num_levels)))


def parse_sid(sid: str) -> tuple[int, ...]:
    """
    Parses a SID string into its codes, one per level: `parse_sid("<a_3><b_0>") == (3, 0)`.

    Args:
        sid (`str`):
            Concatenated SID tokens of consecutive levels `a, b, c, ...`, codes without leading zeros.

    Returns:
        `tuple[int, ...]`: the code of each level.

    Raises:
        `ValueError`: if `sid` is not a well-formed SID, with the reason.
    """
    if not isinstance(sid, str):
        raise ValueError(f"A SID must be a string, got {type(sid).__name__} {sid!r}.")
    codes, position = [], 0
    while position < len(sid):
        match = _TOKEN_RE.match(sid, position)
        if match is None:
            raise ValueError(
                f"Malformed SID {sid!r}: expected a SID token like '<{string.ascii_lowercase[len(codes) % 26]}_0>' "
                f"(code without leading zeros) at character {position}."
            )
        expected = string.ascii_lowercase[len(codes)] if len(codes) < 26 else None
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


def format_sid(codes: Sequence[int]) -> str:
    """The SID string of a code tuple: `format_sid((3, 0)) == "<a_3><b_0>"`."""
    return "".join(f"<{string.ascii_lowercase[level]}_{int(code)}>" for level, code in enumerate(codes))


def token_id_tuple(token_ids: int | Sequence[int] | None, name: str) -> tuple[int, ...]:
    """Sorted distinct non-negative token ids from an id, a sequence of ids or `None` (empty)."""
    if token_ids is None:
        return ()
    values = [token_ids] if isinstance(token_ids, (int, np.integer)) else list(token_ids)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"{name} must be a non-negative token id or a list of them, got {token_ids!r}.")
    return tuple(sorted({int(v) for v in values}))


# ---------------------------------------------------------------------------------------------------------------------
# Prefix trie
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class PrefixTrie:
    """
    The prefix trie of a set of equal-length token sequences (the catalog's items) in compressed sparse row (CSR)
    form, as tensors, so that transitions and allowed-token look-ups are vectorised on any device.

    Nodes are numbered breadth-first: node `0` is the root (the empty prefix), then every distinct prefix of length 1,
    length 2, ..., each level in lexicographic order of its tokens. The allowed next tokens of node `n` are
    `allowed_tokens[indptr[n]:indptr[n + 1]]` (sorted ascending) and `children[indptr[n]:indptr[n + 1]]` the nodes
    they lead to. Leaves are complete items: they allow only the EOS token(s) given to [`build_trie`] (leading to
    [`PrefixTrie.END`]), or nothing if none was given. Two negative node ids are states outside the trie:
    [`PrefixTrie.DEAD`] (a sequence that is no prefix of any item) and [`PrefixTrie.END`] (an item followed by EOS);
    neither allows any token.

    Build it with [`build_trie`] or [`ItemCatalog.build_trie`].

    Args:
        indptr (`torch.LongTensor` of shape `(num_nodes + 1,)`):
            Start of each node's slice in `allowed_tokens` / `children`.
        allowed_tokens (`torch.LongTensor` of shape `(num_edges,)`):
            Allowed next token ids, node by node, ascending within a node.
        children (`torch.LongTensor` of shape `(num_edges,)`):
            The node reached by each allowed token (`END` for EOS after a leaf).
        item_of_node (`torch.LongTensor` of shape `(num_nodes,)`):
            Row of the item (in the `token_ids` given to [`build_trie`]) that each leaf completes, `-1` elsewhere.
        num_levels (`int`):
            Tokens per item.
        eos_token_ids (`tuple[int, ...]`):
            The EOS token ids that leaves allow (empty if the trie was built without EOS).
    """

    DEAD = -1
    END = -2

    indptr: torch.Tensor
    allowed_tokens: torch.Tensor
    children: torch.Tensor
    item_of_node: torch.Tensor
    num_levels: int
    eos_token_ids: tuple[int, ...] = ()
    _edge_keys: torch.Tensor | None = field(default=None, repr=False)
    _stride: int = field(default=0, repr=False)
    _device_copies: dict = field(default_factory=dict, repr=False)
    _prefix_index: Any = field(default=None, repr=False)

    def __post_init__(self):
        if self._edge_keys is None:
            self._stride = int(self.allowed_tokens.max().item()) + 1 if self.allowed_tokens.numel() else 1
            counts = self.indptr[1:] - self.indptr[:-1]
            parents = torch.repeat_interleave(torch.arange(self.num_nodes, device=self.indptr.device), counts)
            self._edge_keys = parents * self._stride + self.allowed_tokens

    @property
    def num_nodes(self) -> int:
        """Number of trie nodes, root and leaves included."""
        return self.indptr.numel() - 1

    @property
    def num_edges(self) -> int:
        """Number of (node, allowed token) pairs, EOS entries of leaves included."""
        return self.allowed_tokens.numel()

    @property
    def num_items(self) -> int:
        """Number of leaves, i.e. items."""
        return int((self.item_of_node >= 0).sum().item())

    @property
    def device(self) -> torch.device:
        return self.indptr.device

    @property
    def max_token_id(self) -> int:
        """The largest token id the trie can allow (`-1` if none)."""
        return self._stride - 1 if self.num_edges else -1

    def nbytes(self) -> int:
        """Memory held by the trie's tensors, in bytes."""
        tensors = (self.indptr, self.allowed_tokens, self.children, self.item_of_node, self._edge_keys)
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device | str) -> PrefixTrie:
        """
        The trie on `device`. Copies are cached, so calling this at every generation step moves the tensors once.
        """
        device = torch.device(device)
        if device == self.device:
            return self
        key = str(device)
        if key not in self._device_copies:
            self._device_copies[key] = PrefixTrie(
                indptr=self.indptr.to(device),
                allowed_tokens=self.allowed_tokens.to(device),
                children=self.children.to(device),
                item_of_node=self.item_of_node.to(device),
                num_levels=self.num_levels,
                eos_token_ids=self.eos_token_ids,
                _edge_keys=self._edge_keys.to(device),
                _stride=self._stride,
            )
        return self._device_copies[key]

    def next_nodes(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """
        Vectorised transition: the node reached from each of `nodes` by the corresponding token of `tokens`.

        Args:
            nodes (`torch.LongTensor`):
                Current nodes (any shape); negative ids (`DEAD`, `END`) stay outside the trie.
            tokens (`torch.LongTensor`):
                Next tokens, same shape as `nodes`.

        Returns:
            `torch.LongTensor`: the next nodes, `DEAD` where the token is not allowed, `END` for EOS after a leaf.
        """
        nodes = nodes.to(torch.long)
        tokens = tokens.to(device=nodes.device, dtype=torch.long)
        in_range = (nodes >= 0) & (tokens >= 0) & (tokens < self._stride)
        keys = torch.where(in_range, nodes * self._stride + tokens, torch.full_like(nodes, -1))
        if self.num_edges == 0:
            return torch.full_like(nodes, self.DEAD)
        position = torch.searchsorted(self._edge_keys, keys.reshape(-1)).reshape(keys.shape)
        position = position.clamp_(max=self.num_edges - 1)
        found = in_range & (self._edge_keys[position] == keys)
        return torch.where(found, self.children[position], torch.full_like(nodes, self.DEAD))

    def walk(self, token_ids: torch.Tensor) -> torch.Tensor:
        """
        The node reached by each row of `token_ids` (shape `(batch, length)`) from the root; `DEAD` for rows that
        are not prefixes of any item (optionally followed by one EOS).
        """
        nodes = torch.zeros(token_ids.size(0), dtype=torch.long, device=self.device)
        token_ids = token_ids.to(self.device)
        for position in range(token_ids.size(1)):
            nodes = self.next_nodes(nodes, token_ids[:, position])
        return nodes

    def prefix_nodes(self, token_ids: torch.Tensor) -> torch.Tensor:
        """
        The node of each row of `token_ids` (shape `(batch, length)`, `length <= num_levels`), `DEAD` for rows that
        are not a prefix of any item. Same result as [`walk`] for such lengths, in one sorted look-up instead of one
        transition per position: every prefix of length `l` is numbered by a mixed-radix key of its tokens (sorted
        within the level, as nodes are numbered lexicographically), found with a single `searchsorted`. Falls back to
        [`walk`] for longer rows or when the keys would not fit in 62 bits.
        """
        length = token_ids.size(1)
        index = self._prefix_lookup()
        if length > self.num_levels or index is None:
            return self.walk(token_ids)
        token_ids = token_ids.to(device=self.device, dtype=torch.long)
        if length == 0:
            return torch.zeros(token_ids.size(0), dtype=torch.long, device=self.device)
        codes, level_keys, level_starts, powers = index
        in_range = (token_ids >= 0) & (token_ids < self._stride)
        token_codes = torch.where(in_range, codes[token_ids.clamp(0, self._stride - 1)], -1)
        keys = (token_codes * powers[self.num_levels - length :]).sum(dim=1)
        candidates = level_keys[length]
        position = torch.searchsorted(candidates, keys).clamp_(max=candidates.numel() - 1)
        found = (token_codes >= 0).all(dim=1) & (candidates[position] == keys)
        return torch.where(found, position + level_starts[length], self.DEAD)

    def _prefix_lookup(self) -> tuple | None:
        """
        Lazily built, per device: `(codes, level_keys, level_starts, powers)`. `codes[token]` is the rank of `token`
        among the item tokens (`-1` for others), `level_keys[l]` the ascending keys `sum_j codes[t_j] * A ** (l-1-j)`
        of the level-`l` nodes, numbered from `level_starts[l]`; `None` when `A ** num_levels` exceeds 62 bits.
        """
        if self._prefix_index is None:
            item_edges = self.children >= 0  # EOS edges lead to END
            tokens = torch.unique(self.allowed_tokens[item_edges])
            alphabet = tokens.numel()
            if alphabet == 0 or alphabet**self.num_levels >= 2**62:
                self._prefix_index = False
                return None
            codes = torch.full((self._stride,), -1, dtype=torch.long, device=self.device)
            codes[tokens] = torch.arange(alphabet, device=self.device)
            parents = torch.div(self._edge_keys, self._stride, rounding_mode="floor")
            keys = torch.zeros(self.num_nodes, dtype=torch.long, device=self.device)
            level_starts, start, end = [0, 1], 0, 1
            for _ in range(self.num_levels):  # children of a level's nodes are the next level, contiguous
                first, last = int(self.indptr[start]), int(self.indptr[end])
                children = self.children[first:last]
                item = children >= 0
                children = children[item]
                keys[children] = (
                    keys[parents[first:last][item]] * alphabet + codes[self.allowed_tokens[first:last][item]]
                )
                start, end = end, end + children.numel()
                level_starts.append(end)
            level_keys = [keys[level_starts[level] : level_starts[level + 1]] for level in range(self.num_levels + 1)]
            powers = alphabet ** torch.arange(self.num_levels - 1, -1, -1, dtype=torch.long, device=self.device)
            self._prefix_index = (codes, level_keys, level_starts, powers)
        return self._prefix_index or None

    def is_leaf(self, nodes: torch.Tensor) -> torch.Tensor:
        """Whether each node is a leaf (a complete item). `DEAD` and `END` are not leaves."""
        return self.item_index(nodes) >= 0

    def item_index(self, nodes: torch.Tensor) -> torch.Tensor:
        """The item row of each leaf node, `-1` for every other node (internal, `DEAD`, `END`)."""
        valid = nodes >= 0
        items = self.item_of_node[nodes.clamp(min=0)]
        return torch.where(valid, items, torch.full_like(items, -1))

    def allowed(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The allowed next tokens of each node, as flat (row, token) pairs: cost O(total allowed), no dense table.

        Args:
            nodes (`torch.LongTensor` of shape `(batch,)`):
                Nodes; `DEAD` and `END` allow nothing.

        Returns:
            `tuple[torch.LongTensor, torch.LongTensor]`: `(rows, tokens)`, where `tokens[i]` is allowed for
            `nodes[rows[i]]`; rows ascending, tokens ascending within a row.
        """
        valid = nodes >= 0
        safe = nodes.clamp(min=0)
        starts = self.indptr[safe]
        counts = torch.where(valid, self.indptr[safe + 1] - starts, torch.zeros_like(starts))
        total = int(counts.sum().item())
        rows = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), counts, output_size=total)
        row_starts = torch.cumsum(counts, 0) - counts
        offsets = torch.arange(total, device=nodes.device) - row_starts[rows]
        return rows, self.allowed_tokens[starts[rows] + offsets]


def build_trie(token_ids: torch.Tensor | np.ndarray, eos_token_id: int | Sequence[int] | None = None) -> PrefixTrie:
    """
    Builds the prefix trie of equal-length token sequences, vectorised (one lexicographic sort plus linear passes; no
    Python loop over items): about a second and a few hundred MB for a million 4-token items.

    Args:
        token_ids (`torch.LongTensor` or `np.ndarray` of shape `(num_items, num_levels)`):
            One row of token ids per item, e.g. from [`ItemCatalog.token_ids`]. Rows must be distinct.
        eos_token_id (`int` or `Sequence[int]`, *optional*):
            Token id(s) that leaves allow. Without it, leaves allow nothing (callers such as
            [`~adagrpo_trl.constrained.TrieLogitsProcessor`] add EOS themselves).

    Returns:
        [`PrefixTrie`] on the device of `token_ids` (CPU for NumPy input). `item_of_node` refers to rows of
        `token_ids`.
    """
    device = token_ids.device if isinstance(token_ids, torch.Tensor) else torch.device("cpu")
    tokens = token_ids.detach().cpu().numpy() if isinstance(token_ids, torch.Tensor) else np.asarray(token_ids)
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"token_ids must have shape (num_items, num_levels) with both > 0, got {tokens.shape}.")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token_ids must hold integers, got dtype {tokens.dtype}.")
    tokens = tokens.astype(np.int64, copy=False)
    if tokens.min() < 0:
        row = int(np.argwhere(tokens < 0)[0, 0])
        raise ValueError(f"token_ids must be >= 0; row {row} is {tokens[row].tolist()}.")
    eos = token_id_tuple(eos_token_id, "eos_token_id")

    num_items, num_levels = tokens.shape
    order = np.lexsort(tokens.T[::-1])  # lexicographic: first column is the primary key
    ordered = tokens[order]
    changed = ordered[1:] != ordered[:-1]  # (N-1, L)
    duplicate = ~changed.any(axis=1)
    if duplicate.any():
        k = int(np.flatnonzero(duplicate)[0])
        first, second = sorted((int(order[k]), int(order[k + 1])))
        raise ValueError(f"token_ids rows {first} and {second} are identical ({tokens[first].tolist()}).")
    # new_prefix[i, l]: the prefix of length l + 1 of sorted row i differs from that of row i - 1.
    new_prefix = np.empty((num_items, num_levels), dtype=bool)
    new_prefix[0] = True
    np.logical_or.accumulate(changed, axis=1, out=new_prefix[1:])
    del changed

    # Every array is allocated once at its final size (no per-level pieces to concatenate): a lower memory peak.
    num_nodes = 1 + int(new_prefix.sum())  # the root and one node per distinct prefix
    num_edges = num_nodes - 1 + num_items * len(eos)
    parents = np.empty(num_edges, dtype=np.int64)
    edge_tokens = np.empty(num_edges, dtype=np.int64)
    children = np.empty(num_edges, dtype=np.int64)
    offset = 1  # node 0 is the root; edge e leads to node e + 1
    previous_ids = None
    for level in range(num_levels):  # loop over levels, vectorised over items
        starts = np.flatnonzero(new_prefix[:, level])
        edges = slice(offset - 1, offset - 1 + starts.size)
        parents[edges] = 0 if previous_ids is None else previous_ids[starts]
        edge_tokens[edges] = ordered[starts, level]
        children[edges] = np.arange(offset, offset + starts.size)
        previous_ids = np.cumsum(new_prefix[:, level], dtype=np.int64)
        previous_ids += offset - 1  # node of each sorted row's prefix of this length
        offset += starts.size
    del ordered, new_prefix
    leaf_ids = previous_ids  # every sorted row is a distinct leaf
    item_of_node = np.full(num_nodes, -1, dtype=np.int64)
    item_of_node[leaf_ids] = order
    if eos:
        eos_edges = slice(num_nodes - 1, num_edges)
        parents[eos_edges] = np.repeat(leaf_ids, len(eos))
        edge_tokens[eos_edges] = np.tile(np.asarray(eos, dtype=np.int64), num_items)
        children[eos_edges] = PrefixTrie.END
    del leaf_ids, previous_ids, order
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(parents, minlength=num_nodes), out=indptr[1:])
    stride = int(max(edge_tokens.max(), max(eos, default=0))) + 1
    edge_keys = (
        parents  # in place: parent * stride + token, strictly increasing (breadth-first parents, sorted tokens)
    )
    edge_keys *= stride
    edge_keys += edge_tokens
    del parents

    def as_tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    return PrefixTrie(
        indptr=as_tensor(indptr),
        allowed_tokens=as_tensor(edge_tokens),
        children=as_tensor(children),
        item_of_node=as_tensor(item_of_node),
        num_levels=num_levels,
        eos_token_ids=eos,
        _edge_keys=as_tensor(edge_keys),
        _stride=stride,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------------------------------


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
        pattern = _sid_pattern(num_levels)
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
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] == 0:
            raise ValueError(f"codes must have shape (num_items, num_levels) with num_levels > 0, got {codes.shape}.")
        if codes.shape[1] > 26:
            raise ValueError(f"SIDs have at most 26 levels (a-z), got {codes.shape[1]}.")
        if codes.size and not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}.")
        item_ids = list(item_ids)
        if len(item_ids) != codes.shape[0]:
            raise ValueError(
                f"item_ids and codes must have the same length, got {len(item_ids)} and {codes.shape[0]}."
            )
        if not item_ids:
            raise ValueError("An ItemCatalog needs at least one item.")
        bad = (codes < 0) | (codes >= 10**9)
        if bad.any():
            index = int(np.argwhere(bad)[0, 0])
            raise ValueError(f"codes must be in [0, 1e9); codes[{index}] = {codes[index].tolist()}.")
        codes = codes.astype(np.int64)
        columns = [
            [f"<{string.ascii_lowercase[level]}_{code}>" for code in codes[:, level].tolist()]
            for level in range(codes.shape[1])
        ]
        sids = ["".join(parts) for parts in zip(*columns, strict=True)]
        del columns
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
            tokens = [f"<{string.ascii_lowercase[level]}_{code}>" for code in used.tolist()]
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
        The catalog's prefix trie over `token_ids` (from [`token_ids`]); see [`build_trie`]. `item_of_node` gives
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
