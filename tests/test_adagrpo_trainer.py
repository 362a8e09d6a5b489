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
"""AdaGRPOTrainer: exactness against pure NLL and plain GRPO, gradient accumulation, rollouts, metrics."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers import LogitsProcessor
from trl import GRPOConfig, GRPOTrainer

from adagrpo_trl import AdaGRPOConfig, AdaGRPOTrainer
from adagrpo_trl.gating import aggregate_rewards

from . import toy


LOSS_TYPES = ["grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo"]
GA_EXACT_LOSS_TYPES = [loss for loss in LOSS_TYPES if loss != "bnpo"]  # bnpo normalises per micro-batch


class ForcedGateTrainer(AdaGRPOTrainer):
    """Runs the real gate (diagnostics, metrics), then replaces its decision by a fixed per-prompt pattern."""

    pattern = None  # callable: number of prompts -> BoolTensor

    def _compute_gate(self, output, stash, ground_truth_ids, num_generations, mode):
        super()._compute_gate(output, stash, ground_truth_ids, num_generations, mode)
        local_rows = len(ground_truth_ids)
        num_prompts = local_rows * self.accelerator.num_processes // num_generations
        gate = self.pattern(num_prompts).repeat_interleave(num_generations)
        start = self.accelerator.process_index * local_rows
        return gate[start : start + local_rows].to(self.accelerator.device)


def alternate(num_prompts):
    return torch.arange(num_prompts) % 2 == 0


def nothing(num_prompts):
    return torch.zeros(num_prompts, dtype=torch.bool)


def saved_model_dir(tmp_path, tokenizer, seed=0):
    """beta > 0 reloads the reference model from a path, so the policy is given as a saved directory."""
    path = tmp_path / "policy"
    toy.make_model(tokenizer, seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def run_one_step(trainer):
    """One optimizer step's worth of micro-batches by hand: returns the micro-batches and the accumulated gradients."""
    trainer.model.train()
    trainer.model.zero_grad()
    ga = trainer.args.gradient_accumulation_steps
    trainer.current_gradient_accumulation_steps = ga
    batch = next(iter(trainer.get_train_dataloader()))
    micro_batches = []
    for _ in range(ga):
        inputs = trainer._prepare_inputs(batch)
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        trainer._step += 1
        micro_batches.append(inputs)
    grads = {name: p.grad.detach().clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
    return micro_batches, grads


def reference_nll(model, inputs):
    """Mean over rows of the mean token NLL of the ground truth, with a plain full-logits forward."""
    prompt_length = inputs["prompt_ids"].size(1)
    input_ids = torch.cat([inputs["prompt_ids"], inputs["ground_truth_ids"]], dim=1)
    attention_mask = torch.cat([inputs["prompt_mask"], inputs["ground_truth_mask"]], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, prompt_length - 1 : -1]
    token_nll = F.cross_entropy(logits.transpose(1, 2), inputs["ground_truth_ids"], reduction="none")
    mask = inputs["ground_truth_mask"]
    return ((token_nll * mask).sum(1) / mask.sum(1)).mean()


def reference_grads(model, micro_batches, loss_fn):
    model.zero_grad()
    for inputs in micro_batches:
        loss_fn(inputs).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(actual, expected, atol=1e-6):
    assert actual.keys() == expected.keys()
    for name in actual:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=atol, msg=name)


