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
"""Trie-constrained decoding: the processor's masks, sampling, beam search, generation configs and trainer rollouts."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from transformers import LogitsProcessor, LogitsProcessorList, Qwen2ForCausalLM

from adagrpo_trl import AdaGRPOTrainer
from adagrpo_trl.catalog import ItemCatalog
from adagrpo_trl.constrained import (
    TrieLogitsProcessor,
    build_generation_config,
    generate_with_shared_prefill,
    isolated_generation_config,
    make_trie_processor_factory,
)
from adagrpo_trl.sid import sid_vocabulary
from adagrpo_trl.tokenization import build_sid_tokenizer, small_qwen2_config
from adagrpo_trl.trie import PrefixTrie

from . import toy


CODEBOOK = [4, 3, 5]  # 60 possible items of 3 levels
LEVELS = len(CODEBOOK)
WORDS = ["history", ":", "next"]
PROMPTS = ["history : <a_1><b_2><c_3> next :", "next :", "history : <a_0><b_0><c_0> <a_2><b_1><c_4> next :"]


@pytest.fixture(scope="module")
def sid_tokenizer():
    return build_sid_tokenizer(sid_vocabulary(CODEBOOK), words=WORDS)


def make_catalog(num_items=20, seed=0, first_codes=(0, 1, 2)):
    """Random items whose first code is in `first_codes` (so `<a_3>` is never valid)."""
    space = [c for c in itertools.product(*map(range, CODEBOOK)) if c[0] in first_codes]
    rng = np.random.default_rng(seed)
    codes = np.array(space)[rng.choice(len(space), size=num_items, replace=False)]
    return ItemCatalog.from_codes([f"item-{i}" for i in range(num_items)], codes)


@pytest.fixture(scope="module")
def catalog():
    return make_catalog()


@pytest.fixture(scope="module")
def trie(catalog, sid_tokenizer):
    return catalog.build_trie(catalog.token_ids(sid_tokenizer))


def make_model(tokenizer, seed=0, bias=None):
    """A tiny random Qwen2; `bias` ({token: value}) adds an output bias so that those tokens dominate."""
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(
        small_qwen2_config(tokenizer, hidden_size=16, num_attention_heads=2, num_key_value_heads=1)
    )
    if bias:
        head = nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
        with torch.no_grad():
            head.weight.copy_(model.lm_head.weight)
            head.bias.zero_()
            for token, value in bias.items():
                head.bias[tokenizer.convert_tokens_to_ids(token)] = value
        model.lm_head = head
    return model.eval()


# Invalid continuations dominate: a word, a first-level code absent from the catalog, a third-level token out of
# place, and EOS before the item is complete.
ADVERSARIAL_BIAS = {"history": 12.0, "<a_3>": 10.0, "<c_0>": 9.0, "<c_4>": 9.0, "<eos>": 8.0}


def encode(tokenizer, prompts=PROMPTS):
    return tokenizer(prompts, return_tensors="pt", padding=True)


def generate(model, tokenizer, config, processors=(), prompts=PROMPTS):
    inputs = encode(tokenizer, prompts)
    with torch.no_grad():
        output = model.generate(**inputs, generation_config=config, logits_processor=LogitsProcessorList(processors))
    return output[:, inputs.input_ids.size(1) :]


def assert_valid_items(completions, catalog, tokenizer):
    """Every completion is exactly the L tokens of a catalog item followed by EOS (then only padding)."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    texts = []
    for row in completions.tolist():
        assert row[LEVELS] == eos, row
        assert all(token == pad for token in row[LEVELS + 1 :]), row
        text = tokenizer.decode(row[:LEVELS])
        assert catalog.is_valid(text), (text, row)
        texts.append(text)
    return texts


# ---------------------------------------------------------------------------------------------------------------------
# The processor on hand-made inputs
# ---------------------------------------------------------------------------------------------------------------------


def brute_force_allowed(items, suffix, eos, pad):
    if eos in suffix:
        return {pad}, False
    matches = [item for item in items if item[: len(suffix)] == suffix]
    if not matches:
        return {eos}, True  # dead end
    if len(suffix) == len(items[0]):
        return {eos}, False
    return {item[len(suffix)] for item in matches}, False


