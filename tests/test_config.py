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

import dataclasses

import pytest
from trl import GRPOConfig, TrlParser

from adagrpo_trl import AdaGRPOConfig

from .toy import tiny_config


def test_defaults_and_public_fields(tmp_path):
    config = tiny_config(tmp_path)
    assert isinstance(config, GRPOConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(AdaGRPOConfig)}
    assert defaults["nll_coef"] == 1.0
    assert defaults["grpo_coef"] == 1.0
    assert defaults["gate_mode"] == "adaptive"
    assert defaults["ground_truth_column"] == "completion"
    assert defaults["rollout"] == "sample"
    assert defaults["gate_normalization"] == "diluted"
    for name in ("gate_tau", "gate_rho", "num_cross_negatives"):
        assert name in defaults
    for f in dataclasses.fields(AdaGRPOConfig):
        if f.name in ("nll_coef", "grpo_coef", "gate_mode", "gate_tau", "gate_rho", "num_cross_negatives"):
            assert f.metadata.get("help"), f.name


@pytest.mark.parametrize(
    ("overrides", "field", "value"),
    [
        ({"gate_mode": "sometimes"}, "gate_mode", "'sometimes'"),
        ({"gate_tau": 0.0}, "gate_tau", "0.0"),
        ({"gate_tau": 1.5}, "gate_tau", "1.5"),
        ({"gate_rho": -0.2}, "gate_rho", "-0.2"),
        ({"num_cross_negatives": -1}, "num_cross_negatives", "-1"),
        ({"num_cross_negatives": 1.5}, "num_cross_negatives", "1.5"),
        ({"nll_coef": -1.0}, "nll_coef", "-1.0"),
        ({"grpo_coef": float("nan")}, "grpo_coef", "nan"),
        ({"rollout": "greedy"}, "rollout", "'greedy'"),
        ({"gate_normalization": "tokens"}, "gate_normalization", "'tokens'"),
        ({"ground_truth_column": ""}, "ground_truth_column", "''"),
    ],
)
def test_bad_values_name_field_and_value(tmp_path, overrides, field, value):
    with pytest.raises(ValueError) as error:
        tiny_config(tmp_path, **overrides)
    assert field in str(error.value)
    assert value in str(error.value)


def test_beam_needs_whole_groups_per_process(tmp_path, monkeypatch):
    # 2 processes x 6 rows = 12 rows: whole groups globally (GRPO accepts it) but groups straddle the processes
    monkeypatch.setattr(AdaGRPOConfig, "world_size", property(lambda self: 2))
    with pytest.raises(
        ValueError, match=r"per_device_train_batch_size=6 \* steps_per_generation=1 = 6 .*num_generations=4"
    ):
        tiny_config(tmp_path, rollout="beam", per_device_train_batch_size=6, num_generations=4)
    tiny_config(tmp_path, rollout="sample", per_device_train_batch_size=6, num_generations=4)
    tiny_config(tmp_path, rollout="beam", per_device_train_batch_size=8, num_generations=4)


def test_rho_too_small_for_negatives(tmp_path):
    with pytest.raises(ValueError, match=r"gate_rho=0.1 is too small for num_cross_negatives=2"):
        tiny_config(tmp_path, gate_rho=0.1, num_cross_negatives=2, num_generations=4)
    # no negatives, or a gate that ignores discriminability: nothing to check
    tiny_config(tmp_path, gate_rho=0.1, num_cross_negatives=0)
    tiny_config(tmp_path, gate_rho=0.1, num_cross_negatives=2, gate_mode="difficulty")


def test_negatives_without_other_prompts_warn_and_defaults_build(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="adagrpo_trl.adagrpo_config"):
        tiny_config(tmp_path, per_device_train_batch_size=4, num_generations=4, num_cross_negatives=1)
    assert "R2 holds vacuously" in caplog.text
    # GRPO's defaults (8 rows, 8 generations: one prompt per step) still give a working config
    AdaGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)


def test_no_loss_left(tmp_path):
    with pytest.raises(ValueError, match="no loss"):
        tiny_config(tmp_path, nll_coef=0.0, gate_mode="never")


def test_yaml_round_trip_with_cli_override(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "output_dir: out\nuse_cpu: true\nbf16: false\ngate_mode: difficulty\ngate_tau: 0.3\nnum_generations: 4\n"
        "per_device_train_batch_size: 8\n"
    )
    (config,) = TrlParser((AdaGRPOConfig,)).parse_args_and_config(["--config", str(recipe), "--gate_tau", "0.4"])
    assert config.gate_mode == "difficulty"
    assert config.gate_tau == 0.4  # the command line wins over the YAML
    recipe.write_text(recipe.read_text() + "gate_tua: 0.3\n")
    with pytest.raises(ValueError, match="gate_tua"):
        TrlParser((AdaGRPOConfig,)).parse_args_and_config(["--config", str(recipe)])


def test_bnpo_with_accumulation_warns(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="adagrpo_trl.adagrpo_config"):
        tiny_config(tmp_path, loss_type="bnpo", gradient_accumulation_steps=2)
    assert "not gradient-accumulation exact" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="adagrpo_trl.adagrpo_config"):
        tiny_config(tmp_path, loss_type="dapo", gradient_accumulation_steps=2)
    assert caplog.text == ""