def make_trainer(tmp_path, tokenizer, dataset, trainer_cls=AdaGRPOTrainer, model=None, reward=toy.target_reward, **kw):
    trainer_kwargs = {k: kw.pop(k) for k in ("logits_processors",) if k in kw}
    args = toy.tiny_config(tmp_path / "out", **kw)
    model = model if model is not None else toy.make_model(tokenizer)
    return trainer_cls(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        **trainer_kwargs,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Exactness
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_zero_gate_gives_exactly_the_pure_nll_gradient(tmp_path, tokenizer, dataset, loss_type):
    # KL (beta>0) and the entropy bonus on: the gate must remove them too, not only the advantage term.
    ForcedGateTrainer.pattern = staticmethod(nothing)
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        dataset,
        trainer_cls=ForcedGateTrainer,
        model=saved_model_dir(tmp_path, tokenizer),
        loss_type=loss_type,
        beta=0.04,
        entropy_coef=0.01,
        gradient_accumulation_steps=2,
        nll_coef=0.7,
    )
    micro_batches, grads = run_one_step(trainer)
    assert all(inputs["tool_mask"].sum() == 0 for inputs in micro_batches)
    expected = reference_grads(
        trainer.model, micro_batches, lambda inputs: 0.7 * reference_nll(trainer.model, inputs) / 2
    )
    assert_same_grads(grads, expected)


@pytest.mark.parametrize("loss_type", GA_EXACT_LOSS_TYPES)
def test_mixed_gate_equals_nll_plus_grpo_on_admitted_rows(tmp_path, tokenizer, dataset, loss_type):
    ForcedGateTrainer.pattern = staticmethod(alternate)
    trainer = make_trainer(
        tmp_path, tokenizer, dataset, trainer_cls=ForcedGateTrainer, loss_type=loss_type, gradient_accumulation_steps=2
    )
    micro_batches, grads = run_one_step(trainer)
    gates = torch.cat([inputs["tool_mask"].amax(dim=1) for inputs in micro_batches])
    assert 0 < gates.sum() < gates.numel()

    def nll_plus_masked_advantage_grpo(inputs):
        # Plain TRL loss with the advantages of gated-out rows zeroed and no gate mask.
        plain = {k: v for k, v in inputs.items() if k != "tool_mask"}
        plain["advantages"] = inputs["advantages"] * inputs["tool_mask"].amax(dim=1)
        grpo = GRPOTrainer._compute_loss(trainer, trainer.model, plain)
        return grpo + reference_nll(trainer.model, inputs) / 2

    expected = reference_grads(trainer.model, micro_batches, nll_plus_masked_advantage_grpo)
    assert_same_grads(grads, expected)