def test_processor_masks_exactly_the_brute_force_allowed_sets(catalog, sid_tokenizer, trie):
    eos, pad = sid_tokenizer.eos_token_id, sid_tokenizer.pad_token_id
    items = [tuple(row) for row in catalog.token_ids(sid_tokenizer).tolist()]
    vocab_size = len(sid_tokenizer)
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, vocab_size, size=5).tolist()
    for length in range(LEVELS + 2):
        suffixes = {item[:length] for item in items if len(item) >= length}
        suffixes |= {tuple(rng.integers(0, vocab_size, size=length).tolist()) for _ in range(30)}
        suffixes |= {item + (eos,) for item in items} if length == LEVELS + 1 else set()
        batch = sorted(s for s in suffixes if len(s) == length)
        input_ids = torch.tensor([prompt + list(s) for s in batch])
        scores = torch.randn(len(batch), vocab_size)
        processor = TrieLogitsProcessor(trie, eos, prompt_length=len(prompt), pad_token_id=pad)
        output = processor(input_ids, scores.clone())
        expected_dead = 0
        for row, suffix in enumerate(batch):
            allowed, dead = brute_force_allowed(items, suffix, eos, pad)
            expected_dead += dead
            finite = torch.isfinite(output[row]).nonzero().squeeze(1).tolist()
            assert finite == sorted(allowed), (suffix, finite, allowed)
            torch.testing.assert_close(output[row, finite], scores[row, finite])  # allowed scores untouched
        assert processor.num_dead_ends == expected_dead


def test_dead_ends_force_eos_and_are_counted(catalog, sid_tokenizer, trie):
    eos, pad = sid_tokenizer.eos_token_id, sid_tokenizer.pad_token_id
    item = catalog.token_ids(sid_tokenizer)[0].tolist()
    word = sid_tokenizer.convert_tokens_to_ids("history")
    invalid_first = sid_tokenizer.convert_tokens_to_ids("<a_3>")
    suffixes = [
        [word, pad, pad],  # a word: no prefix of any item
        [invalid_first, item[1], item[2]],  # a SID token that no item starts with
        [item[1], item[0], item[2]],  # SID tokens at the wrong levels
        item,  # complete item: EOS, not a dead end
        [item[0], eos, pad],  # finished: pad, not a dead end
    ]
    input_ids = torch.tensor([[word, word] + s for s in suffixes])
    processor = TrieLogitsProcessor(trie, eos, prompt_length=2, pad_token_id=pad)
    output = processor(input_ids, torch.randn(len(suffixes), len(sid_tokenizer)))
    allowed = [torch.isfinite(row).nonzero().squeeze(1).tolist() for row in output]
    assert allowed == [[eos], [eos], [eos], [eos], [pad]]
    assert processor.num_dead_ends == 3
    # The count accumulates over calls; without a pad token, EOS follows EOS.
    processor = TrieLogitsProcessor(trie, eos, prompt_length=2)
    processor(input_ids, torch.randn(len(suffixes), len(sid_tokenizer)))
    output = processor(input_ids, torch.randn(len(suffixes), len(sid_tokenizer)))
    assert torch.isfinite(output[4]).nonzero().squeeze(1).tolist() == [eos]
    assert processor.num_dead_ends == 6


def test_state_is_derived_from_input_ids_under_beam_reordering(catalog, sid_tokenizer, trie):
    # Beam search permutes and duplicates rows between steps: each row's mask must follow its own tokens.
    eos = sid_tokenizer.eos_token_id
    token_ids = catalog.token_ids(sid_tokenizer)
    prompt = torch.full((8, 3), sid_tokenizer.convert_tokens_to_ids(":"))
    input_ids = torch.cat([prompt, token_ids[:8, :2]], dim=1)
    scores = torch.randn(8, len(sid_tokenizer))
    processor = TrieLogitsProcessor(trie, eos, prompt_length=3)
    reference = processor(input_ids, scores.clone())
    permutation = torch.tensor([3, 3, 0, 7, 1, 1, 5, 2])
    for _ in range(2):  # the same processor object, called again on reordered rows
        reordered = processor(input_ids[permutation], scores[permutation].clone())
        torch.testing.assert_close(reordered, reference[permutation])
    assert processor.num_dead_ends == 0


def test_a_row_whose_allowed_tokens_are_all_banned_still_gets_a_finite_score(catalog, sid_tokenizer, trie):
    eos = sid_tokenizer.eos_token_id
    item = catalog.token_ids(sid_tokenizer)[0].tolist()
    word = sid_tokenizer.convert_tokens_to_ids("history")
    input_ids = torch.tensor([[word] + item, [word] + item, [word, item[0], word, word]])
    scores = torch.randn(3, len(sid_tokenizer))
    scores[0, eos] = -torch.inf  # e.g. a min-length processor banned EOS at a complete item
    scores[1, eos] = torch.nan
    scores[2, eos] = -torch.inf  # dead end with EOS banned
    output = TrieLogitsProcessor(trie, eos, prompt_length=1)(input_ids, scores)
    for row in range(3):
        assert torch.isfinite(output[row]).nonzero().squeeze(1).tolist() == [eos]
        assert output[row, eos] == 0.0
    assert not torch.isnan(output).any()


