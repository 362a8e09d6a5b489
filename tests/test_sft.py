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
"""SFT: checkpoint selection and early stopping on validation HR@10, the trie unlikelihood term, the size rule."""

import json

import pytest
import torch
from transformers import Qwen2ForCausalLM, TrainerCallback
from trl import SFTConfig, SFTTrainer

from adagrpo_trl.data import simulate_exposure_biased_logs
from adagrpo_trl.data.prepare import prepare_data
from adagrpo_trl.evaluation import evaluate_recommendations
from adagrpo_trl.scripts.configs import SFTScriptArguments
from adagrpo_trl.sft import (
    SELECTION_FILE,
    SIDSFTTrainer,
    suggest_policy_size,
    train_sft,
    trie_allowed_mask,
    trie_unlikelihood,
)
from adagrpo_trl.tokenization import small_qwen2_config


@pytest.fixture(scope="module")
def prepared():
    simulated = simulate_exposure_biased_logs(num_users=120, num_items=40, seq_len=(6, 10), seed=0)
    return prepare_data(simulated.log, simulated.items, num_levels=2, max_history=5)


def _model(prepared, seed=0):
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(small_qwen2_config(prepared.tokenizer, hidden_size=32))


def _args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "sft"),
        per_device_train_batch_size=32,  # a few steps per epoch on the tiny log
        learning_rate=3e-3,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=5,
        seed=0,
    )
    return SFTConfig(**{**defaults, **kwargs})


# -- the trie unlikelihood term ------------------------------------------------------------------------------------


def test_trie_unlikelihood_is_zero_without_outside_mass_and_positive_otherwise():
    allowed = torch.tensor([[True, True, False, False], [False, False, True, False]])
    inside = torch.tensor([[1.0, 2.0, -torch.inf, -torch.inf], [-torch.inf, -torch.inf, 0.5, -torch.inf]])
    assert torch.equal(trie_unlikelihood(inside, allowed), torch.zeros(2))
    logits = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.3, 0.1, 0.5, 2.0]])
    terms = trie_unlikelihood(logits, allowed)
    outside = torch.softmax(logits, -1).masked_fill(allowed, 0).sum(-1)
    torch.testing.assert_close(terms, -torch.log1p(-outside))
    assert (terms > 0).all()


def test_trie_unlikelihood_gradient_moves_mass_into_the_trie():
    allowed = torch.tensor([[True, False, True, False, False]])
    logits = torch.tensor([[0.5, 1.0, -0.2, 2.0, 0.0]], requires_grad=True)
    trie_unlikelihood(logits, allowed).sum().backward()
    assert (logits.grad[~allowed] > 0).all() and (logits.grad[allowed] < 0).all()  # descent: outside down, inside up
    with torch.no_grad():
        stepped = logits - 0.5 * logits.grad
    outside = lambda x: torch.softmax(x, -1)[~allowed].sum()  # noqa: E731
    assert outside(stepped) < outside(logits.detach())


def test_trie_allowed_mask_walks_each_completion_from_the_root(prepared):
    tokenizer, catalog = prepared.tokenizer, prepared.catalog
    token_ids = catalog.token_ids(tokenizer)
    trie = catalog.build_trie(token_ids, tokenizer.eos_token_id)
    eos, item = tokenizer.eos_token_id, token_ids[0].tolist()
    labels = torch.tensor([[-100, -100, *item, eos, -100], [-100, *item, eos, -100, -100]])
    positions, allowed = trie_allowed_mask(trie, labels, len(tokenizer))
    assert torch.equal(positions, labels != -100)
    sids = {tuple(row) for row in token_ids.tolist()}
    expected = []
    for prefix_length in range(len(item) + 1):
        prefix = tuple(item[:prefix_length])
        if prefix_length == len(item):
            expected.append({eos})
        else:
            expected.append({sid[prefix_length] for sid in sids if sid[:prefix_length] == prefix})
    got = [set(row.nonzero().squeeze(1).tolist()) for row in allowed]
    assert got == expected * 2


# -- the trainer's loss --------------------------------------------------------------------------------------------


