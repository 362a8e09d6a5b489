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
"""RecommendationEvalCallback: metrics in the log history at the right steps, and the best checkpoint."""

import json
import os

import numpy as np
import pytest

from adagrpo_trl import AdaGRPOTrainer, ItemCatalog
from adagrpo_trl.callbacks import BEST_CHECKPOINT_FILE, RecommendationEvalCallback
from adagrpo_trl.evaluation import evaluate_recommendations

from . import toy


METRICS = ("eval_hr@10", "eval_ndcg@10", "eval_hallucination", "eval_constrained/hr@10", "eval_hr@1")


def _catalog():
    return ItemCatalog([f"item{i}" for i in range(len(toy.ITEMS))], toy.ITEMS)


def _validation(catalog, num_rows=8):
    return [
        {"prompt": row["prompt"], "target_item": catalog.sid_to_item(row["completion"])}
        for row in toy.make_dataset(num_rows)
    ]


def _trainer(tmp_path, tokenizer, **config):
    return AdaGRPOTrainer(
        model=toy.make_model(tokenizer),
        reward_funcs=toy.target_reward,
        args=toy.tiny_config(tmp_path / "out", **config),
        train_dataset=toy.make_dataset(),
        processing_class=tokenizer,
    )


def test_eval_callback_logs_metrics_and_keeps_the_best_checkpoint(tmp_path, tokenizer):
    catalog = _catalog()
    validation = _validation(catalog)
    trainer = _trainer(
        tmp_path, tokenizer, max_steps=5, learning_rate=5e-2, save_strategy="steps", save_steps=2, save_total_limit=1
    )
    callback = RecommendationEvalCallback(
        validation, catalog, tokenizer, eval_steps=2, ks=(1, 5, 10), num_beams=10, trainer=trainer
    )
    trainer.add_callback(callback)
    trainer.train()

    history = trainer.state.log_history
    evaluations = [entry for entry in history if "eval_hr@10" in entry]
    # every 2 steps, and at the end of training
    assert [entry["step"] for entry in evaluations] == [2, 4, 5]
    for entry in evaluations:
        for name in METRICS:
            assert 0 <= entry[name] <= 1
        assert entry["eval_hr@1"] <= entry["eval_hr@10"]
        assert "loss" not in entry and "reward" not in entry
    # the trainer's own training logs keep their GRPO metrics at every logging step
    training = [entry for entry in history if "loss" in entry and "eval_hr@10" not in entry]
    assert [entry["step"] for entry in training] == [1, 2, 3, 4, 5]
    assert all("reward" in entry and "gate/rate" in entry for entry in training)

    assert [entry["step"] for entry in callback.history] == [2, 4, 5]
    values = [entry["eval_hr@10"] for entry in evaluations]
    assert [entry["eval_hr@10"] for entry in callback.history] == values
    best = int(np.argmax(values))
    assert callback.best_step == evaluations[best]["step"]
    assert callback.best_metrics["eval_hr@10"] == max(values)
    assert callback.final_step == 5 and callback.final_metrics["eval_hr@10"] == values[-1]

    # Every evaluated step was saved; the best one survives save_total_limit=1 and is the trainer's best checkpoint.
    with open(tmp_path / "out" / BEST_CHECKPOINT_FILE) as file:
        summary = json.load(file)
    assert summary["best_checkpoint_step"] == callback.best_step == callback.best_checkpoint_step
    assert os.path.isdir(summary["best_checkpoint"])
    assert summary["best_checkpoint"] == callback.best_checkpoint == trainer.state.best_model_checkpoint
    assert trainer.state.best_metric == max(values) and trainer.state.best_global_step == callback.best_step
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("checkpoint-")) == [
        f"checkpoint-{callback.best_step}"
    ]
    with open(os.path.join(summary["best_checkpoint"], "trainer_state.json")) as file:
        assert json.load(file)["best_global_step"] == callback.best_step  # recorded before the checkpoint was written
    assert summary["final_step"] == 5 and [entry["step"] for entry in summary["history"]] == [2, 4, 5]

    # The final evaluation is evaluate_recommendations on the final model.
    final = evaluate_recommendations(
        trainer.model, tokenizer, validation, catalog, ks=(1, 5, 10), num_beams=10, show_progress=False
    )
    for name in METRICS:
        assert callback.final_metrics[name] == pytest.approx(final[name.removeprefix("eval_")])