def test_processor_validation(catalog, sid_tokenizer, trie):
    eos = sid_tokenizer.eos_token_id
    with pytest.raises(ValueError, match="needs a tokenizer"):
        TrieLogitsProcessor(catalog, eos, prompt_length=2)
    sid_id = sid_tokenizer.convert_tokens_to_ids(catalog.sids[0][:5])
    with pytest.raises(ValueError, match=f"EOS token id {sid_id} is also a SID token"):
        TrieLogitsProcessor(trie, sid_id, prompt_length=2)
    with pytest.raises(ValueError, match="eos_token_id"):
        TrieLogitsProcessor(trie, None, prompt_length=2)
    with pytest.raises(ValueError, match="built with eos_token_id"):
        TrieLogitsProcessor(catalog.build_trie(catalog.token_ids(sid_tokenizer), eos + 1), eos, prompt_length=2)
    processor = TrieLogitsProcessor(trie, eos, prompt_length=4)
    with pytest.raises(ValueError, match="shorter than its prompt_length 4"):
        processor(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, len(sid_tokenizer)))
    with pytest.raises(ValueError, match="resize the model's embeddings"):
        processor(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 5))
    # A catalog with its tokenizer builds the same trie.
    built = TrieLogitsProcessor(catalog, eos, prompt_length=1, tokenizer=sid_tokenizer).trie
    assert torch.equal(built.allowed_tokens, trie.allowed_tokens) and torch.equal(built.indptr, trie.indptr)


# ---------------------------------------------------------------------------------------------------------------------
# Generation with a tiny model
# ---------------------------------------------------------------------------------------------------------------------


def test_adversarial_model_hallucinates_without_the_constraint(catalog, sid_tokenizer):
    # Sanity check of the adversarial bias used below: unconstrained, almost nothing is a catalog item.
    model = make_model(sid_tokenizer, bias=ADVERSARIAL_BIAS)
    config = build_generation_config(LEVELS + 1, num_return_sequences=8, tokenizer=sid_tokenizer)
    torch.manual_seed(0)
    completions = generate(model, sid_tokenizer, config)
    texts = sid_tokenizer.batch_decode(completions[:, :LEVELS])
    assert sum(catalog.is_valid(t) for t in texts) <= len(texts) // 4


@pytest.mark.parametrize("bias", [None, ADVERSARIAL_BIAS], ids=["random", "adversarial"])
def test_constrained_sampling_returns_only_catalog_items(catalog, sid_tokenizer, trie, bias):
    model = make_model(sid_tokenizer, bias=bias)
    config = build_generation_config(LEVELS + 1, num_return_sequences=16, tokenizer=sid_tokenizer)
    torch.manual_seed(0)
    processor = TrieLogitsProcessor(trie, sid_tokenizer.eos_token_id, encode(sid_tokenizer).input_ids.size(1))
    completions = generate(model, sid_tokenizer, config, [processor])
    assert completions.shape == (len(PROMPTS) * 16, LEVELS + 1)
    texts = assert_valid_items(completions, catalog, sid_tokenizer)
    assert len(set(texts)) > 3  # it samples, it does not collapse onto one forced item
    assert processor.num_dead_ends == 0


@pytest.mark.parametrize("bias", [None, ADVERSARIAL_BIAS], ids=["random", "adversarial"])
def test_constrained_beam_search_returns_distinct_catalog_items(catalog, sid_tokenizer, trie, bias):
    model = make_model(sid_tokenizer, bias=bias)
    num_beams = 8
    config = build_generation_config(LEVELS + 1, num_beams=num_beams, tokenizer=sid_tokenizer)
    processor = TrieLogitsProcessor(trie, sid_tokenizer.eos_token_id, encode(sid_tokenizer).input_ids.size(1))
    completions = generate(model, sid_tokenizer, config, [processor])
    assert completions.shape[0] == len(PROMPTS) * num_beams
    texts = assert_valid_items(completions, catalog, sid_tokenizer)
    for prompt in range(len(PROMPTS)):
        assert len(set(texts[prompt * num_beams : (prompt + 1) * num_beams])) == num_beams


