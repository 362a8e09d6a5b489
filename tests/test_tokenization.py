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

import torch
from transformers import Qwen2ForCausalLM

from adagrpo_trl import AdaGRPOTrainer
from adagrpo_trl.sid import sid_vocabulary
from adagrpo_trl.tokenization import (
    add_sid_tokens,
    build_sid_tokenizer,
    sid_lora_config,
    small_qwen2_config,
)

from . import toy


def test_sid_tokenizer_round_trip_and_normal_tokens():
    tokenizer = toy.make_tokenizer()
    item = "<a_3><b_1>"
    ids = tokenizer(item, add_special_tokens=False)["input_ids"]
    assert len(ids) == 2
    # TRL decodes completions with skip_special_tokens=True: SID tokens must survive, EOS must not
    assert tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True) == item
    assert tokenizer.convert_ids_to_tokens(ids) == ["<a_3>", "<b_1>"]
    assert tokenizer("history : <a_3><b_1> next :")["input_ids"][2:4] == ids
    assert tokenizer("bogus")["input_ids"] == [tokenizer.unk_token_id]


def _pretrained_backbone():
    """A 'pretrained' word-level model that knows nothing of SID tokens."""
    tokenizer = build_sid_tokenizer([], words=toy.WORDS + ["the", "a", "movie"])
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(
        small_qwen2_config(tokenizer, hidden_size=16, num_attention_heads=2, num_key_value_heads=1)
    )
    return tokenizer, model


def test_add_sid_tokens_resizes_and_is_idempotent():
    tokenizer, model = _pretrained_backbone()
    old_vocab = len(tokenizer)
    old_rows = model.get_input_embeddings().weight[:old_vocab].detach().clone()
    ids = add_sid_tokens(tokenizer, model, sid_vocabulary(toy.CODEBOOK))
    assert ids == list(range(old_vocab, old_vocab + 8))
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) == old_vocab + 8
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)
    assert torch.equal(model.get_input_embeddings().weight[:old_vocab], old_rows)  # existing rows untouched
    assert add_sid_tokens(tokenizer, model, sid_vocabulary(toy.CODEBOOK)) == ids  # nothing added twice
    assert tokenizer.decode(ids[:1] + ids[4:5], skip_special_tokens=True) == "<a_0><b_0>"


def test_lora_trains_the_new_sid_rows(tmp_path):
    tokenizer, model = _pretrained_backbone()
    sid_ids = add_sid_tokens(tokenizer, model, sid_vocabulary(toy.CODEBOOK))
    before_embed = model.get_input_embeddings().weight[sid_ids].detach().clone()
    before_head = model.get_output_embeddings().weight[sid_ids].detach().clone()
    args = toy.tiny_config(tmp_path, learning_rate=0.05, max_steps=2)
    trainer = AdaGRPOTrainer(
        model=model,
        reward_funcs=toy.target_reward,
        args=args,
        train_dataset=toy.make_dataset(),
        processing_class=tokenizer,
        peft_config=sid_lora_config(r=4, lora_alpha=8),
    )
    trainer.train()
    peft_model = trainer.model
    trained = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    assert any("lora_" in name for name in trained)
    embed = next(p for name, p in trained.items() if "embed_tokens.modules_to_save" in name)
    head = next(p for name, p in trained.items() if "lm_head.modules_to_save" in name)
    assert not torch.allclose(embed[sid_ids], before_embed)
    assert not torch.allclose(head[sid_ids], before_head)
    # the frozen originals (used as the reference with adapters disabled) stay as they were
    original_head = next(p for name, p in peft_model.named_parameters() if "lm_head.original_module" in name)
    assert torch.equal(original_head[sid_ids], before_head)


def test_lora_sft_saves_a_merged_plain_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    from adagrpo_trl.sft import train_sft

    tokenizer, model = _pretrained_backbone()
    sid_ids = add_sid_tokens(tokenizer, model, sid_vocabulary(toy.CODEBOOK))
    before = model.get_output_embeddings().weight[sid_ids].detach().clone()
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=3,
        per_device_train_batch_size=8,
        learning_rate=0.05,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to="none",
        save_strategy="no",
    )
    train_sft(model, tokenizer, toy.make_dataset(), args, peft_config=sid_lora_config(r=4, lora_alpha=8))
    assert not (tmp_path / "sft" / "adapter_config.json").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    assert reloaded.get_output_embeddings().weight.shape[0] == len(tokenizer)
    assert not torch.allclose(reloaded.get_output_embeddings().weight[sid_ids], before)
