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
"""The second quality benchmark: grids, sizing, selection on validation only, seed aggregation, report shape."""

import json
from pathlib import Path

import numpy as np
import pytest

from .benchmark_scripts import load_benchmark


quality_v2 = load_benchmark("quality_v2")
SHARED_STAGES = load_benchmark("quality").SHARED_STAGES  # the stage -> completion marker table both share


# ---------------------------------------------------------------------------------------------------------------------
# Grids and sizing
# ---------------------------------------------------------------------------------------------------------------------


def test_method_grid_has_the_control_pure_grpo_mixtures_adagrpo_and_its_ablations():
    grid = quality_v2.method_grid(tau=0.25, rho=0.5, mixture_weights=[0.1, 0.3, 1, 3])
    assert list(grid) == [
        "nll_only",
        "grpo",
        "mixture_0.1",
        "mixture_0.3",
        "mixture_1",
        "mixture_3",
        "adagrpo",
        "adagrpo_difficulty",
        "adagrpo_discriminability",
    ]
    assert grid["grpo"] == {"gate_mode": "always", "nll_coef": 0.0}
    for weight in ("0.1", "0.3", "1", "3"):
        assert grid[f"mixture_{weight}"] == {"gate_mode": "always", "nll_coef": 1.0, "grpo_coef": float(weight)}
    assert grid["adagrpo"] == {"gate_mode": "adaptive", "gate_tau": 0.25, "gate_rho": 0.5}
    assert grid["adagrpo_difficulty"] == {**grid["adagrpo"], "gate_mode": "difficulty"}
    assert grid["adagrpo_discriminability"] == {**grid["adagrpo"], "gate_mode": "discriminability"}
    assert grid["nll_only"] == {**grid["adagrpo"], "gate_mode": "never"}
    # the default grid has at least three mixture weights
    assert (
        sum(name.startswith("mixture_") for name in quality_v2.method_grid(0.25, 0.5, quality_v2.MIXTURE_WEIGHTS)) >= 3
    )
    assert set(quality_v2.method_grid(0.25, 0.5, [1], ["nll_only", "mixture_1"])) == {"nll_only", "mixture_1"}
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['mixture_7'\]"):
        quality_v2.method_grid(0.25, 0.5, [1], ["mixture_7"])
    # A pilot of the headline pair, in the order given (the order they train): no mixture, so no best mixture.
    assert list(quality_v2.method_grid(0.25, 0.5, [1], ["adagrpo", "nll_only"])) == ["adagrpo", "nll_only"]
    assert quality_v2.best_mixture_on_validation({"adagrpo": {"validation_hr@10": 0.1}}) == ""


def test_reward_grid_strong_ranker_two_biased_levels_and_hit_plus_ranker_with_the_gate_on_the_ranker():
    grid = quality_v2.reward_grid([0.5, 2.0])
    assert list(grid) == ["ranker", "ranker_bias0.5", "ranker_bias2", "hit+ranker"]
    assert grid["ranker"]["lambda"] == 0.0
    assert grid["ranker"]["train"]["reward_funcs"] == ["sasrec"] and grid["ranker"]["train"]["popularity_bias"] == 0
    for name, level in (("ranker_bias0.5", 0.5), ("ranker_bias2", 2.0)):
        assert grid[name]["lambda"] == level
        assert grid[name]["train"] == {**grid["ranker"]["train"], "popularity_bias": level}
    hit = grid["hit+ranker"]
    assert hit["lambda"] is None
    assert hit["train"]["reward_funcs"] == ["hit", "sasrec"]
    assert hit["train"]["reward_weights"] == [1.0, 1.0] and hit["train"]["gate_reward_weights"] == [0.0, 1.0]
    assert list(quality_v2.reward_grid([1.0], ["hit+ranker"])) == ["hit+ranker"]
    with pytest.raises(ValueError, match="unknown reward"):
        quality_v2.reward_grid([1.0], ["ranker_bias7"])
    with pytest.raises(ValueError, match="must be > 0"):
        quality_v2.reward_grid([0.0])


def test_every_reward_parses_as_train_keys():
    from adagrpo_trl import AdaGRPOConfig

    recipe, _ = quality_v2.base_recipe(quality_v2.parse_args(["--quick"]))
    for name, reward in quality_v2.reward_grid([0.5, 2.0]).items():
        settings = quality_v2.method_train_config(quality_v2.reward_recipe(recipe, reward), {"gate_mode": "adaptive"})
        assert settings["reward_funcs"] == reward["train"]["reward_funcs"], name
        assert settings["popularity_bias"] == reward["train"]["popularity_bias"], name
        config = {k: v for k, v in settings.items() if k in AdaGRPOConfig.__dataclass_fields__}
        parsed = AdaGRPOConfig(**{**config, "output_dir": "unused", "report_to": "none"})
        assert parsed.gate_reward_weights == reward["train"]["gate_reward_weights"], name


@pytest.mark.parametrize(
    ("prompts", "k", "micro", "visits", "eval_steps", "steps", "accumulation"),
    [(64, 16, 256, 30_000, 80, 480, 4), (64, 16, 1024, 30_000, 50, 500, 1), (4, 4, 16, 8, 1, 2, 1)],
)
def test_sizing_counts_prompt_visits_and_one_generation_batch_per_step(
    prompts, k, micro, visits, eval_steps, steps, accumulation
):
    from adagrpo_trl import AdaGRPOConfig

    sizing = quality_v2.rl_sizing(prompts, k, micro, visits, eval_steps)
    assert sizing["train"]["max_steps"] == steps and steps % eval_steps == 0
    assert sizing["train"]["gradient_accumulation_steps"] == accumulation
    assert sizing["prompt_visits"] == steps * prompts >= visits
    assert (steps - eval_steps) * prompts < visits  # the smallest such multiple of eval_steps
    # TRL 1.16: per_device_train_batch_size counts completions; one optimizer step = one generation batch
    config = AdaGRPOConfig(output_dir="unused", use_cpu=True, report_to="none", **sizing["train"])
    assert config.generation_batch_size == prompts * k
    assert config.steps_per_generation == config.gradient_accumulation_steps
    assert config.generation_batch_size // config.num_generations == sizing["prompts_per_step"] == prompts
    assert quality_v2.rl_sizing(64, 16, 256, 30_000, 80, max_steps=10)["prompt_visits"] == 640
    with pytest.raises(ValueError, match="must divide"):
        quality_v2.rl_sizing(64, 16, 300, 30_000, 80)