def test_more_beams_than_items_never_returns_a_non_catalog_item(sid_tokenizer):
    # Documented limitation: transformers pads the missing beams with duplicates or empty sequences, never garbage.
    catalog = make_catalog(num_items=6, seed=3)
    trie = catalog.build_trie(catalog.token_ids(sid_tokenizer))
    model = make_model(sid_tokenizer, bias=ADVERSARIAL_BIAS)
    config = build_generation_config(LEVELS + 1, num_beams=8, tokenizer=sid_tokenizer)
    processor = TrieLogitsProcessor(trie, sid_tokenizer.eos_token_id, encode(sid_tokenizer).input_ids.size(1))
    texts = sid_tokenizer.batch_decode(generate(model, sid_tokenizer, config, [processor]), skip_special_tokens=True)
    assert all(catalog.is_valid(text) for text in texts if text)
    assert all(len(set(texts[i : i + 8]) & set(catalog.sids)) == 6 for i in range(0, len(texts), 8))


def sequence_logps(model, tokenizer, prompt, completions):
    """log π(completion | prompt) of each completion, summed over its tokens (EOS included)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = torch.tensor([prompt_ids + c for c in completions])
    with torch.no_grad():
        logps = model(input_ids=ids).logits[:, len(prompt_ids) - 1 : -1].log_softmax(-1)
    return logps.gather(2, ids[:, len(prompt_ids) :, None]).squeeze(2).sum(1)


def test_wide_beam_search_ranks_the_whole_catalog_exactly(sid_tokenizer):
    # With num_beams >= number of items, constrained beam search keeps every prefix, so it must return every item,
    # ranked by the model's true sequence log-probability (allowed scores are not renormalised).
    catalog = make_catalog(num_items=12, seed=3)
    trie = catalog.build_trie(catalog.token_ids(sid_tokenizer))
    model = make_model(sid_tokenizer, seed=1)
    prompt = PROMPTS[0]
    config = build_generation_config(
        LEVELS + 1, num_beams=12, tokenizer=sid_tokenizer, return_dict_in_generate=True, output_scores=True
    )
    inputs = encode(sid_tokenizer, [prompt])
    processor = TrieLogitsProcessor(trie, sid_tokenizer.eos_token_id, inputs.input_ids.size(1))
    with torch.no_grad():
        output = model.generate(**inputs, generation_config=config, logits_processor=[processor])
    completions = output.sequences[:, inputs.input_ids.size(1) :]
    texts = assert_valid_items(completions, catalog, sid_tokenizer)
    assert sorted(texts) == sorted(catalog.sids)
    expected = sequence_logps(model, sid_tokenizer, prompt, completions.tolist())
    torch.testing.assert_close(output.sequences_scores, expected, atol=1e-4, rtol=1e-4)
    assert torch.all(expected[:-1] >= expected[1:] - 1e-5)  # best first


@pytest.mark.parametrize("num_beams", [1, 4])
def test_wrong_prompt_length_dead_ends_force_eos_instead_of_falling_open(catalog, sid_tokenizer, trie, num_beams):
    # Off by one: the last prompt word is read as the first generated token, so every row starts as a dead end.
    model = make_model(sid_tokenizer, bias=ADVERSARIAL_BIAS)
    config = build_generation_config(LEVELS + 1, num_beams=num_beams, num_return_sequences=4, tokenizer=sid_tokenizer)
    processor = TrieLogitsProcessor(trie, sid_tokenizer.eos_token_id, encode(sid_tokenizer).input_ids.size(1) - 1)
    torch.manual_seed(0)
    completions = generate(model, sid_tokenizer, config, [processor])
    assert torch.all(completions[:, 0] == sid_tokenizer.eos_token_id)  # nothing but EOS was generated
    assert processor.num_dead_ends == len(PROMPTS) * (4 if num_beams == 1 else num_beams)


class BanTokens(LogitsProcessor):
    """An earlier processor that bans tokens (like `bad_words_ids`)."""

    def __init__(self, token_ids):
        self.token_ids = token_ids

    def __call__(self, input_ids, scores):
        scores[:, self.token_ids] = -torch.inf
        return scores


def test_banning_every_allowed_token_does_not_open_the_constraint(catalog, sid_tokenizer, trie):
    model = make_model(sid_tokenizer, bias=ADVERSARIAL_BIAS)
    every_first_level = [sid_tokenizer.convert_tokens_to_ids(f"<a_{code}>") for code in range(CODEBOOK[0])]
    config = build_generation_config(LEVELS + 1, num_return_sequences=8, tokenizer=sid_tokenizer)
    processor = TrieLogitsProcessor(trie, sid_tokenizer.eos_token_id, encode(sid_tokenizer).input_ids.size(1))
    torch.manual_seed(0)
    completions = generate(model, sid_tokenizer, config, [BanTokens(every_first_level), processor])
    assert_valid_items(completions, catalog, sid_tokenizer)


def test_generation_config_inherits_nothing_from_the_checkpoint(catalog, sid_tokenizer, trie):
    # A checkpoint whose settings would prune beams (MiniOneRec PR #57) or distort sampling if they leaked in.
    spoiled = make_model(sid_tokenizer)
    for key, value in dict(
        do_sample=True, top_k=1, top_p=0.05, temperature=0.01, repetition_penalty=50.0, no_repeat_ngram_size=1
    ).items():
        setattr(spoiled.generation_config, key, value)
    spoiled.generation_config.bad_words_ids = [[sid_tokenizer.convert_tokens_to_ids("<b_0>")]]
    clean = make_model(sid_tokenizer)
    prompt_length = encode(sid_tokenizer).input_ids.size(1)
    for num_beams in (1, 8):
        config = build_generation_config(LEVELS + 1, num_beams=num_beams, tokenizer=sid_tokenizer)
        outputs = []
        for model in (spoiled, clean):
            with isolated_generation_config(model):
                torch.manual_seed(0)
                processor = TrieLogitsProcessor(trie, sid_tokenizer.eos_token_id, prompt_length)
                outputs.append(generate(model, sid_tokenizer, config, [processor]))
        assert torch.equal(outputs[0], outputs[1])
        texts = assert_valid_items(outputs[0], catalog, sid_tokenizer)
        if num_beams > 1:
            assert all(len(set(texts[i : i + num_beams])) == num_beams for i in range(0, len(texts), num_beams))
    assert spoiled.generation_config.top_k == 1  # restored
    # Without the context manager, every scalar knob is still pinned: only bad_words_ids could leak.
    del spoiled.generation_config.bad_words_ids
    config = build_generation_config(LEVELS + 1, num_beams=8, tokenizer=sid_tokenizer)
    outputs = [
        generate(m, sid_tokenizer, config, [TrieLogitsProcessor(trie, sid_tokenizer.eos_token_id, prompt_length)])
        for m in (spoiled, clean)
    ]
    assert torch.equal(outputs[0], outputs[1])


def test_build_generation_config_fields_and_errors(sid_tokenizer):
    sample = build_generation_config(4, tokenizer=sid_tokenizer)
    assert sample.do_sample and sample.top_k == 0 and sample.top_p == 1.0 and sample.num_return_sequences == 1
    assert sample.eos_token_id == sid_tokenizer.eos_token_id and sample.pad_token_id == sid_tokenizer.pad_token_id
    beam = build_generation_config(4, num_beams=20, tokenizer=sid_tokenizer)
    assert not beam.do_sample and beam.num_return_sequences == 20 and beam.length_penalty == 0.0
    assert beam.repetition_penalty == 1.0 and beam.no_repeat_ngram_size == 0 and beam.max_new_tokens == 4
    with pytest.raises(ValueError, match="cannot exceed num_beams"):
        build_generation_config(4, num_beams=2, num_return_sequences=3, tokenizer=sid_tokenizer)
    with pytest.raises(ValueError, match="eos_token_id"):
        build_generation_config(4)


def test_factory_builds_the_trie_once_and_totals_dead_ends(catalog, sid_tokenizer):
    factory = make_trie_processor_factory(catalog, sid_tokenizer)
    assert not isinstance(factory, LogitsProcessor)  # the trainer tells factories from processors this way
    first, second = factory(3), factory(5)
    assert first.trie is second.trie and second.prompt_length == 5
    assert second.pad_token_id == sid_tokenizer.pad_token_id
    dead = torch.full((2, 6), sid_tokenizer.convert_tokens_to_ids("history"))
    first(dead[:, :4], torch.zeros(2, len(sid_tokenizer)))
    second(dead, torch.zeros(2, len(sid_tokenizer)))
    factory(7)
    assert factory.num_dead_ends == 4
    leaves = factory.trie.walk(catalog.token_ids(sid_tokenizer))
    assert factory.trie.item_index(leaves).tolist() == list(range(len(catalog)))
    assert (leaves >= 0).all() and PrefixTrie.DEAD not in leaves.tolist()


def test_factory_processors_mask_like_a_processor_built_directly(catalog, sid_tokenizer, trie):
    # The factory validates the trie once and copies the checked processor: same masks as a freshly built one.
    factory = make_trie_processor_factory(catalog, sid_tokenizer)
    eos, pad = sid_tokenizer.eos_token_id, sid_tokenizer.pad_token_id
    items = catalog.token_ids(sid_tokenizer)
    generator = torch.Generator().manual_seed(0)
    for length in range(LEVELS + 2):
        suffix = torch.cat([items[:6], torch.full((6, 2), eos)], dim=1)[:, :length]
        input_ids = torch.cat([torch.full((6, 2), pad), suffix], dim=1)
        scores = torch.randn(6, len(sid_tokenizer), generator=generator)
        direct = TrieLogitsProcessor(trie, eos, prompt_length=2, pad_token_id=pad)
        assert torch.equal(factory(2)(input_ids, scores), direct(input_ids, scores))
    with pytest.raises(ValueError, match="prompt_length"):
        factory(-1)


@pytest.mark.parametrize("constrained", [False, True])
def test_shared_prefill_beam_search_returns_the_same_beams(catalog, sid_tokenizer, constrained):
    model = make_model(sid_tokenizer, bias={"<a_1>": 1.0})
    inputs = sid_tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    factory = make_trie_processor_factory(catalog, sid_tokenizer)
    config = build_generation_config(LEVELS + 1, num_beams=6, tokenizer=sid_tokenizer, output_scores=True)
    config.return_dict_in_generate = True
    outputs = []
    for run in (model.generate, lambda **kw: generate_with_shared_prefill(model, **kw)):
        processors = [factory(inputs.input_ids.size(1))] if constrained else []
        with torch.no_grad(), isolated_generation_config(model):
            outputs.append(
                run(
                    input_ids=inputs.input_ids,
                    attention_mask=inputs.attention_mask,
                    generation_config=config,
                    logits_processor=processors,
                )
            )
    plain, shared = outputs
    assert torch.equal(plain.sequences, shared.sequences)
    assert torch.equal(plain.sequences_scores, shared.sequences_scores)


# ---------------------------------------------------------------------------------------------------------------------
# AdaGRPOTrainer rollouts
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rollout", ["sample", "beam"])
def test_trainer_rollouts_are_catalog_items(tmp_path, rollout):
    tokenizer = toy.make_tokenizer()
    # Half of the toy items are in the catalog; the policy is biased towards a first-level code outside it.
    items = [sid for sid in toy.ITEMS if (int(sid[3]) + int(sid[8])) % 2 == 0 and not sid.startswith("<a_3>")]
    catalog = ItemCatalog([f"item-{i}" for i in range(len(items))], items)
    model = toy.make_model(tokenizer)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.convert_tokens_to_ids("<a_3>")] += 5.0 * model.model.norm.weight
        model.lm_head.weight[tokenizer.convert_tokens_to_ids("history")] += 5.0 * model.model.norm.weight
    seen, generations = [], []
    factory = make_trie_processor_factory(catalog, tokenizer)

    def counting_factory(prompt_length):
        generations.append(prompt_length)
        return factory(prompt_length)

    def record(completions, completion_ids, **kwargs):
        # The first reward call after a generate call scores the rollouts; later ones are the gate's scoring pass
        # (ground truths and cross-query negatives).
        if len(generations) > len(seen):
            seen.append(list(zip(completions, map(list, completion_ids), strict=True)))
        return [float(catalog.is_valid(c)) for c in completions]

    args = toy.tiny_config(tmp_path / "out", rollout=rollout, max_steps=2, max_completion_length=3)
    trainer = AdaGRPOTrainer(
        model=model,
        reward_funcs=record,
        args=args,
        train_dataset=toy.make_dataset(),
        processing_class=tokenizer,
        logits_processors=[counting_factory],
    )
    trainer.train()
    assert len(seen) == len(generations) == 2
    for batch in seen:
        assert len(batch) == args.per_device_train_batch_size
        for text, ids in batch:
            assert catalog.is_valid(text), text
            assert len(ids) == 3 and ids[-1] == tokenizer.eos_token_id
        if rollout == "beam":
            for start in range(0, len(batch), 4):
                assert len({text for text, _ in batch[start : start + 4]}) == 4  # K distinct beams per prompt
    if rollout == "sample":
        assert factory.num_dead_ends == 0