def test_eval_callback_without_trainer_and_lower_is_better(tmp_path, tokenizer):
    catalog = _catalog()
    trainer = _trainer(tmp_path, tokenizer, max_steps=3, learning_rate=5e-2)
    callback = RecommendationEvalCallback(
        _validation(catalog, 4),
        catalog,
        tokenizer,
        eval_steps=1,
        ks=(1, 4),
        num_beams=4,
        hallucination_k=4,
        constrained=False,
        metric_for_best_model="eval_hallucination",
    )
    trainer.add_callback(callback)  # no trainer reference: metrics only reach state.log_history
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_hallucination" in entry]
    assert [entry["step"] for entry in evaluations] == [1, 2, 3]
    assert not any("eval_constrained/hr@4" in entry for entry in evaluations)
    values = [entry["eval_hallucination"] for entry in evaluations]
    assert callback.greater_is_better is False
    assert callback.best_step == evaluations[int(np.argmin(values))]["step"]
    assert callback.best_checkpoint is None  # nothing was saved
    with open(tmp_path / "out" / BEST_CHECKPOINT_FILE) as file:
        summary = json.load(file)
    assert summary["best_checkpoint"] is None and summary["best_step"] == callback.best_step


def test_eval_callback_rejects_bad_settings(tmp_path, tokenizer):
    catalog = _catalog()
    validation = _validation(catalog, 2)
    misaligned = _trainer(tmp_path, tokenizer, save_strategy="steps", save_steps=3)
    misaligned.add_callback(
        RecommendationEvalCallback(validation, catalog, tokenizer, eval_steps=2, ks=(1, 10), num_beams=10)
    )
    with pytest.raises(ValueError, match="multiple of its eval_steps"):
        misaligned.train()
    with pytest.raises(ValueError, match="not one of the logged metrics"):
        RecommendationEvalCallback(
            validation, catalog, tokenizer, ks=(1, 10), num_beams=10, metric_for_best_model="hr@5"
        )
    with pytest.raises(ValueError, match="must be in"):
        RecommendationEvalCallback(validation, catalog, tokenizer, num_beams=10)  # default ks include 20
    with pytest.raises(ValueError, match="not in the catalog"):
        RecommendationEvalCallback(
            [{"prompt": "x", "target_item": "nope"}], catalog, tokenizer, ks=(1, 10), num_beams=10
        )
    with pytest.raises(ValueError, match="num_beams <= catalog size"):
        RecommendationEvalCallback(validation, catalog, tokenizer, num_beams=20)


def test_eval_callback_resumes_its_history_from_a_checkpoint(tmp_path, tokenizer):
    catalog = _catalog()
    validation = _validation(catalog, 4)
    kwargs = dict(eval_steps=2, ks=(1, 10), num_beams=10)
    first = _trainer(tmp_path, tokenizer, max_steps=4, save_strategy="steps", save_steps=2)
    callback = RecommendationEvalCallback(validation, catalog, tokenizer, trainer=first, **kwargs)
    first.add_callback(callback)
    first.train()

    resumed = _trainer(tmp_path, tokenizer, max_steps=4, save_strategy="steps", save_steps=2)
    again = RecommendationEvalCallback(validation, catalog, tokenizer, trainer=resumed, **kwargs)
    resumed.add_callback(again)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert [entry["step"] for entry in again.history] == [2, 4]
    assert again.history[0] == callback.history[0]  # restored from the checkpoint's log history, not re-run
    assert again.history[1]["eval_constrained/hr@10"] == pytest.approx(callback.history[1]["eval_constrained/hr@10"])
    assert set(again.checkpoints) == {2, 4} and os.path.isdir(again.best_checkpoint)


class ScriptedCallback(RecommendationEvalCallback):
    """Returns scripted metrics instead of running beam search, to control which step is best."""

    script = {2: 0.2, 4: 0.5, 6: 0.3}

    def evaluate(self, model=None, tokenizer=None, args=None):
        value = self.script[self.trainer.state.global_step]
        return {name.removeprefix(self.metric_prefix): value for name in self.metric_names}


def test_best_checkpoint_survives_rotation_when_it_is_not_the_last(tmp_path, tokenizer):
    catalog = _catalog()
    trainer = _trainer(tmp_path, tokenizer, max_steps=6, save_strategy="steps", save_steps=2, save_total_limit=1)
    callback = ScriptedCallback(_validation(catalog, 2), catalog, tokenizer, eval_steps=2, ks=(10,), num_beams=10)
    callback.set_trainer(trainer)
    trainer.add_callback(callback)
    trainer.train()
    assert [entry["step"] for entry in callback.history] == [2, 4, 6]
    assert callback.best_step == callback.best_checkpoint_step == 4 and callback.best_metrics["eval_hr@10"] == 0.5
    assert callback.final_step == 6 and callback.final_metrics["eval_hr@10"] == 0.3
    best = str(tmp_path / "out" / "checkpoint-4")
    assert callback.best_checkpoint == trainer.state.best_model_checkpoint == best
    assert trainer.state.best_metric == 0.5 and trainer.state.best_global_step == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-4"]
    with open(tmp_path / "out" / BEST_CHECKPOINT_FILE) as file:
        summary = json.load(file)
    assert summary["best_checkpoint"] == best and summary["final_metrics"]["eval_hr@10"] == 0.3