def _batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def _brute_force_unlikelihood(model, inputs, catalog, tokenizer):
    """Mean over completion positions of -log P(tokens that keep the ground-truth prefix a catalog prefix)."""
    sids = [tuple(row) for row in catalog.token_ids(tokenizer).tolist()]
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    total, count = 0.0, 0
    for row_logits, row_labels in zip(logits[:, :-1], inputs["labels"][:, 1:], strict=True):
        completion = [(t, int(label)) for t, label in enumerate(row_labels) if label != -100]
        for depth, (t, _) in enumerate(completion):
            prefix = tuple(label for _, label in completion[:depth])
            if depth == len(sids[0]):
                allowed = {tokenizer.eos_token_id}
            else:
                allowed = {sid[depth] for sid in sids if sid[:depth] == prefix}
            probs = torch.softmax(row_logits[t].double(), -1)
            total += -torch.log(probs[sorted(allowed)].sum()).item()
            count += 1
    return total / count


def test_coef_zero_is_exactly_the_plain_sft_loss_and_coef_adds_the_term(prepared, tmp_path):
    train = prepared.datasets["train"].select_columns(["prompt", "completion"])
    kwargs = dict(train_dataset=train, processing_class=prepared.tokenizer)
    plain = SFTTrainer(model=_model(prepared), args=_args(tmp_path, completion_only_loss=True), **kwargs)
    zero = SIDSFTTrainer(
        model=_model(prepared), args=_args(tmp_path, completion_only_loss=True), catalog=prepared.catalog, **kwargs
    )
    coef = SIDSFTTrainer(
        model=_model(prepared),
        args=_args(tmp_path, completion_only_loss=True),
        catalog=prepared.catalog,
        sid_unlikelihood_coef=0.5,
        **kwargs,
    )
    inputs = _batch(plain)
    plain_loss = plain.compute_loss(plain.model, dict(inputs))
    assert torch.equal(zero.compute_loss(zero.model, dict(inputs)), plain_loss)
    coef_loss = coef.compute_loss(coef.model, dict(inputs))
    expected = _brute_force_unlikelihood(coef.model, inputs, prepared.catalog, prepared.tokenizer)
    assert expected > 0
    assert (coef_loss - plain_loss).item() == pytest.approx(0.5 * expected, rel=1e-4)
    assert coef._metrics["train"]["sid/unlikelihood"][-1] == pytest.approx(expected, rel=1e-4)


def test_unlikelihood_training_lowers_the_invalid_mass(prepared, tmp_path):
    train = prepared.datasets["train"]
    runs = {}
    for coef in (0.0, 2.0):
        trainer = train_sft(
            _model(prepared),
            prepared.tokenizer,
            train,
            _args(tmp_path / str(coef), max_steps=6, learning_rate=3e-3),
            catalog=prepared.catalog,
            sid_unlikelihood_coef=coef,
        )
        runs[coef] = trainer
    # The term's logged invalid mass falls while training with it.
    masses = runs[2.0]._metrics["train"]["sid/invalid_mass"] or [
        log["sid/invalid_mass"] for log in runs[2.0].state.log_history if "sid/invalid_mass" in log
    ]
    assert masses[-1] < masses[0]


# -- checkpoint selection and early stopping -----------------------------------------------------------------------


