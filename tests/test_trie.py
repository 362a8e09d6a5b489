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
"""The prefix trie: allowed sets equal a brute force, structure, bad input, scale, the vectorised prefix look-up."""

import numpy as np
import pytest
import torch

from adagrpo_trl.catalog import ItemCatalog
from adagrpo_trl.sid import sid_vocabulary
from adagrpo_trl.tokenization import build_sid_tokenizer
from adagrpo_trl.trie import PrefixTrie, build_trie

from .toy import random_codes


CODEBOOK = [5, 4, 6, 3]


@pytest.fixture
def sid_tokenizer():
    return build_sid_tokenizer(sid_vocabulary(CODEBOOK), words=["history", ":", "next"])


def brute_force_allowed(items, prefix, eos):
    """Next tokens after `prefix` among `items` (EOS after a complete item); empty for a non-prefix."""
    n = len(prefix)
    matches = [item for item in items if item[:n] == prefix]
    if not matches:
        return set()
    return {eos} if n == len(items[0]) else {item[n] for item in matches}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trie_allowed_sets_equal_brute_force(sid_tokenizer, seed):
    eos = sid_tokenizer.eos_token_id
    codes = random_codes(120, CODEBOOK, seed=seed)
    catalog = ItemCatalog.from_codes([str(i) for i in range(120)], codes)
    token_ids = catalog.token_ids(sid_tokenizer)
    trie = catalog.build_trie(token_ids, eos_token_id=eos)
    items = [tuple(row) for row in token_ids.tolist()]

    # Every prefix of every item, plus random sequences that are mostly not prefixes.
    prefixes = {item[:n] for item in items for n in range(5)}
    rng = np.random.default_rng(seed)
    vocab = sorted(sid_tokenizer.get_vocab().values())
    prefixes |= {tuple(rng.choice(vocab, size=n).tolist()) for n in range(1, 5) for _ in range(40)}
    for length in range(5):
        batch = sorted(p for p in prefixes if len(p) == length)
        nodes = trie.walk(torch.tensor(batch, dtype=torch.long).reshape(len(batch), length))
        rows, tokens = trie.allowed(nodes)
        for index, prefix in enumerate(batch):
            expected = brute_force_allowed(items, prefix, eos)
            got = tokens[rows == index].tolist()
            assert got == sorted(expected), (prefix, got, expected)  # sorted, no duplicates
            if length == 4 and expected:
                assert items[trie.item_index(nodes[index : index + 1]).item()] == prefix
            assert (nodes[index] == PrefixTrie.DEAD).item() == (not expected)

    # Structure: one node per distinct prefix, one leaf per item, EOS after a leaf ends the item.
    assert trie.num_nodes == len({item[:n] for item in items for n in range(5)})
    assert trie.num_items == 120 and trie.num_edges == trie.num_nodes - 1 + 120
    assert torch.all(trie.indptr[1:] >= trie.indptr[:-1])
    leaves = trie.walk(token_ids)
    assert trie.item_index(leaves).tolist() == list(range(120))
    ended = trie.next_nodes(leaves, torch.full_like(leaves, eos))
    assert torch.all(ended == PrefixTrie.END)
    assert trie.allowed(ended)[0].numel() == 0  # nothing after the end
    assert torch.all(trie.next_nodes(ended, token_ids[:, 0]) == PrefixTrie.DEAD)


def test_trie_without_eos_leaves_allow_nothing():
    trie = build_trie(torch.tensor([[3, 4], [3, 5]]))
    leaves = trie.walk(torch.tensor([[3, 4], [3, 5]]))
    assert trie.is_leaf(leaves).all() and trie.allowed(leaves)[0].numel() == 0
    assert trie.allowed(torch.tensor([0]))[1].tolist() == [3]


def test_trie_rejects_bad_input():
    with pytest.raises(ValueError, match=r"rows 0 and 2 are identical \(\[1, 2\]\)"):
        build_trie(torch.tensor([[1, 2], [1, 3], [1, 2]]))
    with pytest.raises(ValueError, match="shape"):
        build_trie(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="row 1"):
        build_trie(torch.tensor([[1, 2], [-1, 3]]))
    with pytest.raises(ValueError, match="eos_token_id"):
        build_trie(torch.tensor([[1, 2]]), eos_token_id=-3)
    catalog = ItemCatalog(["x"], ["<a_0><b_0>"])
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        catalog.build_trie(torch.tensor([[1, 2, 3]]))


def test_trie_build_is_vectorised_at_scale():
    # 200K 4-level items in well under a second on one core: no per-item Python work.
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 64, size=(220_000, 4)), axis=0)[:200_000]
    codes = codes[rng.permutation(len(codes))]
    trie = build_trie(torch.from_numpy(codes), eos_token_id=999)
    assert trie.num_items == len(codes)
    probe = torch.from_numpy(codes[:1000])
    assert trie.item_index(trie.walk(probe)).tolist() == list(range(1000))
    assert trie.nbytes() < 200 * len(codes)  # O(items · levels) memory


@pytest.mark.parametrize("with_eos", [False, True])
def test_prefix_nodes_equal_the_step_by_step_walk(sid_tokenizer, with_eos):
    eos = sid_tokenizer.eos_token_id
    codes = random_codes(120, CODEBOOK, seed=3)
    catalog = ItemCatalog.from_codes([str(i) for i in range(120)], codes)
    token_ids = catalog.token_ids(sid_tokenizer)
    trie = catalog.build_trie(token_ids, eos_token_id=eos if with_eos else None)
    rng = np.random.default_rng(0)
    for length in range(6):  # up to num_levels + 1 (EOS after an item)
        rows = token_ids[rng.integers(0, 120, size=200)]
        rows = torch.cat([rows, torch.full((200, 1), eos)], dim=1)[:, :length]
        noise = torch.from_numpy(rng.integers(-2, len(sid_tokenizer) + 3, size=rows.shape))
        rows = torch.where(torch.from_numpy(rng.random(rows.shape) < 0.1), noise, rows)  # non-prefixes, bad ids
        assert torch.equal(trie.prefix_nodes(rows), trie.walk(rows)), length


def test_prefix_nodes_fall_back_to_the_walk_when_keys_would_overflow():
    # 20 levels of 10 tokens: 10 ** 20 prefix keys do not fit in 62 bits.
    rng = np.random.default_rng(0)
    token_ids = torch.from_numpy(np.unique(rng.integers(0, 10, size=(30, 20)), axis=0))
    trie = build_trie(token_ids)
    assert trie._prefix_lookup() is None
    prefixes = torch.cat([token_ids[:, :7], torch.tensor([[11] * 7])])
    assert torch.equal(trie.prefix_nodes(prefixes), trie.walk(prefixes))
    assert trie.prefix_nodes(prefixes)[-1] == PrefixTrie.DEAD