def test_ml1m_defaults_meet_the_issue_sizing():
    args = quality_v2.parse_args([])
    assert args.dataset == "ml-1m" and args.seeds == [0, 1, 2]
    recipe, sizing = quality_v2.base_recipe(args)
    train = recipe["train"]
    assert sizing["prompts_per_step"] >= 64 and train["num_generations"] == 16
    assert sizing["prompt_visits"] >= 30_000
    assert train["per_device_train_batch_size"] * train["gradient_accumulation_steps"] == 64 * 16
    assert "max_samples" not in recipe["evaluate"] and recipe["evaluate"]["num_beams"] >= 20  # all test users, HR@20
    assert train["recommendation_eval_steps"] == train["save_steps"] == args.eval_steps
    assert len(args.mixture_weights) >= 3 and len(args.bias_levels) == 2
    # flags override the recipe-level defaults
    recipe, sizing = quality_v2.base_recipe(quality_v2.parse_args(["--prompts_per_step", "128", "--max_steps", "8"]))
    assert sizing["prompt_visits"] == 1024 and recipe["train"]["gradient_accumulation_steps"] == 8


def test_nll_only_control_trains_with_adagrpos_compute():
    """The same-compute control: every training setting equals AdaGRPO's except `gate_mode`."""
    from adagrpo_trl import AdaGRPOConfig

    for argv in (["--quick"], []):
        recipe, _ = quality_v2.base_recipe(quality_v2.parse_args(argv))
        recipe["train"].update(learning_rate=3e-5, beta=1e-3)  # as the selection sets them for every method
        grid = quality_v2.method_grid(0.25, 0.5, [0.1, 1, 3])
        for reward in quality_v2.reward_grid([0.5, 2.0]).values():
            reward_recipe = quality_v2.reward_recipe(recipe, reward)
            adagrpo = quality_v2.method_train_config(reward_recipe, grid["adagrpo"], seed=1)
            control = quality_v2.method_train_config(reward_recipe, grid["nll_only"], seed=1)
            assert (adagrpo.pop("gate_mode"), control.pop("gate_mode")) == ("adaptive", "never")
            assert control == adagrpo
            # and the same steps, batch, learning rate, β and K as every RL method of the grid
            keys = ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations")
            keys += ("learning_rate", "beta")
            for name, overrides in grid.items():
                settings = quality_v2.method_train_config(reward_recipe, overrides, seed=1)
                assert {k: settings[k] for k in keys} == {k: adagrpo[k] for k in keys}, name
            config = {k: v for k, v in control.items() if k in AdaGRPOConfig.__dataclass_fields__}
            parsed = AdaGRPOConfig(**{**config, "gate_mode": "never", "output_dir": "unused", "report_to": "none"})
            assert parsed.gate_mode == "never" and parsed.nll_coef == 1.0


# ---------------------------------------------------------------------------------------------------------------------
# Selection on validation only
# ---------------------------------------------------------------------------------------------------------------------


