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
Tokenizers and model configs for policies that write semantic IDs (SIDs), built offline.

A SID token is `<{level}_{code}>` with levels `a, b, c, d, ...`; an item is one token per level, e.g.
`<a_12><b_7><c_201><d_0>` (the grammar is in [`adagrpo_trl.sid`]). SID tokens are *normal* added tokens (not special tokens), so TRL keeps them in the decoded
completion text.
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path

from peft import LoraConfig
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast, Qwen2Config

from .sid import sid_token, sid_vocabulary  # re-exported: they lived here before adagrpo_trl.sid existed


PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)


def build_sid_tokenizer(sid_tokens: Sequence[str], words: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """
    Builds a word-level tokenizer from scratch: special tokens, `words` (split on whitespace) and the SID tokens as
    normal added tokens. Nothing is downloaded. Decoding concatenates tokens, so generated SIDs decode to the same
    string as the dataset's completions.

    Args:
        sid_tokens (`Sequence[str]`):
            The SID tokens, e.g. from [`sid_vocabulary`].
        words (`Sequence[str]`, *optional*):
            Plain words that prompts may contain (other words become `<unk>`).

    Returns:
        [`~transformers.PreTrainedTokenizerFast`] with `pad`, `eos` and `unk` tokens and left padding.
    """
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        if word not in vocab:
            vocab[word] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Decode by concatenation, so a generated item reads exactly like the dataset's SID string ("<a_3><b_1>", not
    # "<a_3> <b_1>"). Only completions are decoded in training; prompt words lose their spaces when decoded.
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
    )
    tokenizer.add_tokens(list(sid_tokens))  # normal tokens: kept by batch_decode(skip_special_tokens=True)
    return tokenizer


def small_qwen2_config(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
) -> Qwen2Config:
    """
    A small Qwen2-style decoder config sized to `tokenizer` (untied embeddings, so new SID rows of the input and output
    embeddings train independently).
    """
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def add_sid_tokens(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, sid_tokens: Sequence[str], mean_resizing: bool = True
) -> list[int]:
    """
    Adds SID tokens to a pretrained tokenizer as normal (non-special) tokens and resizes the model's embeddings.

    New rows are initialised from the mean and covariance of the existing ones (`mean_resizing=True`), so the new
    tokens start with typical logits instead of arbitrary ones. Under PEFT, train them with [`sid_lora_config`]
    (`modules_to_save=["embed_tokens", "lm_head"]`): plain LoRA leaves new rows frozen at their initial values.

    Args:
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            The pretrained tokenizer, modified in place.
        model ([`~transformers.PreTrainedModel`]):
            The pretrained model, resized in place.
        sid_tokens (`Sequence[str]`):
            The SID tokens, e.g. from [`sid_vocabulary`].
        mean_resizing (`bool`, *optional*, defaults to `True`):
            Passed to [`~transformers.PreTrainedModel.resize_token_embeddings`].

    Returns:
        `list[int]`: the id of each SID token, in order.
    """
    vocabulary = tokenizer.get_vocab()
    tokenizer.add_tokens([token for token in sid_tokens if token not in vocabulary])
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=mean_resizing)
    ids = []
    for token in sid_tokens:
        encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"SID token {token!r} does not encode to a single token id (got {encoded}).")
        ids.append(encoded[0])
    return ids


def sid_lora_config(
    r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.05, target_modules: str | list[str] = "all-linear"
) -> LoraConfig:
    """
    A LoRA config for a pretrained backbone with added SID tokens: LoRA on the linear layers (not on `lm_head`, which
    TRL's fused head reads directly) and full copies of `embed_tokens` and `lm_head` trained, so the SID rows learn.
    (`trainable_token_indices` on `lm_head` crashes TRL 1.16's fused head; `modules_to_save` works.)
    """
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        modules_to_save=["embed_tokens", "lm_head"],
    )


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """
    Loads the tokenizer saved with a checkpoint. A tokenizer built by [`build_sid_tokenizer`] is reloaded as the
    generic fast tokenizer it is: `AutoTokenizer` would otherwise pick the class of the model type saved beside it
    (e.g. `Qwen2Tokenizer` next to a Qwen2 config), whose byte-level pre-tokenizer drops the prompt's words. Any other
    tokenizer (a pretrained one with SID tokens added) goes through `AutoTokenizer`.
    """
    config_file = Path(path) / "tokenizer_config.json"
    tokenizer_class = json.loads(config_file.read_text()).get("tokenizer_class") if config_file.exists() else None
    if tokenizer_class in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


__all__ = [
    "EOS_TOKEN",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "UNK_TOKEN",
    "add_sid_tokens",
    "build_sid_tokenizer",
    "load_tokenizer",
    "sid_lora_config",
    "sid_token",
    "sid_vocabulary",
    "small_qwen2_config",
]