class DestroyAfterFirstEpoch(TrainerCallback):
    """From the second epoch on, zero the LM head after every optimizer step: every later evaluation is worse."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.epoch > 1 + 1e-9:
            with torch.no_grad():
                model.lm_head.weight.zero_()


def test_early_stopping_selects_the_best_validation_checkpoint(prepared, tmp_path):
    validation = prepared.datasets["validation"]
    args = _args(tmp_path, num_train_epochs=4)
    trainer = train_sft(
        _model(prepared),
        prepared.tokenizer,
        prepared.datasets["train"],
        args,
        callbacks=[DestroyAfterFirstEpoch()],
        catalog=prepared.catalog,
        recommendation_eval_dataset=validation,
        recommendation_eval_strategy="epoch",
        recommendation_eval_samples=60,
        early_stopping_patience=1,
    )
    steps_per_epoch = trainer.state.max_steps // 4
    with open(tmp_path / "sft" / SELECTION_FILE) as file:
        summary = json.load(file)
    history = summary["history"]
    assert [entry["step"] for entry in history] == [steps_per_epoch, 2 * steps_per_epoch]  # stopped after epoch 2
    assert summary["stopped_early"] and trainer.state.global_step == 2 * steps_per_epoch
    assert history[0]["eval_hr@10"] > history[1]["eval_hr@10"]
    assert summary["selected_step"] == steps_per_epoch
    assert summary["loaded_checkpoint"].endswith(f"checkpoint-{steps_per_epoch}")
    # the saved policy is the selected one, not the destroyed last weights
    saved = Qwen2ForCausalLM.from_pretrained(tmp_path / "sft")
    assert saved.lm_head.weight.abs().sum() > 0
    metrics = evaluate_recommendations(
        saved,
        prepared.tokenizer,
        validation.select(range(60)),
        prepared.catalog,
        ks=(10,),
        num_beams=20,
        constrained=False,
        batch_size=32,
        show_progress=False,
    )
    assert metrics["hr@10"] == history[0]["eval_hr@10"]
    assert metrics["hallucination"] == history[0]["eval_hallucination"]


def test_without_keep_best_the_last_weights_are_saved(prepared, tmp_path):
    train_sft(
        _model(prepared),
        prepared.tokenizer,
        prepared.datasets["train"],
        _args(tmp_path, num_train_epochs=2),
        callbacks=[DestroyAfterFirstEpoch()],
        catalog=prepared.catalog,
        recommendation_eval_dataset=prepared.datasets["validation"],
        recommendation_eval_strategy="epoch",
        recommendation_eval_samples=20,
        keep_best_checkpoint=False,
    )
    with open(tmp_path / "sft" / SELECTION_FILE) as file:
        summary = json.load(file)
    assert summary["loaded_checkpoint"] is None and summary["selected_step"] == summary["final_step"]
    assert Qwen2ForCausalLM.from_pretrained(tmp_path / "sft").lm_head.weight.abs().sum() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"recommendation_eval_strategy": "sometimes"}, "'sometimes'"),
        ({"recommendation_eval_strategy": "steps"}, "needs recommendation_eval_steps"),
        ({"recommendation_eval_strategy": "steps", "recommendation_eval_steps": 0}, "recommendation_eval_steps=0"),
        ({"recommendation_eval_strategy": "epoch", "early_stopping_patience": 0}, "early_stopping_patience=0"),
        ({"early_stopping_patience": 2}, "early_stopping_patience=2 needs validation"),
        (
            {"recommendation_eval_strategy": "epoch", "recommendation_eval_samples": -3},
            "recommendation_eval_samples=-3",
        ),
        ({"sid_unlikelihood_coef": -1.0}, "sid_unlikelihood_coef=-1.0"),
        ({"sid_unlikelihood_coef": float("nan")}, "sid_unlikelihood_coef=nan"),
    ],
)
def test_bad_selection_options_name_the_value(prepared, tmp_path, options, message):
    options = {"catalog": prepared.catalog, "recommendation_eval_dataset": prepared.datasets["validation"], **options}
    with pytest.raises(ValueError, match=message):
        train_sft(_model(prepared), prepared.tokenizer, prepared.datasets["train"], _args(tmp_path), **options)


def test_selection_and_unlikelihood_need_the_catalog(prepared, tmp_path):
    with pytest.raises(ValueError, match="needs the catalog"):
        train_sft(
            _model(prepared),
            prepared.tokenizer,
            prepared.datasets["train"],
            _args(tmp_path),
            recommendation_eval_strategy="epoch",
        )
    with pytest.raises(ValueError, match="needs the item catalog"):
        train_sft(
            _model(prepared),
            prepared.tokenizer,
            prepared.datasets["train"],
            _args(tmp_path),
            sid_unlikelihood_coef=1.0,
        )


def test_script_arguments_reject_bad_values():
    with pytest.raises(ValueError, match="'every'"):
        SFTScriptArguments(data_dir="x", recommendation_eval_strategy="every")
    with pytest.raises(ValueError, match="-0.5"):
        SFTScriptArguments(data_dir="x", sid_unlikelihood_coef=-0.5)


# -- the size rule -------------------------------------------------------------------------------------------------


def test_suggest_policy_size_matches_the_recipes():
    ml_100k = suggest_policy_size(1682, 97_171)
    assert ml_100k == {
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_train_epochs": 2,
    }
    ml_1m = suggest_policy_size(3706, 988_129)
    assert (ml_1m["hidden_size"], ml_1m["num_hidden_layers"], ml_1m["num_train_epochs"]) == (256, 4, 2)
    sparse = suggest_policy_size(3700, 16_000)
    assert sparse["hidden_size"] == 64 and sparse["num_train_epochs"] == 10
    assert suggest_policy_size(50_000, 50_000)["hidden_size"] == 256  # a large catalog
    assert suggest_policy_size(10_000, 5_000_000)["num_train_epochs"] == 1
    with pytest.raises(ValueError, match="num_items=0"):
        suggest_policy_size(0, 10)
    with pytest.raises(ValueError, match="num_train_windows=2.5"):
        suggest_policy_size(10, 2.5)