def _fake_run(folder: Path, validation: list[float], test: float) -> Path:
    """A trained run: validation HR@10 in its log history, and a (contradicting) test metric beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    history = [{"step": 10 * (i + 1), "eval_hr@10": value, "loss": 1.0} for i, value in enumerate(validation)]
    history.append({"step": 10 * len(validation), "train_runtime": 1.0, "test_hr@10": test, "hr@10": test})
    (folder / "log_history.json").write_text(json.dumps(history))
    (folder / "metrics_test.json").write_text(json.dumps({"hr@10": test}))
    return folder


def test_the_nll_only_control_is_linked_into_later_rewards_once_trained(tmp_path):
    first, later = tmp_path / "seed0" / "ranker", tmp_path / "seed0" / "ranker_bias2"
    assert not quality_v2.link_nll_only(first, later)  # nothing trained yet: the later reward trains its own
    (first / "methods" / "nll_only").mkdir(parents=True)
    (first / "methods" / "nll_only" / "log_history.json").write_text("[]")
    (first / "report").mkdir()
    (first / "report" / "metrics_nll_only.json").write_text('{"hr@10": 0.1}')
    assert quality_v2.link_nll_only(first, later)
    assert (later / "methods" / "nll_only").resolve() == (first / "methods" / "nll_only").resolve()
    assert json.loads((later / "report" / "metrics_nll_only.json").read_text()) == {"hr@10": 0.1}
    assert not (later / "report" / "metrics_nll_only@best.json").exists()
    assert not quality_v2.link_nll_only(first, later)  # already linked
    unfinished = tmp_path / "seed0" / "hit+ranker"
    (unfinished / "methods" / "nll_only" / "checkpoint-80").mkdir(parents=True)
    assert not quality_v2.link_nll_only(first, unfinished)  # its own run resumes
    assert not (unfinished / "methods" / "nll_only").is_symlink()


def test_train_overrides_reach_every_method_and_bad_ones_fail_naming_the_key():
    args = quality_v2.parse_args(
        ["--quick", "--train_override", "rollout=beam", "--train_override", "temperature=0.7"]
    )
    assert args.train_overrides == {"rollout": "beam", "temperature": 0.7}
    recipe, _ = quality_v2.base_recipe(args)
    for name, overrides in quality_v2.method_grid(0.25, 0.5, [1.0]).items():
        config = quality_v2.method_train_config(recipe, overrides)
        assert (config["rollout"], config["temperature"]) == ("beam", 0.7), name
    with pytest.raises(SystemExit):
        quality_v2.parse_args(["--train_override", "rollout"])  # no '='
    with pytest.raises(ValueError, match="no_such_key"):
        quality_v2.base_recipe(quality_v2.parse_args(["--quick", "--train_override", "no_such_key=1"]))


def _saved_control(run_dir: Path, **config) -> None:
    """A finished NLL-only control with its saved `AdaGRPOConfig` (what `reusable_nll_only` reads)."""
    import torch

    from adagrpo_trl import AdaGRPOConfig

    control = run_dir / "methods" / "nll_only"
    control.mkdir(parents=True)
    (control / "log_history.json").write_text("[]")
    torch.save(
        AdaGRPOConfig(output_dir=str(control), report_to="none", use_cpu=True, **config), control / "training_args.bin"
    )


def test_reuse_from_links_shared_stages_and_only_an_equal_compute_control(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "seed0" / "shared" / "sft").mkdir(parents=True)
    assert quality_v2.link_reused_shared(old / "seed0" / "shared", new / "seed0" / "shared")
    assert (new / "seed0" / "shared" / "sft").is_dir()
    assert not quality_v2.link_reused_shared(old / "seed0" / "shared", new / "seed0" / "shared")  # has its own
    # a seed the earlier run lacks trains its own shared stages here: nothing is linked, nothing created
    assert not quality_v2.link_reused_shared(old / "seed1" / "shared", new / "seed1" / "shared")
    assert not (new / "seed1").exists()
    assert quality_v2.reusable_nll_only(old / "seed1", {"seed": 1}) is None

    _saved_control(old / "seed0" / "ranker", learning_rate=3e-5, gate_mode="never", rollout="sample", seed=0)
    # a control linked from another reward is never a source
    (old / "seed0" / "ranker_bias2" / "methods").mkdir(parents=True)
    (old / "seed0" / "ranker_bias2" / "methods" / "nll_only").symlink_to(
        old / "seed0" / "ranker" / "methods" / "nll_only"
    )
    wanted = {"learning_rate": 3e-5, "gate_mode": "never", "seed": 0, "reward_funcs": ["sasrec"]}
    assert quality_v2.reusable_nll_only(old / "seed0", {**wanted, "rollout": "beam"}) == old / "seed0" / "ranker"
    assert quality_v2.reusable_nll_only(old / "seed0", {**wanted, "learning_rate": 1e-4}) is None
    assert quality_v2.reusable_nll_only(old / "seed0", {**wanted, "seed": 1}) is None


def test_a_finished_control_of_this_run_folder_is_reused_under_the_other_rewards(tmp_path):
    args = quality_v2.parse_args(["--quick", "--seeds", "0", "1", "--reuse_from", str(tmp_path / "old")])
    recipe, _ = quality_v2.base_recipe(args)
    methods = quality_v2.method_grid(0.25, 0.5, [1.0])
    config = quality_v2.method_train_config(recipe, methods["nll_only"], 1)
    from dataclasses import fields

    from adagrpo_trl import AdaGRPOConfig

    fixed = {"output_dir", "report_to", "use_cpu", "seed"}  # _saved_control sets these
    settings = {f.name: config[f.name] for f in fields(AdaGRPOConfig) if f.name in config and f.name not in fixed}
    runs = tmp_path / "runs"
    assert quality_v2.finished_nll_only_controls(args, recipe, methods, runs) == {}
    _saved_control(runs / "seed1" / "ranker_bias2", **settings, seed=1)  # trained by an invocation under λ = 2
    _saved_control(runs / "seed0" / "ranker_bias2", **{**settings, "learning_rate": 1e-3}, seed=0)  # other lr
    assert quality_v2.finished_nll_only_controls(args, recipe, methods, runs) == {1: runs / "seed1" / "ranker_bias2"}
    _saved_control(tmp_path / "old" / "seed1" / "ranker", **settings, seed=1)  # --reuse_from comes first
    assert quality_v2.finished_nll_only_controls(args, recipe, methods, runs) == {
        1: tmp_path / "old" / "seed1" / "ranker"
    }
    without = {name: overrides for name, overrides in methods.items() if name != "nll_only"}
    assert quality_v2.finished_nll_only_controls(args, recipe, without, runs) == {}


def _saved_method(methods_dir: Path, name: str, config: dict, finished: bool = True) -> Path:
    """A method run with its saved `AdaGRPOConfig`: finished (at its root) or only a complete checkpoint."""
    import torch

    from adagrpo_trl import AdaGRPOConfig

    folder = methods_dir / name
    target = folder if finished else folder / "checkpoint-80"
    target.mkdir(parents=True)
    if finished:
        (folder / "log_history.json").write_text("[]")
    else:
        (target / "trainer_state.json").write_text("{}")
    torch.save(
        AdaGRPOConfig(output_dir=str(folder), report_to="none", use_cpu=True, **config), target / "training_args.bin"
    )
    return folder


def _config_of(recipe: dict, overrides: dict, seed: int) -> dict:
    """The `AdaGRPOConfig` keys of a method's train config (what a run saves), minus those `_saved_method` sets."""
    from dataclasses import fields

    from adagrpo_trl import AdaGRPOConfig

    config = quality_v2.method_train_config(recipe, overrides, seed)
    fixed = {"output_dir", "report_to", "use_cpu"}
    return {f.name: config[f.name] for f in fields(AdaGRPOConfig) if f.name in config and f.name not in fixed}