def test_always_without_nll_reproduces_grpo_trainer_step_for_step(tmp_path, tokenizer, dataset):
    steps = 3
    ada = make_trainer(tmp_path / "ada", tokenizer, dataset, gate_mode="always", nll_coef=0.0, max_steps=steps)
    ada.train()
    ada_fields = {f.name for f in dataclasses.fields(AdaGRPOConfig)} - {f.name for f in dataclasses.fields(GRPOConfig)}
    grpo_kwargs = {
        f.name: getattr(ada.args, f.name)
        for f in dataclasses.fields(GRPOConfig)
        if f.init and f.name not in ada_fields and f.name not in ("generation_batch_size", "steps_per_generation")
    }
    grpo_kwargs.update(output_dir=str(tmp_path / "grpo"), steps_per_generation=ada.args.steps_per_generation)
    grpo = GRPOTrainer(
        model=toy.make_model(tokenizer),
        reward_funcs=toy.target_reward,
        args=GRPOConfig(**grpo_kwargs),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    grpo.train()
    for ada_log, grpo_log in zip(ada.state.log_history[:steps], grpo.state.log_history[:steps], strict=True):
        for key in ("loss", "grad_norm", "reward", "reward_std", "entropy"):
            assert ada_log[key] == grpo_log[key], key
    for (name, a), (_, b) in zip(ada.model.named_parameters(), grpo.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_gate_diagnostics_do_not_change_the_rollouts(tmp_path, tokenizer, dataset):
    # With a frozen policy, AdaGRPO (extra forwards, negative sampling) must draw the same rollouts as GRPOTrainer.
    def recorder(log):
        def reward(completions, **kwargs):
            log.append(list(completions))
            return [float(len(c)) for c in completions]

        return reward

    ada_log, grpo_log = [], []
    ada = make_trainer(tmp_path / "a", tokenizer, dataset, reward=recorder(ada_log), learning_rate=0.0, max_steps=3)
    ada.train()
    args = GRPOConfig(
        output_dir=str(tmp_path / "g"),
        **{
            k: getattr(ada.args, k)
            for k in ("per_device_train_batch_size", "num_generations", "max_completion_length")
        },
        max_steps=3,
        learning_rate=0.0,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        seed=0,
    )
    GRPOTrainer(
        model=toy.make_model(tokenizer),
        reward_funcs=recorder(grpo_log),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    ).train()
    rollouts = [batch for batch in ada_log if len(batch) == 8]  # the gate's own scoring calls have 4 x (1+M) rows
    assert rollouts == grpo_log


@pytest.mark.parametrize("loss_type", GA_EXACT_LOSS_TYPES)
@pytest.mark.parametrize("normalization", ["diluted", "admitted"])
def test_gradient_accumulation_invariance(tmp_path, tokenizer, dataset, loss_type, normalization):
    ForcedGateTrainer.pattern = staticmethod(alternate)
    common = dict(trainer_cls=ForcedGateTrainer, loss_type=loss_type, gate_normalization=normalization)
    # Each trainer re-seeds the global RNG when built: build and run one after the other so both draw the same rollouts.
    accumulated = make_trainer(
        tmp_path / "ga2", tokenizer, dataset, per_device_train_batch_size=8, gradient_accumulation_steps=2, **common
    )
    micro_batches, grads_accumulated = run_one_step(accumulated)
    single = make_trainer(
        tmp_path / "ga1", tokenizer, dataset, per_device_train_batch_size=16, gradient_accumulation_steps=1, **common
    )
    (inputs,), grads_single = run_one_step(single)
    completions = torch.cat([m["completion_ids"] for m in micro_batches])
    assert sorted(completions.tolist()) == sorted(inputs["completion_ids"].tolist())  # same rollouts, shuffled
    assert_same_grads(grads_accumulated, grads_single)


def _loss_per_normalization(tmp_path, tokenizer, dataset, **overrides):
    """One step of a 16-row trainer per `gate_normalization`; the loss on that step's batch, and the batch, of each."""
    losses, batches = {}, {}
    for normalization in ("diluted", "admitted"):
        trainer = make_trainer(
            tmp_path / normalization,
            tokenizer,
            dataset,
            gate_normalization=normalization,
            per_device_train_batch_size=16,
            **overrides,
        )
        (batches[normalization],), _ = run_one_step(trainer)
        with torch.no_grad():
            losses[normalization] = trainer.compute_loss(trainer.model, batches[normalization])
    return losses, batches


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_admitted_normalisation_rescales_the_gated_term(tmp_path, tokenizer, dataset, loss_type):
    ForcedGateTrainer.pattern = staticmethod(alternate)
    losses, batches = _loss_per_normalization(
        tmp_path, tokenizer, dataset, trainer_cls=ForcedGateTrainer, loss_type=loss_type, nll_coef=0.0
    )
    inputs = batches["admitted"]
    mask = inputs["completion_mask"]
    if loss_type == "grpo":  # rows: 16 rows, half admitted
        expected_scale = 2.0
    else:  # tokens: all tokens over admitted tokens
        expected_scale = mask.sum() / (mask * inputs["tool_mask"]).sum()
    assert inputs["gate_loss_scale"] == pytest.approx(float(expected_scale))
    assert losses["diluted"].abs() > 0
    torch.testing.assert_close(losses["admitted"], losses["diluted"] * float(expected_scale))


def test_admitted_normalisation_is_the_identity_when_every_prompt_is_admitted(tmp_path, tokenizer, dataset):
    # What lets the quality benchmark reuse its always-gated methods across `--gate_normalization` values.
    losses, batches = _loss_per_normalization(tmp_path, tokenizer, dataset, gate_mode="always")
    for inputs in batches.values():
        assert "gate_loss_scale" not in inputs  # gate_mode="always" leaves the GRPO term untouched
    assert torch.equal(losses["admitted"], losses["diluted"])


def test_nll_is_untempered(tmp_path, tokenizer, dataset):
    trainer = make_trainer(tmp_path, tokenizer, dataset, gate_mode="never", temperature=0.5)
    (inputs,), _ = run_one_step(trainer)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, inputs)
        expected = reference_nll(trainer.model, inputs)
        tempered = _tempered_nll(trainer.model, inputs, 0.5)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert (tempered - expected).abs() > 1e-2  # the check can tell the two apart


def _tempered_nll(model, inputs, temperature):
    prompt_length = inputs["prompt_ids"].size(1)
    input_ids = torch.cat([inputs["prompt_ids"], inputs["ground_truth_ids"]], dim=1)
    attention_mask = torch.cat([inputs["prompt_mask"], inputs["ground_truth_mask"]], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, prompt_length - 1 : -1]
    token_nll = F.cross_entropy((logits / temperature).transpose(1, 2), inputs["ground_truth_ids"], reduction="none")
    mask = inputs["ground_truth_mask"]
    return ((token_nll * mask).sum(1) / mask.sum(1)).mean()


# ---------------------------------------------------------------------------------------------------------------------
# Ground truth, gate scoring, rollouts
# ---------------------------------------------------------------------------------------------------------------------


def test_ground_truth_ids_match_each_rows_target(tmp_path, tokenizer, dataset):
    trainer = make_trainer(tmp_path, tokenizer, dataset, per_device_train_batch_size=16)
    (inputs,), _ = run_one_step(trainer)
    target_by_prompt = {tuple(tokenizer(row["prompt"])["input_ids"]): row["completion"] for row in dataset}
    rows = zip(
        inputs["prompt_ids"],
        inputs["prompt_mask"],
        inputs["ground_truth_ids"],
        inputs["ground_truth_mask"],
        strict=True,
    )
    for prompt_ids, prompt_mask, ids, mask in rows:
        target = target_by_prompt[tuple(prompt_ids[prompt_mask.bool()].tolist())]
        expected = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert ids[mask.bool()].tolist() == expected


def test_gate_scores_ground_truth_and_negatives_in_the_prompts_context(tmp_path, tokenizer, dataset):
    calls = []

    def reward(completions, target_item, user_id, **kwargs):
        calls.append((list(completions), list(target_item), list(user_id)))
        return toy.target_reward(completions, target_item)

    trainer = make_trainer(tmp_path, tokenizer, dataset, reward=reward, per_device_train_batch_size=16)
    run_one_step(trainer)
    (rollouts, _, _), (completions, targets, users) = calls
    assert len(rollouts) == 16
    per_group = 1 + trainer.args.num_cross_negatives
    assert len(completions) == 4 * per_group
    rollout_texts = set(rollouts)
    for start in range(0, len(completions), per_group):
        group_users = set(users[start : start + per_group])
        assert len(group_users) == 1  # one prompt's context for its ground truth and its negatives
        assert completions[start] == targets[start]  # the ground truth first
        for negative in completions[start + 1 : start + per_group]:
            assert negative != targets[start]
            assert negative in rollout_texts  # negatives are rollouts


def test_beam_rollouts_are_distinct_and_best_first(tmp_path, tokenizer, dataset):
    seen = []

    def reward(prompts, completions, completion_ids, **kwargs):
        seen.append((list(prompts), [list(ids) for ids in completion_ids]))
        return [0.0] * len(completions)

    trainer = make_trainer(
        tmp_path, tokenizer, dataset, reward=reward, rollout="beam", learning_rate=0.0, per_device_train_batch_size=16
    )
    run_one_step(trainer)
    prompts, completion_ids = seen[0]
    model = trainer.model.eval()
    for group in range(4):
        rows = range(group * 4, group * 4 + 4)
        sequences = [tuple(completion_ids[r]) for r in rows]
        assert len(set(sequences)) == 4
        prompt_ids = tokenizer(prompts[group * 4])["input_ids"]
        logps = [_sequence_logp(model, prompt_ids, list(s)) for s in sequences]
        assert all(a >= b - 1e-5 for a, b in zip(logps[:-1], logps[1:], strict=True)), logps


def _sequence_logp(model, prompt_ids, completion_ids):
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logps = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].log_softmax(-1)
    return logps.gather(1, torch.tensor(completion_ids).unsqueeze(1)).sum().item()