def test_runs_trained_with_other_settings_are_refused_naming_folder_and_key(tmp_path):
    args = quality_v2.parse_args(["--quick", "--train_override", "rollout=beam"])
    recipe, _ = quality_v2.base_recipe(args)
    methods = quality_v2.method_grid(0.25, 0.5, [1.0], ["nll_only", "adagrpo", "mixture_1"])
    run_dir = tmp_path / "seed0" / "ranker"
    # the control trained with sampled rollouts is still this control; AdaGRPO's run as asked
    _saved_method(run_dir / "methods", "nll_only", {**_config_of(recipe, methods["nll_only"], 0), "rollout": "sample"})
    _saved_method(run_dir / "methods", "adagrpo", _config_of(recipe, methods["adagrpo"], 0))
    quality_v2.check_trained_configs(run_dir, recipe, methods, 0)
    # an unfinished mixture at another learning rate would resume under the new one: refused before anything trains
    wrong = {**_config_of(recipe, methods["mixture_1"], 0), "learning_rate": 1e-3}
    _saved_method(run_dir / "methods", "mixture_1", wrong, finished=False)
    with pytest.raises(ValueError, match=r"mixture_1.*learning_rate"):
        quality_v2.check_trained_configs(run_dir, recipe, methods, 0)
    # and the same run is refused for another seed, but not when it is not asked for
    quality_v2.check_trained_configs(run_dir, recipe, {"adagrpo": methods["adagrpo"]}, 0)
    with pytest.raises(ValueError, match=r"adagrpo.*seed"):
        quality_v2.check_trained_configs(run_dir, recipe, {"adagrpo": methods["adagrpo"]}, 1)


def test_a_selection_candidate_equal_to_a_finished_run_is_linked_not_trained(tmp_path, monkeypatch):
    recipe, _ = quality_v2.base_recipe(quality_v2.parse_args(["--quick"]))
    tau, rho = recipe["train"].get("gate_tau", 0.25), recipe["train"].get("gate_rho", 0.5)  # the lr stage's τ, ρ
    args = quality_v2.parse_args(
        ["--quick", "--lr_grid", "1e-5", "1e-4", "--beta_grid", "0", "--tau_grid", f"{tau:g}", "0.9"]
        + ["--rho_grid", f"{rho:g}", "--lr_panel", "nll_only", "adagrpo"]
    )
    grid = quality_v2.method_grid(tau, rho, [1.0])
    seed_dir = tmp_path / "seed0"
    at = {"learning_rate": 1e-5, "beta": 0.0}
    final = _saved_method(seed_dir / "ranker" / "methods", "adagrpo", _config_of(recipe, {**grid["adagrpo"], **at}, 0))
    _fake_run(final, [0.5], test=0.0)
    # same settings under another reward, or another lr: not a twin
    _saved_method(seed_dir / "ranker_bias2" / "methods", "nll_only", _config_of(recipe, {**grid["nll_only"], **at}, 0))
    _saved_method(
        seed_dir / "ranker" / "methods",
        "nll_only",
        _config_of(recipe, {**grid["nll_only"], "learning_rate": 3e-5, "beta": 0.0}, 0),
    )
    trained_here = []

    def fake_train(shared_dir, recipe, seed, method_dir, overrides):
        if not (method_dir / "log_history.json").exists():
            trained_here.append(method_dir.name)
            _saved_method(method_dir.parent, method_dir.name, _config_of(recipe, overrides, seed))
            _fake_run(method_dir, [0.1], test=1.0)
        return method_dir

    monkeypatch.setattr(quality_v2, "train_candidate", fake_train)
    selection = quality_v2.select_hyperparameters(args, recipe, seed_dir / "shared", 0)
    linked = seed_dir / "selection" / "adagrpo_learning_rate1e-05_beta0"
    assert linked.is_symlink() and linked.resolve() == final.resolve()
    # the (τ, ρ) candidate at the recipe's τ, ρ and the chosen lr is the lr stage's AdaGRPO run: linked too
    same = seed_dir / "selection" / f"adagrpo_gate_tau{tau:g}_gate_rho{rho:g}"
    assert same.is_symlink() and same.resolve() == final.resolve()
    assert sorted(trained_here) == [
        f"adagrpo_gate_tau0.9_gate_rho{rho:g}",
        "adagrpo_learning_rate0.0001_beta0",
        "nll_only_learning_rate0.0001_beta0",
        "nll_only_learning_rate1e-05_beta0",
    ]
    assert selection["chosen"] == {"learning_rate": 1e-5, "beta": 0.0, "gate_tau": tau, "gate_rho": rho}