class BanFirstToken(LogitsProcessor):
    """Forbids `token_id` at the first generated position."""

    def __init__(self, token_id, prompt_length, calls):
        self.token_id, self.prompt_length = token_id, prompt_length
        calls.append(prompt_length)

    def __call__(self, input_ids, scores):
        if input_ids.size(1) == self.prompt_length:
            scores[:, self.token_id] = -torch.inf
        return scores


@pytest.mark.parametrize("rollout", ["sample", "beam"])
def test_logits_processor_factories_reach_both_rollout_modes(tmp_path, tokenizer, dataset, rollout):
    banned = tokenizer.convert_tokens_to_ids("<a_1>")
    first_tokens, factory_calls = [], []

    def reward(completion_ids, **kwargs):
        first_tokens.extend(ids[0] for ids in completion_ids if ids)
        return [0.0] * len(completion_ids)

    # Bias the untrained policy towards the banned token so that the ban has work to do.
    model = toy.make_model(tokenizer)
    with torch.no_grad():
        model.lm_head.weight[banned] += 5.0 * model.model.norm.weight
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        dataset,
        model=model,
        reward=reward,
        rollout=rollout,
        logits_processors=[lambda n: BanFirstToken(banned, n, factory_calls)],
    )
    trainer.train()
    assert first_tokens and banned not in first_tokens
    assert factory_calls and all(n == len(tokenizer(dataset[0]["prompt"])["input_ids"]) for n in factory_calls)


class LogProbCheckingTrainer(AdaGRPOTrainer):
    """Records the gate's log-probs next to those of a plain forward pass over every row."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rollout_checks, self.ground_truth_checks = [], []

    def _rollout_logps_for_gate(self, output, completion_ids):
        captured = self._captured_rollouts is not None
        logps = super()._rollout_logps_for_gate(output, completion_ids)
        self.rollout_checks.append((captured, logps, self._sequence_logps(output, completion_ids, rows=None)))
        return logps

    def _ground_truth_logps_for_gate(self, output, ground_truth_ids, num_generations):
        per_prompt = super()._ground_truth_logps_for_gate(output, ground_truth_ids, num_generations)
        per_row = self._sequence_logps(output, ground_truth_ids, rows=None)
        self.ground_truth_checks.append((per_prompt, per_row.view(-1, num_generations)))
        return per_prompt


@pytest.mark.parametrize("rollout", ["sample", "beam"])
def test_gate_log_probs_come_from_the_generation_and_equal_a_forward_pass(tmp_path, tokenizer, dataset, rollout):
    # The rollouts' log π is read from the generation's raw logits (untempered, even when sampling at T=0.7) and each
    # prompt's ground truth is scored once: both must equal a plain forward pass over every row.
    trainer = make_trainer(
        tmp_path, tokenizer, dataset, trainer_cls=LogProbCheckingTrainer, rollout=rollout, temperature=0.7
    )
    trainer.train()
    assert len(trainer.rollout_checks) == trainer.args.max_steps
    for captured, logps, forward in trainer.rollout_checks:
        assert captured
        torch.testing.assert_close(logps, forward, rtol=1e-5, atol=1e-5)
    for per_prompt, per_row in trainer.ground_truth_checks:
        torch.testing.assert_close(per_prompt, per_row[:, 0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(per_row, per_row[:, :1].expand_as(per_row))  # the rows of a group share it


def test_never_gated_training_does_not_depend_on_the_reward_the_rollouts_nor_the_gate(tmp_path, tokenizer, dataset):
    # benchmarks/quality_v2.py trains the nll_only control once per seed and reuses it under every reward and rollout
    # mode (REUSABLE_NLL_ONLY_DIFFERENCES).
    def another_reward(completions, **kwargs):
        return [float(len(completion) % 3) - 1.0 for completion in completions]

    runs = {
        "target": {"reward": toy.target_reward},
        "another": {"reward": another_reward},
        "beams": {"reward": another_reward, "rollout": "beam"},
        "another_gate": {"reward": another_reward, "gate_tau": 0.5, "gate_rho": 0.75},
    }
    weights = []
    for name, options in runs.items():
        trainer = make_trainer(
            tmp_path / name,
            tokenizer,
            dataset,
            model=saved_model_dir(tmp_path / name, tokenizer),
            gate_mode="never",
            max_steps=3,
            **options,
        )
        trainer.train()
        weights.append({key: value.detach().clone() for key, value in trainer.model.state_dict().items()})
    initial = toy.make_model(tokenizer).state_dict()
    assert any(not torch.equal(value, initial[key]) for key, value in weights[0].items())
    for key in weights[0]:
        # Another reward: bit for bit the same model.
        assert torch.equal(weights[0][key], weights[1][key]), key
        # Another τ and ρ (they only decide what the gate would admit): bit for bit the same model.
        assert torch.equal(weights[1][key], weights[3][key]), key
        # Beams instead of samples: the same up to float rounding (measured: at most 5e-5 of the training's update).
        # Sampling draws from the random state that TRL then uses to shuffle the generation batch into micro-batches,
        # so the same prompts' gradients are summed in another order; the sum is the same, its rounding is not.
        update = (weights[1][key] - initial[key]).abs().max()
        assert (weights[2][key] - weights[1][key]).abs().max() <= 1e-3 * update, key


def test_nll_runs_one_pass_over_one_row_per_prompt(tmp_path, tokenizer, dataset):
    trainer = make_trainer(tmp_path, tokenizer, dataset, gate_mode="never", gradient_accumulation_steps=2)
    micro_batches, _ = run_one_step(trainer)
    weights = torch.cat([inputs["nll_weight"] for inputs in micro_batches])
    assert (weights > 0).sum() == 16 // 4  # 16 rows, 4 prompts: one carrier each
    assert weights.sum().item() == pytest.approx(1.0)  # weights 1/num_prompts: a mean over prompts


# ---------------------------------------------------------------------------------------------------------------------
# Training, metrics, model card, errors
# ---------------------------------------------------------------------------------------------------------------------


class ValidityReward:
    """A reward object that also reports invalid (hallucinated) completions: here, anything not a catalog item."""

    __name__ = "validity"

    def __call__(self, completions, **kwargs):
        return [1.0 if c in toy.ITEMS else -1.0 for c in completions]

    def invalid_mask(self, completion_ids):
        self.last = [self.tokenizer.decode(ids, skip_special_tokens=True) not in toy.ITEMS for ids in completion_ids]
        return self.last


@pytest.mark.parametrize("rollout", ["sample", "beam"])
def test_training_changes_every_parameter_and_logs_gate_metrics(tmp_path, tokenizer, dataset, rollout):
    validity = ValidityReward()
    validity.tokenizer = tokenizer
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        dataset,
        reward=[toy.target_reward, validity],
        rollout=rollout,
        learning_rate=0.1,
        gate_tau=1.0,  # admit more samples so that the GRPO branch runs too
        per_device_train_batch_size=16,
    )
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    for name, p in trainer.model.named_parameters():
        assert not torch.equal(p, before[name]), f"{name} did not change"
    logs = [log for log in trainer.state.log_history if "loss" in log]
    for key in (
        "loss/nll",
        "gate/rate",
        "gate/difficulty_rate",
        "gate/discriminability_rate",
        "gate/r1_rate",
        "gate/r2_rate",
        "gate/gt_in_rollouts",
        "gate/invalid_rollout_rate",
    ):
        assert all(key in log for log in logs), key
    for log in logs:
        assert 0 <= log["gate/rate"] <= min(log["gate/difficulty_rate"], log["gate/discriminability_rate"]) + 1e-9
        assert log["gate/discriminability_rate"] <= min(log["gate/r1_rate"], log["gate/r2_rate"]) + 1e-9
    assert logs[-1]["gate/invalid_rollout_rate"] == pytest.approx(sum(validity.last) / len(validity.last))


def test_model_card_names_adagrpo(tmp_path, tokenizer, dataset):
    trainer = make_trainer(tmp_path, tokenizer, dataset)
    trainer.create_model_card()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "AdaGRPO" in card and "2606.08480" in card


def test_wrong_config_type_and_missing_ground_truth(tmp_path, tokenizer, dataset):
    with pytest.raises(TypeError, match="AdaGRPOConfig"):
        AdaGRPOTrainer(
            model=toy.make_model(tokenizer),
            reward_funcs=toy.target_reward,
            args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none"),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    # checked at construction, before the model loads
    with pytest.raises(ValueError, match="train_dataset has no ground-truth column 'completion'"):
        make_trainer(tmp_path, tokenizer, dataset.remove_columns("completion"))


def test_ground_truth_longer_than_completion_budget(tmp_path, tokenizer, dataset):
    trainer = make_trainer(tmp_path, tokenizer, dataset, max_completion_length=2)
    with pytest.raises(ValueError, match="max_completion_length=2"):
        trainer.train()


def test_beam_rollouts_inherit_no_generation_settings_from_the_model(tmp_path, tokenizer, dataset):
    # A checkpoint whose generation config would prune or distort beams if it leaked into the rollouts.
    model = toy.make_model(tokenizer)
    model.generation_config.top_k = 1
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.repetition_penalty = 50.0
    model.generation_config.bad_words_ids = [[tokenizer.convert_tokens_to_ids("<b_0>")]]
    clean = toy.make_model(tokenizer)
    prompt_ids = [tokenizer(dataset[i]["prompt"])["input_ids"] for i in range(2) for _ in range(4)]
    outputs = []
    for policy in (model, clean):
        trainer = make_trainer(tmp_path, tokenizer, dataset, model=policy, rollout="beam")
        trainer.model.eval()
        torch.manual_seed(1)  # beam search must not depend on the RNG either
        outputs.append(trainer._generate_single_turn(prompt_ids, None, {}, 4)[0])
    assert outputs[0] == outputs[1]
    for group in range(2):
        assert len({tuple(ids) for ids in outputs[0][group * 4 : group * 4 + 4]}) == 4
    assert model.generation_config.top_k == 1  # restored after generation


def test_beam_and_processors_reject_other_generation_backends(tmp_path, tokenizer, dataset):
    def rollout_func(prompts, trainer):
        raise AssertionError("never called")

    args = toy.tiny_config(tmp_path, rollout="beam")
    with pytest.raises(ValueError, match="rollout_func"):
        AdaGRPOTrainer(
            model=toy.make_model(tokenizer),
            reward_funcs=toy.target_reward,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            rollout_func=rollout_func,
        )
    with pytest.raises(TypeError, match="logits_processors"):
        make_trainer(tmp_path, tokenizer, dataset, logits_processors=[42])


def test_async_and_weighted_rewards_score_the_gate(tmp_path, tokenizer, dataset):
    seen_sizes = []

    async def async_reward(completions, target_item, **kwargs):
        seen_sizes.append(len(completions))
        return [1.0 if c == t else 0.0 for c, t in zip(completions, target_item, strict=True)]

    def length_reward(completions, **kwargs):
        return [None if c == "" else 0.1 * len(c) for c in completions]  # None: "cannot score this one"

    trainer = make_trainer(
        tmp_path,
        tokenizer,
        dataset,
        reward=[async_reward, length_reward],
        reward_weights=[2.0, -1.0],
        per_device_train_batch_size=16,
    )
    trainer.train()
    per_group = 1 + trainer.args.num_cross_negatives
    assert seen_sizes[:2] == [16, 4 * per_group]  # rollouts, then the gate's ground truths and negatives
    nan = float("nan")
    rewards = torch.tensor([[1.0, 0.5], [nan, 0.5], [nan, nan], [0.0, nan]])
    aggregated = aggregate_rewards(rewards, trainer.reward_weights)  # the function the trainer aggregates with
    assert aggregated[:2].tolist() == [1.5, -0.5] and aggregated[3].item() == 0.0
    assert torch.isnan(aggregated[2])  # unscorable by every function


class ToyCatalog:
    """The toy items as a catalog: a completion is an item when it is one of toy.ITEMS."""

    def sid_to_item(self, sid):
        return sid if sid in toy.ITEMS else None


def _first_gate_decisions(monkeypatch, tmp_path, tokenizer, dataset, reward, **config):
    import adagrpo_trl.adagrpo_trainer as trainer_module

    recorded = []
    original = trainer_module.compute_gate_decisions

    def record(*args, **kwargs):
        decisions = original(*args, **kwargs)
        recorded.append(decisions)
        return decisions

    monkeypatch.setattr(trainer_module, "compute_gate_decisions", record)
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        dataset,
        reward=reward,
        rollout="beam",
        max_steps=1,
        per_device_train_batch_size=16,
        **config,
    )
    trainer.train()
    return recorded[0]


def test_gate_reward_weights_zero_on_the_hit_gives_the_rankers_gate(monkeypatch, tmp_path, tokenizer, dataset):
    from adagrpo_trl.rewards import HitReward

    hit = HitReward(ToyCatalog())
    both = _first_gate_decisions(
        monkeypatch,
        tmp_path / "both",
        tokenizer,
        dataset,
        [hit, toy.target_reward],
        reward_weights=[1.0, 1.0],
        gate_reward_weights=[0.0, 1.0],
        gate_tau=0.25,
    )
    alone = _first_gate_decisions(
        monkeypatch, tmp_path / "alone", tokenizer, dataset, [toy.target_reward], gate_tau=0.25
    )
    for name in ("rank_policy", "difficulty", "rank_reward", "r1", "r2", "unscorable", "discriminability", "gate"):
        assert torch.equal(getattr(both, name), getattr(alone, name)), name
    assert both.discriminability.any() and not both.discriminability.all()  # something to compare


def test_gate_reward_weights_errors(tmp_path, tokenizer, dataset):
    from adagrpo_trl.rewards import HitReward

    hit = HitReward(ToyCatalog())
    with pytest.raises(
        ValueError, match="scores the ground truth at its maximum by construction, so with gate weight"
    ):
        make_trainer(tmp_path, tokenizer, dataset, reward=[hit, toy.target_reward])
    with pytest.raises(ValueError, match=r"gate_reward_weights=\[1.0\] has 1 weights for 2 reward functions"):
        make_trainer(tmp_path, tokenizer, dataset, reward=[hit, toy.target_reward], gate_reward_weights=[1.0])
    with pytest.raises(ValueError, match="must weigh at least one reward"):
        toy.tiny_config(tmp_path, gate_reward_weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="gate_candidates='valid' needs a reward function with an `invalid_mask`"):
        make_trainer(tmp_path, tokenizer, dataset, gate_candidates="valid")
    with pytest.raises(ValueError, match="gate_candidates=' some'"):
        toy.tiny_config(tmp_path, gate_candidates=" some")
    # the gate may ignore a hit reward in pure-GRPO or never-gated training
    make_trainer(tmp_path, tokenizer, dataset, reward=[hit, toy.target_reward], gate_mode="always")


def test_gate_candidates_valid_judges_among_valid_rollouts(monkeypatch, tmp_path, tokenizer, dataset):
    validity = ValidityReward()
    validity.tokenizer = tokenizer
    rewards = [toy.target_reward, validity]
    every = _first_gate_decisions(monkeypatch, tmp_path / "all", tokenizer, dataset, rewards, gate_tau=0.25)
    valid = _first_gate_decisions(
        monkeypatch, tmp_path / "valid", tokenizer, dataset, rewards, gate_tau=0.25, gate_candidates="valid"
    )
    assert torch.equal(every.difficulty, valid.difficulty)  # the policy side is unchanged
    assert every.r1.shape == valid.r1.shape