def test_final_runs_equal_to_a_selection_run_are_linked_before_training(tmp_path, monkeypatch):
    chosen = {"learning_rate": 1e-4, "beta": 0.0, "gate_tau": 0.5, "gate_rho": 0.5}
    runs = tmp_path / "runs"
    argv = ["--quick", "--output_dir", str(runs), "--results_dir", str(tmp_path / "res"), "--seeds", "0"]
    argv += ["--rewards", "ranker", "--methods", "adagrpo", "mixture_1"]
    args = quality_v2.parse_args(argv)
    recipe, _ = quality_v2.base_recipe(args)
    recipe["train"].update(learning_rate=1e-4, beta=0.0)
    this = quality_v2.reward_recipe(recipe, quality_v2.reward_grid(args.bias_levels)["ranker"])
    grid = quality_v2.method_grid(0.5, 0.5, [1.0])
    selection = runs / "seed0" / "selection"
    twin = _saved_method(selection, "adagrpo_gate_tau0.5_gate_rho0.5", _config_of(this, grid["adagrpo"], 0))
    # another τ, and the mixture at another lr: no twins
    _saved_method(
        selection, "adagrpo_gate_tau0.25_gate_rho0.5", _config_of(this, {**grid["adagrpo"], "gate_tau": 0.25}, 0)
    )
    _saved_method(
        selection,
        "mixture_1_learning_rate3e-05_beta0",
        _config_of(this, {**grid["mixture_1"], "learning_rate": 3e-5}, 0),
    )

    class Stop(Exception):
        pass

    seen = {}

    def fake_run_reward(recipe, shared_dir, run_dir, seed, methods):
        seen.update(run_dir=run_dir, methods=sorted(methods))
        raise Stop

    monkeypatch.setattr(quality_v2, "run_shared", lambda recipe, shared_dir, seed: None)
    monkeypatch.setattr(quality_v2, "select_hyperparameters", lambda *a, **k: {"chosen": chosen})
    monkeypatch.setattr(quality_v2, "run_reward", fake_run_reward)
    with pytest.raises(Stop):
        quality_v2.main(argv)
    methods_dir = runs / "seed0" / "ranker" / "methods"
    assert (methods_dir / "adagrpo").is_symlink() and (methods_dir / "adagrpo").resolve() == twin.resolve()
    assert not (methods_dir / "mixture_1").exists()  # it trains
    assert seen == {"run_dir": runs / "seed0" / "ranker", "methods": ["adagrpo", "mixture_1"]}


def _complete_stage(shared: Path, stage: str) -> Path:
    folder = shared / stage
    folder.mkdir(parents=True)
    (folder / SHARED_STAGES[stage]).write_text("{}")
    return folder


def test_environment_seed_links_data_and_ranker_but_never_the_sft_model(tmp_path):
    source, target = tmp_path / "seed0" / "shared", tmp_path / "seed1" / "shared"
    _complete_stage(source, "data")
    with pytest.raises(FileNotFoundError, match="'ranker'.*quality_report.json"):
        quality_v2.link_environment(source, target)  # the teacher is not trained yet: refused, naming the stage
    assert not target.exists()  # nothing linked: every stage is checked first
    _complete_stage(source, "ranker"), _complete_stage(source, "sft")
    assert quality_v2.link_environment(source, target) == ["data", "ranker"]
    for stage in ("data", "ranker"):
        assert (target / stage).is_symlink() and (target / stage).resolve() == (source / stage).resolve()
    assert not (target / "sft").exists()  # each seed trains its own policy
    assert quality_v2.link_environment(source, target) == []  # a resumed run: already linked
    own = tmp_path / "seed2" / "shared"
    _complete_stage(own, "ranker")
    with pytest.raises(FileExistsError, match="seed2/shared/ranker"):  # its own teacher would replace the shared one
        quality_v2.link_environment(source, own)
    assert not (own / "data").exists() and not (own / "ranker").is_symlink()  # nothing linked


def test_run_benchmark_gives_later_seeds_the_environment_seeds_data_and_ranker(tmp_path, monkeypatch):
    trained_shared = []

    def fake_shared(recipe, shared_dir, seed):  # the pipeline: trains the stages that are not complete
        trained_shared.append((seed, sorted(s for s in SHARED_STAGES if not (shared_dir / s).exists())))
        for stage in SHARED_STAGES:
            if not (shared_dir / stage).exists():
                _complete_stage(shared_dir, stage)

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(quality_v2, "run_shared", fake_shared)
    monkeypatch.setattr(quality_v2, "select_hyperparameters", stop)
    runs = tmp_path / "runs"
    argv = ["--quick", "--output_dir", str(runs), "--results_dir", str(tmp_path / "res"), "--seeds", "0", "1"]
    with pytest.raises(Stop):
        quality_v2.main([*argv, "--environment_seed", "0"])
    assert trained_shared == [(0, ["data", "ranker", "sft"]), (1, ["sft"])]
    assert (runs / "seed1" / "shared" / "ranker").resolve() == (runs / "seed0" / "shared" / "ranker").resolve()
    # an environment seed that has not run yet is refused before anything trains for the other seed
    with pytest.raises(FileNotFoundError, match="--environment_seed"):
        quality_v2.main([*argv[:-3], "--seeds", "3", "--environment_seed", "4"])
    assert not (runs / "seed3" / "shared" / "sft").exists()


def test_wall_clock_counts_parallel_invocations_once_and_keeps_every_entry(tmp_path):
    entries = [
        {"command": "a", "started": "2026-12-07T10:00:00", "seconds": 600.0},
        {"command": "b", "started": "2026-12-07T10:05:00", "seconds": 600.0},  # overlaps a by 5 min
        {"command": "c", "started": "2026-12-07T10:06:00", "seconds": 60.0},  # inside b
        {"command": "d", "started": "2026-12-07T11:00:00", "seconds": 30.0},
    ]
    assert quality_v2.busy_seconds(entries) == 900 + 30
    assert quality_v2.busy_seconds([]) == 0
    # two invocations saving in turn into one folder: neither overwrites the other's entry
    first, second = quality_v2.WallClock(tmp_path, "first"), quality_v2.WallClock(tmp_path, "second")
    second.entry["started"] = "2099-01-01T00:00:00"
    first.save(), second.save(), first.save()
    saved = json.loads((tmp_path / "invocations.json").read_text())
    assert [entry["command"] for entry in saved] == ["first", "second"]


def test_wall_clock_heartbeat_saves_without_being_asked(tmp_path):
    """A killed invocation keeps its time: the heartbeat writes the entry although `save` is never called."""
    import time

    def saved() -> list:
        path = tmp_path / "invocations.json"
        return json.loads(path.read_text()) if path.exists() else []

    clock = quality_v2.WallClock(tmp_path, "killed later", heartbeat=0.01)
    deadline = time.monotonic() + 60
    while not any(entry["seconds"] > 0 for entry in saved()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [entry["command"] for entry in saved()] == ["killed later"] and saved()[0]["seconds"] > 0
    assert saved()[0]["started"] == clock.entry["started"]
    clock.stop()
    final = saved()[0]["seconds"]
    time.sleep(0.1)
    assert saved()[0]["seconds"] == final  # stopped: no more beats
    with pytest.raises(ValueError, match="heartbeat"):
        quality_v2.WallClock(tmp_path, "bad", heartbeat=0)


def test_report_only_refuses_a_run_folder_without_its_shared_stages(tmp_path):
    argv = ["--quick", "--report_only", "--output_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "res")]
    with pytest.raises(FileNotFoundError, match="shared stages of seed 0"):
        quality_v2.main(argv)
    assert not (tmp_path / "runs" / "seed0").exists() and not (tmp_path / "res").exists()


def test_selection_reads_validation_metrics_only(tmp_path):
    # Each candidate's panel runs: the better one on validation (lr 3e-5) is the worse one on test.
    validation = {1e-5: [0.10, 0.12], 3e-5: [0.20, 0.18]}
    test = {1e-5: 0.9, 3e-5: 0.1}
    trained = []

    def train(name, overrides):
        trained.append((name, overrides))
        lr = overrides["learning_rate"]
        return _fake_run(tmp_path / name, validation[lr], test[lr])

    panel = {"nll_only": {"gate_mode": "never"}, "adagrpo": {"gate_mode": "adaptive"}}
    candidates = [{"learning_rate": 1e-5, "beta": 0.0}, {"learning_rate": 3e-5, "beta": 0.0}]
    result = quality_v2.select_stage(candidates, panel, train)
    assert result["chosen"]["learning_rate"] == 3e-5
    assert result["chosen"]["validation_hr@10"] == pytest.approx(0.20)  # the best validation value of each run
    assert result["chosen"]["panel"] == {"nll_only": 0.20, "adagrpo": 0.20}
    # every panel method is trained with every candidate, the candidate's keys winning over the method's
    assert [overrides["learning_rate"] for _, overrides in trained] == [1e-5, 1e-5, 3e-5, 3e-5]
    assert [overrides["gate_mode"] for _, overrides in trained] == ["never", "adaptive"] * 2
    # one candidate: chosen without training
    trained.clear()
    single = quality_v2.select_stage(candidates[:1], panel, train)
    assert single == {"grid": [], "chosen": {**candidates[0], "validation_hr@10": None}} and not trained
    # ties go to the first candidate of the grid
    assert quality_v2.choose([{"v": 1, "i": 0}, {"v": 1, "i": 1}], "v")["i"] == 0
    # a run without validation metrics is refused rather than scored on anything else
    no_validation = tmp_path / "no_validation"
    no_validation.mkdir()
    (no_validation / "log_history.json").write_text(json.dumps([{"step": 1, "test_hr@10": 1.0, "hr@10": 1.0}]))
    with pytest.raises(ValueError, match="has no 'eval_hr@10'"):
        quality_v2.validation_score(no_validation)


def test_best_mixture_is_chosen_on_validation_not_on_test():
    seed = {
        "sft": {"final": {"hr@10": 0.1}},
        "mixture_0.1": {"validation_hr@10": 0.30, "final": {"hr@10": 0.05}},
        "mixture_1": {"validation_hr@10": 0.20, "final": {"hr@10": 0.50}},
        "mixture_3": {"validation_hr@10": 0.30, "final": {"hr@10": 0.60}},
        "adagrpo": {"validation_hr@10": 0.90, "final": {"hr@10": 0.9}},
    }
    assert quality_v2.best_mixture_on_validation(seed) == "mixture_0.1"  # the tie goes to the first of the grid


def test_select_hyperparameters_chooses_lr_beta_then_tau_rho_on_validation(tmp_path, monkeypatch):
    args = quality_v2.parse_args(
        ["--quick", "--lr_grid", "1e-5", "1e-4", "--beta_grid", "0", "--tau_grid", "0.25", "0.5"]
        + ["--rho_grid", "0.5", "--lr_panel", "nll_only", "adagrpo"]
    )
    recipe, _ = quality_v2.base_recipe(args)
    scores = {("1e-05", None): 0.1, ("0.0001", None): 0.3, ("0.0001", 0.25): 0.2, ("0.0001", 0.5): 0.4}
    seen = []

    def fake_train(shared_dir, recipe, seed, method_dir, overrides):
        seen.append((method_dir.name, overrides))
        key = (repr(overrides["learning_rate"]), overrides.get("gate_tau") if "tau" in method_dir.name else None)
        return _fake_run(method_dir, [scores[key]], test=1 - scores[key])

    monkeypatch.setattr(quality_v2, "train_candidate", fake_train)
    selection = quality_v2.select_hyperparameters(args, recipe, tmp_path / "seed0" / "shared", 0)
    assert selection["split"] == "validation" and selection["seed"] == 0
    assert selection["chosen"] == {"learning_rate": 1e-4, "beta": 0.0, "gate_tau": 0.5, "gate_rho": 0.5}
    # (τ, ρ) candidates are trained with the chosen learning rate and β
    tau_runs = [overrides for name, overrides in seen if "tau" in name]
    assert len(tau_runs) == 2 and all(o["learning_rate"] == 1e-4 and o["gate_mode"] == "adaptive" for o in tau_runs)
    assert all((tmp_path / "seed0" / "selection").iterdir())


# ---------------------------------------------------------------------------------------------------------------------
# Seed aggregation
# ---------------------------------------------------------------------------------------------------------------------


def _metrics(hits: list[int]) -> dict:
    hits_array = np.asarray(hits, dtype=float)
    return {
        "hr@1": float(hits_array.mean() / 4),
        "hr@5": float(hits_array.mean() / 2),
        "hr@10": float(hits_array.mean()),
        "hr@20": float(min(1.0, hits_array.mean() * 1.5)),
        "ndcg@10": float(hits_array.mean() / 3),
        "hallucination": 0.0,
        "per_sample": {"hr@10": hits_array.tolist()},
    }


def _run(hits, validation=0.2, rate=1.0, step_seconds=1.0):
    return {
        "final": _metrics(hits),
        "best": _metrics(hits),
        "validation_hr@10": validation,
        "gate_rate": rate,
        "step_seconds": step_seconds,
        "train_seconds": 10 * step_seconds,
        "prompt_visits": 640,
    }


def test_aggregate_means_over_each_rows_seeds_and_pairs_users_over_common_seeds():
    per_seed = {
        0: {
            "sft": {"final": _metrics([1, 0, 0, 0]), "best": _metrics([1, 0, 0, 0])},
            "nll_only": _run([1, 1, 0, 0], rate=0.0),
            "grpo": _run([0, 0, 0, 0], step_seconds=2.0),
            "mixture_1": _run([1, 1, 1, 0]),
            "adagrpo": _run([1, 1, 1, 1], rate=0.2, step_seconds=2.2),
        },
        1: {
            "sft": {"final": _metrics([0, 1, 0, 0]), "best": _metrics([0, 1, 0, 0])},
            "nll_only": _run([1, 0, 0, 0], rate=0.0),
            "mixture_1": _run([0, 1, 1, 0]),
            "adagrpo": _run([1, 1, 0, 0], rate=0.4, step_seconds=2.4),
        },
    }
    table = quality_v2.aggregate(per_seed, ["nll_only", "grpo", "mixture_1", "adagrpo"], "mixture_1")
    ada, grpo = table["adagrpo"], table["grpo"]
    assert ada["seeds"] == 2 and ada["seed_list"] == [0, 1] and grpo["seeds"] == 1
    assert ada["final"]["hr@10"] == pytest.approx(0.75)
    assert ada["final_std"]["hr@10"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert set(ada["final"]) == set(quality_v2.METRICS)
    assert grpo["final_std"]["hr@10"] == 0.0
    assert ada["gate_rate"] == pytest.approx(0.3) and ada["step_seconds"] == pytest.approx(2.3)
    assert ada["prompt_visits"] == [640, 640]
    # AdaGRPO vs SFT: over users, each user's hits averaged over both seeds
    versus_sft = ada["final_comparisons"]["hr@10_vs_sft"]
    assert versus_sft["diff"] == pytest.approx(np.mean([1, 1, 0.5, 0.5]) - np.mean([0.5, 0.5, 0, 0]))
    assert versus_sft["low"] <= versus_sft["diff"] <= versus_sft["high"] and versus_sft["seeds"] == [0, 1]
    versus_control = ada["final_comparisons"]["hr@10_vs_nll_only"]
    assert versus_control["diff"] == pytest.approx(0.75 - np.mean([1, 0.5, 0, 0]))
    assert ada["final_comparisons"]["hr@10_vs_best_mixture"]["diff"] == pytest.approx(0.75 - 0.625)
    # a one-seed row is paired with the reference on that seed only
    grpo_vs_sft = grpo["final_comparisons"]["hr@10_vs_sft"]
    assert grpo_vs_sft["seeds"] == [0] and grpo_vs_sft["diff"] == pytest.approx(0.0 - 0.25)
    # no self-comparison, and the SFT row has none
    assert "hr@10_vs_best_mixture" not in table["mixture_1"]["final_comparisons"]
    assert "hr@10_vs_nll_only" not in table["nll_only"]["final_comparisons"]
    assert table["sft"]["final_comparisons"] == {}
    # the step-time ratio from the runs' own logs, on the seeds both ran
    ratio = quality_v2.step_time_ratio(per_seed)
    assert ratio["ratio"] == pytest.approx(2.2 / 2.0) and ratio["seeds"] == [0] and ratio["met"]


def test_log_timing_sums_step_time_over_logging_intervals_of_every_session():
    history = [
        {"step": 10, "step_time": 1.0, "loss": 0.1},
        {"step": 20, "eval_hr@10": 0.1},
        {"step": 20, "step_time": 2.0},
        {"step": 20, "train_runtime": 99.0},  # the first session ends
        {"step": 25, "step_time": 4.0},  # a resumed session
        {"step": 25, "train_runtime": 30.0},
    ]
    timing = quality_v2.log_timing(history)
    assert timing == {
        "steps": 25,
        "step_seconds": pytest.approx(7 / 3),
        "train_seconds": 10 * 1.0 + 10 * 2.0 + 5 * 4.0,
        "train_runtime_last_session": 30.0,
    }


def test_format_table_and_lambda_rows():
    per_seed = {0: {"sft": {"final": _metrics([1, 0]), "best": _metrics([1, 0])}}}
    per_seed[0].update(nll_only=_run([1, 1]), grpo=_run([0, 1]), mixture_1=_run([1, 1]), adagrpo=_run([1, 0]))
    methods = ["nll_only", "grpo", "mixture_1", "adagrpo"]
    report = {"methods": quality_v2.aggregate(per_seed, methods, "mixture_1"), "best_mixture": "mixture_1"}
    rows = quality_v2.format_table(report).splitlines()[2:]
    assert len(rows) == 1 + 2 * 4 and rows[0].startswith("| SFT | 1 | – | 12.50 | 25.00 | 50.00")
    assert "(best by validation)" in rows[5]
    reports = {
        "ranker_bias2": {**report, "lambda": 2.0},
        "ranker": {**report, "lambda": 0.0},
        "hit+ranker": {**report, "lambda": None},
    }
    lambda_rows = quality_v2.lambda_rows(reports)
    assert [row["lambda"] for row in lambda_rows] == [0.0, 2.0]
    assert set(lambda_rows[0]) == {"reward", "lambda", "mixture", "grpo", "best_mixture", "adagrpo"}
    # A pilot without mixtures: no best-mixture comparison, no best-mixture point on the λ plot.
    pilot = {"methods": quality_v2.aggregate(per_seed, ["nll_only", "adagrpo"], ""), "best_mixture": "", "lambda": 2.0}
    assert "hr@10_vs_best_mixture" not in pilot["methods"]["adagrpo"]["final_comparisons"]
    assert "hr@10_vs_nll_only" in pilot["methods"]["adagrpo"]["final_comparisons"]
    assert len(quality_v2.format_table(pilot).splitlines()) == 2 + 1 + 2 * 2
    assert set(quality_v2.lambda_rows({"ranker_bias2": pilot})[0]) == {"reward", "lambda", "mixture", "adagrpo"}


# ---------------------------------------------------------------------------------------------------------------------
# End to end on the tiny simulator
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quality_v2_end_to_end_on_the_tiny_simulator(tmp_path):
    """`--quick`: every reward's table and frontier, the λ plot and summary, from real runs; then a resumed rerun."""
    results, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--quick", "--output_dir", str(runs), "--results_dir", str(results)]
    summary = quality_v2.main(argv)
    folder = results / "synthetic"
    rewards = ["ranker", "ranker_bias0.5", "ranker_bias2", "hit+ranker"]
    assert summary["rewards"] == rewards
    methods = {"sft", *quality_v2.method_grid(0.5, 0.6, [0.1, 1, 3])}
    for reward in rewards:
        report = json.loads((folder / reward / "report.json").read_text())
        assert {"command", "versions", "hardware", "wall_seconds", "sizing", "selection"} <= set(report)
        assert report["command"].startswith("python benchmarks/quality_v2.py --quick")
        assert report["versions"]["commit"] and report["settings"]["test_users"] == "all"
        assert set(report["methods"]) == methods
        best = report["best_mixture"]
        assert best.startswith("mixture_") and report["headline_rows"] == ["sft", "nll_only", best, "adagrpo"]
        for name, entry in report["methods"].items():
            headline = name in report["headline_rows"]
            assert entry["seeds"] == (2 if headline else 1), name
            for checkpoint in ("final", "best"):
                assert set(entry[checkpoint]) == set(quality_v2.METRICS)
                if name != "sft":
                    assert "hr@10_vs_sft" in entry[f"{checkpoint}_comparisons"]
            if name != "sft":
                assert entry["prompt_visits"][0] == report["sizing"]["prompt_visits"] == 8
                assert entry["train_seconds"] > 0 and entry["step_seconds"] > 0
        assert report["methods"]["grpo"]["gate_rate"] == 1.0 and report["methods"]["nll_only"]["gate_rate"] == 0.0
        assert report["step_time_ratio"]["ratio"] > 0
        assert (folder / reward / "report.md").read_text().count("\n| ") == 1 + 1 + 2 * (len(methods) - 1)
        assert (folder / reward / "frontier.png").stat().st_size > 0
    assert report["reward_settings"]["gate_reward_weights"] == [0.0, 1.0]
    assert len(report["selection"]["learning_rate_beta"]["grid"]) == 2  # --quick selects among two learning rates
    assert [row["lambda"] for row in summary["lambda_rows"]] == [0.0, 0.5, 2.0]
    assert (folder / "delta_hr10_vs_lambda.png").stat().st_size > 0 and (folder / "summary.md").exists()
    # resumable: a second invocation trains nothing and gives the same test metrics
    trained = {path: path.stat().st_mtime for path in runs.rglob("log_history.json")}
    before = json.loads((folder / "ranker" / "report.json").read_text())
    quality_v2.main(argv)
    assert {path: path.stat().st_mtime for path in runs.rglob("log_history.json")} == trained
    after = json.loads((folder / "ranker" / "report.json").read_text())
    assert after["methods"] == before["methods"] and after["selection"] == before["selection"]
    invocations = json.loads((runs / "invocations.json").read_text())
    assert len(invocations) == 2 and after["wall_seconds_all_invocations"] >= invocations[0]["seconds"]
    # --report_only: trains nothing, and leaves out a method never trained (w = 0.5) instead of training it
    quality_v2.main([*argv, "--report_only", "--mixture_weights", "0.1", "0.5", "1", "3"])
    assert {path: path.stat().st_mtime for path in runs.rglob("log_history.json")} == trained
    only = json.loads((folder / "ranker" / "report.json").read_text())
    assert set(only["methods"]) == methods and set(only["settings"]["methods"]) == methods - {"sft"}
    assert only["methods"]["adagrpo"] == after["methods"]["adagrpo"]
    # a row trained on more seeds than the headline rows (pure GRPO on the second seed) keeps them under --report_only
    quality_v2.main([*argv, "--rewards", "ranker", "--methods", "grpo", "--all_methods_all_seeds"])
    assert only["methods"]["grpo"]["seeds"] == 1
    quality_v2.main([*argv, "--report_only"])
    extra = json.loads((folder / "ranker" / "report.json").read_text())
    assert extra["headline_rows"] == after["headline_rows"]
    assert extra["methods"]["adagrpo"] == after["methods"]["adagrpo"]
    for name, entry in extra["methods"].items():
        assert entry["seeds"] == (2 if name in extra["headline_rows"] or name == "grpo" else 1), name
