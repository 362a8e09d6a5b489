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
The quality benchmark, second edition (issue 18): an RL stage big enough to matter, a same-compute NLL-only control,
all test users, and three rewards (a strong ranker, the same ranker popularity-biased, hit + ranker).

Per seed, one shared SFT checkpoint and one shared strong SASRec ranker (the recipe's `prepare`, `sft` and `ranker`
stages, `seed<s>/shared/`), then, for every reward, from that SFT checkpoint and with the same steps, prompts per
step, K, learning rate and β (`seed<s>/<reward>/`):

- `nll_only`: the same-compute control (`gate_mode="never"`: AdaGRPO's settings, the GRPO term never admitted); the
  reward never reaches its loss, so it trains once per seed (under the first reward) and is linked into the others;
- `grpo`: pure GRPO (`gate_mode="always", nll_coef=0`);
- `mixture_<w>`: fixed NLL + w·GRPO (`gate_mode="always", nll_coef=1, grpo_coef=w`), `--mixture_weights`;
- `adagrpo` and its ablations `adagrpo_difficulty`, `adagrpo_discriminability`.

Rewards (`--rewards`, one report each): `ranker` (the strong ranker, λ = 0), `ranker_bias<λ>` for each
`--bias_levels` λ (`popularity_bias`: score + λ·log(1 + count), the noise axis, see docs/rankers.md) and `hit+ranker`
(`reward_funcs [hit, sasrec]`, `reward_weights [1, 1]`, `gate_reward_weights [0, 1]`: the gate judges with the ranker
alone, see docs/method.md#definitions).

Sizing (recipe-level defaults for ML-1M, `adagrpo_trl/recipes/ml-1m/pipeline_quality_v2.yaml`, each a flag):
`--prompts_per_step 64` prompts × `--num_generations 16` rollouts per optimizer step, in micro-batches of
`--micro_batch 256` completions (TRL's `per_device_train_batch_size` counts completions; `gradient_accumulation_steps`
= 64 × 16 / 256 = 4, and `steps_per_generation` defaults to it, so one optimizer step is one generation batch);
`max_steps` = the smallest multiple of `--eval_steps` with `max_steps × prompts_per_step >= --min_prompt_visits` (30K:
480 steps = 30,720 visits), unless `--max_steps` is given. Every report records the prompt visits each method ran.

Selection, on the first seed's **validation** split only (best validation HR@10 during training, never a test metric):
(1) the learning rate and β shared by every method (`--lr_grid` × `--beta_grid`), scored by the mean over the
`--lr_panel` methods, so the control and the RL methods get the same optimiser; (2) τ and ρ of AdaGRPO (`--tau_grid` ×
`--rho_grid`) at that learning rate; (3) per reward, the best fixed mixture among the first seed's mixture runs. A grid
of one value trains nothing. Selection trains under the `ranker` reward (`--selection_reward`). A run is never trained
twice: a selection candidate whose exact training config already ran (a final run of the selection reward, the (τ, ρ)
candidate the learning-rate stage trained, a candidate of the `--reuse_from` run) is linked to that run, and so is a
final run of the first seed to the selection run it equals. Method runs in the run folder that trained (or started)
with other settings than the invocation asks for are refused, naming the keys, rather than skipped or resumed.

Seeds: every method runs on the first seed; the headline rows (SFT, `nll_only`, the best mixture, `adagrpo`) on every
seed of `--seeds` (`--all_methods_all_seeds` for every row; `--report_only` reports every run that finished, on every
seed, so a row trained on more seeds, e.g. while it was the best mixture, keeps them). Rows are means ± std over their
seeds; the paired-bootstrap 95% intervals of ΔHR@10 (vs SFT, vs `nll_only`, vs the best mixture) are over test users,
each user's hits averaged over the seeds both rows ran (`adagrpo_trl.evaluation.paired_bootstrap`).

Evaluation: ALL test users (beam width >= 20): HR@{1,5,10,20}, NDCG@10, unconstrained hallucination, gate rate, train
seconds and seconds per optimizer step from each run's own `log_history.json` (TRL's `step_time`), the AdaGRPO / pure
GRPO step-time ratio (target <= 1.15), at the final checkpoint and at the best one by validation HR@10.

Outputs, `benchmarks/results/quality_v2/<dataset>[/<tag>]/`: `<reward>/report.{json,md}` and `<reward>/frontier.png`
(HR@10 × hallucination), `summary.{json,md}` and `delta_hr10_vs_lambda.png` (ΔHR@10 vs SFT against λ for pure GRPO,
the best mixture and AdaGRPO). Each JSON records the exact command, the commit, the library versions, the hardware and
the wall time (this invocation, and the clock time of all invocations of the run folder, parallel ones counted once).
Runs are resumable: every stage with complete outputs is skipped (the pipeline's stage skipping), and a killed
training resumes from its last checkpoint.

Variants: `--train_override KEY=VALUE` changes one key of the train section for every method (e.g. `rollout=beam`:
K distinct beams per prompt instead of K samples); `--reuse_from <run folder>` links each seed's shared stages from an
earlier run and its NLL-only control when that control's saved settings equal this run's up to the keys that never
reach its loss (`REUSABLE_NLL_ONLY_DIFFERENCES`: the rollout mode, the reward weights), so a variant of the RL
methods costs no new SFT, ranker or control (a seed that run lacks trains its own shared stages here); a finished
control of the same seed under another reward of this run folder is linked the same way, so parallel or later
invocations with other `--rewards` do not retrain it. `--environment_seed <s>` gives every seed seed `<s>`'s data
(split, semantic IDs) and ranker: the item vocabulary and the teacher are then one fixed environment, as a
production ranker is, and the seeds vary the policy alone (its SFT and RL); without it each seed prepares its data and
trains its ranker. `--report_only` trains nothing and reports what finished (a method not
trained under a reward is left out of that reward's report), e.g. after variants trained in parallel invocations.

```bash
python benchmarks/quality_v2.py --dataset ml-1m                         # the full second edition (days on 2 cores)
python benchmarks/quality_v2.py --dataset ml-1m --seeds 0 --rewards ranker --lr_grid 3e-5 --beta_grid 0
python benchmarks/quality_v2.py --quick                                 # the tiny simulator, a few minutes
python benchmarks/quality_v2.py --dataset ml-1m --seeds 0 --rewards ranker --lr_grid 3e-5 --beta_grid 0 \
    --tag pilot_beam --reuse_from runs/quality_v2/ml-1m-pilot --train_override rollout=beam
python benchmarks/quality_v2.py --dataset ml-1m --seeds 0 1 2 --environment_seed 0 ...  # one teacher, three policies
```
"""

import argparse
import itertools
import json
import logging
import math
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from quality import (  # benchmarks/ is the script's folder, on sys.path
    best_validation,
    hardware,
    label,
    link_shared_stages,
    parse_overrides,
    pipeline_args,
    plot_frontier,
    versions,
)


logger = logging.getLogger("benchmarks.quality_v2")

REPO = Path(__file__).resolve().parent.parent
RECIPES = {
    "ml-1m": REPO / "adagrpo_trl" / "recipes" / "ml-1m" / "pipeline_quality_v2.yaml",
    "ml-100k": REPO / "adagrpo_trl" / "recipes" / "ml-100k" / "pipeline.yaml",
    "synthetic": REPO / "adagrpo_trl" / "recipes" / "synthetic" / "pipeline_tiny.yaml",
}
METRICS = ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@10", "hallucination")
MIXTURE_WEIGHTS = (0.1, 0.3, 1.0, 3.0)
BIAS_LEVELS = (0.5, 2.0)
STEP_TIME_TARGET = 1.15
# The ML-1M defaults (the issue's sizing); `--quick` replaces them with QUICK.
DEFAULTS = {
    "dataset": "ml-1m",
    "seeds": [0, 1, 2],
    "prompts_per_step": 64,
    "num_generations": 16,
    "micro_batch": 256,
    "min_prompt_visits": 30_000,
    "eval_steps": 80,
    "eval_samples": 1000,
    "num_beams": 20,
    "lr_grid": [1e-5, 3e-5, 1e-4],
    "beta_grid": [0.0, 1e-3],
    "tau_grid": [0.125, 0.25, 0.5],
    "rho_grid": [0.25, 0.5],
    "bias_levels": list(BIAS_LEVELS),
    "mixture_weights": list(MIXTURE_WEIGHTS),
}
# The tiny simulator (adagrpo_trl/recipes/synthetic/pipeline_tiny.yaml): every table and plot in a few minutes.
QUICK = {
    "dataset": "synthetic",
    "seeds": [0, 1],
    "prompts_per_step": 4,
    "num_generations": 4,
    "micro_batch": 16,
    "min_prompt_visits": 8,
    "eval_steps": 1,
    "eval_samples": 10,
    "num_beams": 20,
    "lr_grid": [1e-4, 1e-3],
    "beta_grid": [0.0],
    "tau_grid": [0.5],
    "rho_grid": [0.6],
    "bias_levels": [0.5, 2.0],
    "mixture_weights": [0.1, 1.0, 3.0],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="The tiny simulator with tiny sizes (defaults: QUICK).")
    parser.add_argument("--dataset", choices=sorted(RECIPES), default=None, help="Default: ml-1m (quick: synthetic).")
    parser.add_argument("--recipe", default=None, help="Pipeline recipe (default: the dataset's, see RECIPES).")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Default: 0 1 2 (quick: 0 1).")
    parser.add_argument(
        "--all_methods_all_seeds", action="store_true", help="Every method on every seed (default: headline rows)."
    )
    sizing = parser.add_argument_group("sizing")
    sizing.add_argument("--prompts_per_step", type=int, default=None, help="Prompts per optimizer step (64).")
    sizing.add_argument("--num_generations", type=int, default=None, help="K, rollouts per prompt (16).")
    sizing.add_argument("--micro_batch", type=int, default=None, help="Completions per micro-batch (256).")
    sizing.add_argument("--min_prompt_visits", type=int, default=None, help="Prompt visits per method (30000).")
    sizing.add_argument("--max_steps", type=int, default=None, help="RL steps (default: from --min_prompt_visits).")
    sizing.add_argument("--eval_steps", type=int, default=None, help="Validation HR@10 and a checkpoint every N.")
    sizing.add_argument("--eval_samples", type=int, default=None, help="Validation users per periodic evaluation.")
    sizing.add_argument("--num_beams", type=int, default=None, help="Test beam width (>= 20 for HR@20).")
    selection = parser.add_argument_group("selection (validation split of the first seed)")
    selection.add_argument("--lr_grid", type=float, nargs="+", default=None)
    selection.add_argument("--beta_grid", type=float, nargs="+", default=None)
    selection.add_argument("--tau_grid", type=float, nargs="+", default=None)
    selection.add_argument("--rho_grid", type=float, nargs="+", default=None)
    selection.add_argument(
        "--lr_panel",
        nargs="+",
        default=["nll_only", "mixture_1", "adagrpo"],
        help="Methods whose mean best validation HR@10 scores a (learning rate, β) candidate.",
    )
    selection.add_argument("--selection_reward", default="ranker", help="The reward the selection trains under.")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--mixture_weights", type=float, nargs="+", default=None, help="w of NLL + w·GRPO (>= 3).")
    grid.add_argument("--bias_levels", type=float, nargs="+", default=None, help="λ of the biased rewards (two).")
    grid.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="Only these methods of the grid, trained in this order (default: all).",
    )
    grid.add_argument("--rewards", nargs="+", default=None, help="Only these rewards of the grid (default: all).")
    parser.add_argument(
        "--train_override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Change one key of the recipe's train section for every method (YAML value), e.g. rollout=beam; "
        "repeatable.",
    )
    parser.add_argument(
        "--reuse_from",
        default=None,
        help="An earlier run folder of this benchmark: each seed's shared stages (data, SFT, ranker) are linked from "
        "it, and so is its NLL-only control where this run's differs only in keys that never reach that loss "
        "(REUSABLE_NLL_ONLY_DIFFERENCES).",
    )
    parser.add_argument(
        "--environment_seed",
        type=int,
        default=None,
        help="Give every seed this seed's data (split, semantic IDs) and ranker, so the teacher is one fixed "
        "environment and the seeds vary the policy (SFT and RL) alone; it must come first in --seeds or be in "
        "--reuse_from, and a seed with data or a ranker of its own is refused (default: each seed prepares its data "
        "and trains its ranker).",
    )
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="Train nothing: report every method run whose training finished, on every seed (a method not trained "
        "under a reward is left out of that reward's report); the shared stages and any selection candidates must be "
        "complete.",
    )
    parser.add_argument("--tag", default=None, help="A variant: reports under <results_dir>/<dataset>/<tag>/.")
    parser.add_argument("--output_dir", default=None, help="Run folder (default: runs/quality_v2/<dataset>[-<tag>]).")
    parser.add_argument("--results_dir", default="benchmarks/results/quality_v2", help="Root of the reports.")
    args = parser.parse_args(argv)
    defaults = {**DEFAULTS, "methods": None, **(QUICK if args.quick else {})}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.tag):
        parser.error(f"--tag must be letters, digits, '.', '_' or '-' (it names files), got {args.tag!r}.")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}.")
    try:
        args.train_overrides = parse_overrides(args.train_override, "--train_override")
    except ValueError as error:
        parser.error(str(error))
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Grids and sizing
# ---------------------------------------------------------------------------------------------------------------------


def method_grid(
    tau: float, rho: float, mixture_weights: Sequence[float], methods: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """
    The methods, as overrides of the shared `train` section. `nll_only` is AdaGRPO's overrides with `gate_mode="never"`:
    the same steps, batch, learning rate and K (the same-compute control), only the GRPO term never admitted.
    """
    adagrpo = {"gate_mode": "adaptive", "gate_tau": tau, "gate_rho": rho}
    grid: dict[str, dict[str, Any]] = {
        "nll_only": {**adagrpo, "gate_mode": "never"},
        "grpo": {"gate_mode": "always", "nll_coef": 0.0},
    }
    for weight in mixture_weights:
        grid[f"mixture_{weight:g}"] = {"gate_mode": "always", "nll_coef": 1.0, "grpo_coef": float(weight)}
    grid["adagrpo"] = adagrpo
    grid["adagrpo_difficulty"] = {**adagrpo, "gate_mode": "difficulty"}
    grid["adagrpo_discriminability"] = {**adagrpo, "gate_mode": "discriminability"}
    if methods is not None:
        unknown = sorted(set(methods) - set(grid))
        if unknown:
            raise ValueError(f"--methods: unknown method(s) {unknown}; the grid has {sorted(grid)}.")
        # In the given order: the order they train. A grid without a fixed mixture (a pilot of the headline pair)
        # has no best-mixture row and no comparison with it.
        grid = {name: grid[name] for name in dict.fromkeys(methods)}
    return grid


def reward_grid(bias_levels: Sequence[float], rewards: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """
    The rewards, each a report: name -> `{"lambda": λ or None, "train": overrides of the train section}`. `ranker` is
    the strong ranker (λ = 0), `ranker_bias<λ>` the same ranker with `popularity_bias` λ, `hit+ranker` the hit reward
    plus the ranker with the gate judging the ranker alone (`gate_reward_weights [0, 1]`).
    """
    unbiased = {
        "reward_funcs": ["sasrec"],
        "popularity_bias": 0.0,
        "reward_weights": None,
        "gate_reward_weights": None,
    }
    grid: dict[str, dict[str, Any]] = {"ranker": {"lambda": 0.0, "train": unbiased}}
    for level in bias_levels:
        if level <= 0:
            raise ValueError(f"--bias_levels must be > 0 (λ = 0 is the `ranker` reward), got {level}.")
        grid[f"ranker_bias{level:g}"] = {
            "lambda": float(level),
            "train": {**unbiased, "popularity_bias": float(level)},
        }
    grid["hit+ranker"] = {
        "lambda": None,
        "train": {
            "reward_funcs": ["hit", "sasrec"],
            "popularity_bias": 0.0,
            "reward_weights": [1.0, 1.0],
            "gate_reward_weights": [0.0, 1.0],
        },
    }
    if rewards is not None:
        unknown = sorted(set(rewards) - set(grid))
        if unknown:
            raise ValueError(f"--rewards: unknown reward(s) {unknown}; the grid has {sorted(grid)}.")
        grid = {name: reward for name, reward in grid.items() if name in rewards}
    return grid


def rl_sizing(
    prompts_per_step: int,
    num_generations: int,
    micro_batch: int,
    min_prompt_visits: int,
    eval_steps: int,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """
    The train keys of one optimizer step of `prompts_per_step` prompts × `num_generations` rollouts (TRL 1.16 counts
    completions in `per_device_train_batch_size`; `steps_per_generation` defaults to `gradient_accumulation_steps`, so a
    step is one generation batch), and `max_steps`: the given one, else the smallest multiple of `eval_steps` with at
    least `min_prompt_visits` prompt visits. Returns `{"train": ..., "prompts_per_step", "prompt_visits"}`.
    """
    completions = prompts_per_step * num_generations
    if min(prompts_per_step, num_generations, micro_batch, eval_steps) < 1:
        raise ValueError("prompts_per_step, num_generations, micro_batch and eval_steps must be >= 1.")
    if completions % micro_batch != 0:
        raise ValueError(
            f"--micro_batch {micro_batch} must divide prompts_per_step × num_generations = {prompts_per_step} × "
            f"{num_generations} = {completions} completions per step."
        )
    if max_steps is None:
        max_steps = eval_steps * math.ceil(min_prompt_visits / (prompts_per_step * eval_steps))
    train = {
        "num_generations": num_generations,
        "per_device_train_batch_size": micro_batch,
        "gradient_accumulation_steps": completions // micro_batch,
        "max_steps": max_steps,
    }
    return {"train": train, "prompts_per_step": prompts_per_step, "prompt_visits": max_steps * prompts_per_step}


def base_recipe(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recipe every run starts from (sizing, validation, all test users, `--train_override`) and the sizing."""
    from adagrpo_trl.scripts.recipe import load_recipe, split_recipe_section

    recipe = load_recipe(Path(args.recipe or RECIPES[args.dataset]), "pipeline")
    sizing = rl_sizing(
        args.prompts_per_step,
        args.num_generations,
        args.micro_batch,
        args.min_prompt_visits,
        args.eval_steps,
        args.max_steps,
    )
    train = {key: value for key, value in recipe.get("train", {}).items() if key != "steps_per_generation"}
    train.update(
        sizing["train"],
        save_strategy="steps",
        save_steps=args.eval_steps,
        recommendation_eval_steps=args.eval_steps,
        recommendation_eval_samples=args.eval_samples,
    )
    train.update(getattr(args, "train_overrides", {}))
    split_recipe_section("train", train, "--train_override")  # an unknown key or a bad value fails here, naming it
    recipe["train"] = train
    # ALL test users, and enough beams for HR@20.
    evaluate = {key: value for key, value in recipe.get("evaluate", {}).items() if key != "max_samples"}
    recipe["evaluate"] = {**evaluate, "num_beams": max(args.num_beams, 20)}
    recipe["analyze"] = None
    return recipe, sizing


def reward_recipe(recipe: dict[str, Any], reward: dict[str, Any]) -> dict[str, Any]:
    """The recipe with the reward's train keys (a `None` value drops the key: the config's default)."""
    train = {**recipe["train"], **reward["train"]}
    return {**recipe, "train": {key: value for key, value in train.items() if value is not None}}


def method_train_config(recipe: dict[str, Any], overrides: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Every `AdaGRPOConfig` and `train` key one method trains with (the recipe's train section + its overrides)."""
    from adagrpo_trl.scripts.recipe import split_recipe_section

    script, config = split_recipe_section("train", {**recipe["train"], **overrides})
    return {"seed": seed, **script, **config}


# ---------------------------------------------------------------------------------------------------------------------
# Selection (validation split of the first seed)
# ---------------------------------------------------------------------------------------------------------------------


def validation_score(method_dir: Path) -> float:
    """A run's best validation HR@10 during training (`eval_hr@10` of its `log_history.json`); never a test metric."""
    return best_validation(method_dir, "eval_hr@10")


def choose(rows: list[dict[str, Any]], key: str = "validation_hr@10") -> dict[str, Any]:
    """The row with the highest `key`; ties go to the first row of the grid."""
    if not rows:
        raise ValueError("Nothing to choose from: the grid is empty.")
    return max(rows, key=lambda row: row[key])


def select_stage(
    candidates: list[dict[str, Any]],
    panel: dict[str, dict[str, Any]],
    train: Callable[[str, dict[str, Any]], Path],
) -> dict[str, Any]:
    """
    Scores each candidate (a dict of train overrides) by the mean best validation HR@10 of the `panel` methods trained
    with it (`train(name, overrides)` returns the run folder; a folder already trained is not retrained) and returns
    `{"grid": rows, "chosen": row}`. A single candidate is chosen without training.
    """
    if len(candidates) == 1:
        return {"grid": [], "chosen": {**candidates[0], "validation_hr@10": None}}
    rows = []
    for candidate in candidates:
        suffix = "_".join(f"{key}{value:g}" for key, value in candidate.items())
        scores = {}
        for method, overrides in panel.items():
            scores[method] = validation_score(train(f"{method}_{suffix}", {**overrides, **candidate}))
        rows.append({**candidate, "panel": scores, "validation_hr@10": float(np.mean(list(scores.values())))})
        logger.info("selection %s: mean validation HR@10 %.4f", suffix, rows[-1]["validation_hr@10"])
    return {"grid": rows, "chosen": choose(rows)}


def train_candidate(shared_dir: Path, recipe: dict[str, Any], seed: int, method_dir: Path, overrides: dict) -> Path:
    """Trains one selection run from the seed's shared SFT model (resuming a killed one); skipped when complete."""
    from adagrpo_trl import AdaGRPOConfig
    from adagrpo_trl.checkpoints import last_complete_checkpoint
    from adagrpo_trl.scripts.configs import TrainScriptArguments
    from adagrpo_trl.scripts.recipe import split_recipe_section
    from adagrpo_trl.scripts.train import run_train

    if (method_dir / "log_history.json").exists():
        return method_dir
    script, config = split_recipe_section("train", {**recipe["train"], **overrides})
    script_args = TrainScriptArguments(
        **{
            "ranker_path": str(shared_dir / "ranker"),
            **script,
            "data_dir": str(shared_dir / "data"),
            "model_name_or_path": str(shared_dir / "sft"),
        }
    )
    resume = last_complete_checkpoint(method_dir)
    train_args = AdaGRPOConfig(
        **{
            "seed": seed,
            "report_to": "none",
            "resume_from_checkpoint": resume,
            **config,
            "output_dir": str(method_dir),
        }
    )
    run_train(script_args, train_args)
    return method_dir


def link_twin(target: Path, folders: Sequence[Path], expected: dict[str, Any], ignored: frozenset) -> Path | None:
    """
    Links `target` (a method or selection run not trained yet: absent or an empty folder) to the first finished run
    in `folders` that trained with exactly `expected` ([`finished_twin`]); returns it, or `None` when `target` has
    runs of its own or no twin exists.
    """
    if target.is_symlink() or (target.is_dir() and any(target.iterdir())) or target.is_file():
        return None
    for folder in folders:
        twin = finished_twin(folder, expected, ignored)
        if twin is not None:
            if target.is_dir():
                target.rmdir()  # a killed run that saved nothing
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(twin.resolve(), target_is_directory=True)
            logger.info("%s: the finished run %s trained with its settings (linked)", target, twin)
            return twin
    return None


def selection_folder(seed_dir: Path) -> Path:
    """Where a seed's selection candidates train (`<seed folder>/selection`), in this run folder or `--reuse_from`'s."""
    return seed_dir / "selection"


def select_hyperparameters(
    args: argparse.Namespace, recipe: dict[str, Any], shared_dir: Path, seed: int
) -> dict[str, Any]:
    """(learning rate, β) for every method, then (τ, ρ) for AdaGRPO, each on the validation split of `seed`."""
    selection_dir = selection_folder(shared_dir.parent)
    train = recipe["train"]

    def trainer(name: str, overrides: dict[str, Any]) -> Path:
        candidate = selection_dir / name
        # a finished run with this very config (a final run of the selection reward, the (τ, ρ) candidate that the
        # learning-rate stage already trained, or a candidate of the --reuse_from run) stands for the candidate
        searched = [shared_dir.parent / args.selection_reward / "methods", selection_dir]
        if args.reuse_from:
            searched.append(selection_folder(Path(args.reuse_from) / shared_dir.parent.name))
        link_twin(candidate, searched, method_train_config(recipe, overrides, seed), ignored_differences(overrides))
        if getattr(args, "report_only", False) and not (candidate / "log_history.json").exists():
            raise FileNotFoundError(f"--report_only: the selection run {candidate} is not trained.")
        return train_candidate(shared_dir, recipe, seed, candidate, overrides)

    default_tau, default_rho = train.get("gate_tau", args.tau_grid[0]), train.get("gate_rho", args.rho_grid[0])
    panel_grid = method_grid(default_tau, default_rho, [1.0, *args.mixture_weights])
    unknown = sorted(set(args.lr_panel) - set(panel_grid))
    if unknown:
        raise ValueError(f"--lr_panel: unknown method(s) {unknown}; the grid has {sorted(panel_grid)}.")
    panel = {name: panel_grid[name] for name in args.lr_panel}
    lr_beta = select_stage(
        [{"learning_rate": lr, "beta": beta} for lr, beta in itertools.product(args.lr_grid, args.beta_grid)],
        panel,
        trainer,
    )
    chosen_lr = {"learning_rate": lr_beta["chosen"]["learning_rate"], "beta": lr_beta["chosen"]["beta"]}
    tau_rho = select_stage(
        [{"gate_tau": tau, "gate_rho": rho} for tau, rho in itertools.product(args.tau_grid, args.rho_grid)],
        {"adagrpo": {**panel_grid["adagrpo"], **chosen_lr}},
        trainer,
    )
    return {
        "seed": seed,
        "split": "validation",
        "reward": args.selection_reward,
        "learning_rate_beta": {**lr_beta, "panel": list(panel)},
        "tau_rho": tau_rho,
        "chosen": {
            **chosen_lr,
            "gate_tau": tau_rho["chosen"]["gate_tau"],
            "gate_rho": tau_rho["chosen"]["gate_rho"],
        },
    }


def best_mixture_on_validation(seed_results: dict[str, dict[str, Any]]) -> str:
    """
    The fixed mixture with the best validation HR@10 in one seed's runs (ties: the first of the grid); `""` when the
    grid has no mixture.
    """
    rows = [
        {"name": name, "validation_hr@10": entry["validation_hr@10"]}
        for name, entry in seed_results.items()
        if name.startswith("mixture_")
    ]
    return choose(rows)["name"] if rows else ""


# ---------------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------------


def run_shared(recipe: dict[str, Any], shared_dir: Path, seed: int) -> None:
    """The seed's data, SFT model, ranker and SFT test metrics (the pipeline with no method)."""
    from adagrpo_trl.scripts.pipeline import run_pipeline

    run_pipeline(pipeline_args(recipe, shared_dir, seed, {}))


def link_nll_only(source_run: Path, run_dir: Path) -> bool:
    """
    Links a seed's trained `nll_only` control (and its test metrics) from the run of an earlier reward into `run_dir`:
    with `gate_mode="never"` the reward never reaches the loss, so the control is the same model under every reward
    (tests/test_adagrpo_trainer.py::test_never_gated_training_does_not_depend_on_the_reward_the_rollouts_nor_the_gate).
    Does nothing when the source is not trained yet or `run_dir` already has its own (finished or unfinished) control.
    Returns whether it linked.
    """
    source, target = source_run / "methods" / "nll_only", run_dir / "methods" / "nll_only"
    if not trained(source_run, "nll_only") or target.is_symlink() or target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve(), target_is_directory=True)
    for name in ("metrics_nll_only.json", "metrics_nll_only@best.json"):
        metrics = source_run / "report" / name
        if metrics.exists() and not (run_dir / "report" / name).exists():
            (run_dir / "report").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(metrics, run_dir / "report" / name)
    return True


# Train keys that never reach the NLL-only control's loss (`gate_mode="never"`: neither the rollouts, their rewards nor
# the gate's τ and ρ enter it): a control trained under other rewards or another τ, ρ is the same model bit for bit, one
# trained with other rollouts the same up to float rounding (the micro-batches are shuffled with another random state,
# so gradients are summed in another order), i.e. an equally valid same-compute control (tests/test_adagrpo_trainer.py::
# test_never_gated_training_does_not_depend_on_the_reward_the_rollouts_nor_the_gate).
REUSABLE_NLL_ONLY_DIFFERENCES = frozenset({"rollout", "reward_weights", "gate_reward_weights", "gate_tau", "gate_rho"})


def link_reused_shared(source: Path, shared_dir: Path) -> bool:
    """
    Links a seed's shared stages (`--reuse_from`) unless this run already has its own or the earlier run lacks that
    seed (it then trains them here); returns whether it linked.
    """
    if shared_dir.exists() or shared_dir.is_symlink():
        return False
    if not source.is_dir():
        logger.info("--reuse_from: %s does not exist; this seed trains its own shared stages.", source)
        return False
    shared_dir.parent.mkdir(parents=True, exist_ok=True)
    shared_dir.symlink_to(source.resolve(), target_is_directory=True)
    return True


# The shared stages that `--environment_seed` gives every seed: the items, split and semantic IDs, and the teacher.
ENVIRONMENT_STAGES = ("data", "ranker")


def link_environment(source: Path, shared_dir: Path) -> list[str]:
    """
    Links the environment stages (`ENVIRONMENT_STAGES`) of another seed's shared folder `source` into `shared_dir`
    (`--environment_seed`); the seed then trains only its SFT model there. Refuses, before linking anything, a stage
    that is incomplete in `source` and a seed that already has a stage of its own (its own teacher would silently
    replace the shared one), naming them. Returns the stages it linked (none when a resumed run has them all).
    """
    for stage in ENVIRONMENT_STAGES:
        origin, target = source / stage, shared_dir / stage
        if (target.exists() or target.is_symlink()) and target.resolve() != origin.resolve():
            raise FileExistsError(
                f"--environment_seed: {target} is this seed's own {stage!r} stage, not {origin}; remove it (or the "
                "seed's shared folder) to share the environment seed's, or drop --environment_seed."
            )
    return link_shared_stages(source, shared_dir, ENVIRONMENT_STAGES, "--environment_seed")


def config_differences(method_dir: Path, expected: dict[str, Any], ignored: frozenset = frozenset()) -> dict:
    """
    `{key: (saved, expected)}` for every key of `expected` (a `method_train_config`) that the run's saved
    `AdaGRPOConfig` (finished, or its latest checkpoint's) has with another value, except `ignored` (script keys such as
    the reward are not saved and not compared: a run's reward is its folder's). Empty when they agree or nothing was
    saved.
    """
    from adagrpo_trl.checkpoints import saved_training_args

    saved = saved_training_args(method_dir)
    return {} if saved is None else _differences(saved, expected, ignored)


def _differences(saved: Any, expected: dict[str, Any], ignored: frozenset) -> dict:
    from adagrpo_trl.checkpoints import training_args_differences

    return training_args_differences(saved, expected, [key for key in expected if key not in ignored])


def ignored_differences(overrides: dict[str, Any]) -> frozenset:
    """The keys a run may differ in and still be this method's run: `REUSABLE_NLL_ONLY_DIFFERENCES` for the control."""
    return REUSABLE_NLL_ONLY_DIFFERENCES if overrides.get("gate_mode") == "never" else frozenset()


def check_trained_configs(
    run_dir: Path, recipe: dict[str, Any], methods: dict[str, dict[str, Any]], seed: int
) -> None:
    """
    Refuses a run folder whose finished or resumable method runs trained with another configuration than this
    invocation asks for (say an earlier `--lr_grid`), before the pipeline runs: it would be reported (or continued)
    under the wrong settings. The pipeline refuses its own method folders too (`check_method_runs`) but takes a linked
    one as it is; here the linked NLL-only control is checked as well, up to `REUSABLE_NLL_ONLY_DIFFERENCES`.

    Raises:
        `ValueError`: naming each method folder and the keys that differ (saved, wanted).
    """
    wrong = {}
    for name, overrides in methods.items():
        expected = method_train_config(recipe, overrides, seed)
        differences = config_differences(run_dir / "methods" / name, expected, ignored_differences(overrides))
        if differences:
            wrong[str(run_dir / "methods" / name)] = differences
    if wrong:
        raise ValueError(
            f"Method runs trained with other settings than this invocation's (saved, wanted): {wrong}. Use another "
            "--output_dir, or the settings they ran with."
        )


def reusable_nll_only(seed_dir: Path, expected: dict[str, Any]) -> Path | None:
    """
    The reward run in `seed_dir` (a seed folder of `--reuse_from` or of this run) whose trained NLL-only control can
    stand for this run's: trained there (not linked), finished, and with the same value of every key of `expected`
    (this run's `method_train_config` of `nll_only`) that its saved `AdaGRPOConfig` has, except
    `REUSABLE_NLL_ONLY_DIFFERENCES`.
    `None` (with the differences logged) when there is none, or when `seed_dir` does not exist.
    """
    if not seed_dir.is_dir():
        return None
    for run_dir in sorted(path for path in seed_dir.iterdir() if path.is_dir() and path.name != "shared"):
        control = run_dir / "methods" / "nll_only"
        if control.is_symlink() or not trained(run_dir, "nll_only"):
            continue
        differences = config_differences(control, expected, REUSABLE_NLL_ONLY_DIFFERENCES)
        if not differences:
            return run_dir
        logger.info("not reusing %s: it differs in %s (saved, wanted)", control, differences)
    return None


def finished_twin(methods_dir: Path, expected: dict[str, Any], ignored: frozenset = frozenset()) -> Path | None:
    """
    A finished method run in `methods_dir` (one reward's `methods/`) that trained with exactly `expected` (up to
    `ignored`): a selection candidate equal to a final run, or the reverse, need not train twice. `None` if none.
    """
    from adagrpo_trl.checkpoints import saved_training_args

    if not methods_dir.is_dir():
        return None
    for method_dir in sorted(methods_dir.iterdir()):
        saved = saved_training_args(method_dir) if (method_dir / "log_history.json").exists() else None
        if saved is not None and not _differences(saved, expected, ignored):
            return method_dir
    return None


def finished_nll_only_controls(
    args: argparse.Namespace, recipe: dict[str, Any], methods: dict[str, dict[str, Any]], output_dir: Path
) -> dict[int, Path]:
    """
    Per seed of `args.seeds`, the reward run holding a finished NLL-only control this run can reuse
    ([`reusable_nll_only`]): first in `--reuse_from`, then in this run folder (a control trained by an earlier or
    parallel invocation under another reward). Seeds with none are left out: they train their own.
    """
    found: dict[int, Path] = {}
    if "nll_only" not in methods:
        return found
    for seed in args.seeds:
        expected = method_train_config(recipe, methods["nll_only"], seed)
        folders = [Path(args.reuse_from) / f"seed{seed}"] if args.reuse_from else []
        for folder in [*folders, output_dir / f"seed{seed}"]:
            source = reusable_nll_only(folder, expected)
            if source is not None:
                found[seed] = source
                break
    return found


def trained(run_dir: Path, name: str) -> bool:
    """Whether `name`'s training under this reward finished (its `log_history.json` is written at the end)."""
    return (run_dir / "methods" / name / "log_history.json").exists()


def run_reward(
    recipe: dict[str, Any], shared_dir: Path, run_dir: Path, seed: int, methods: dict[str, dict[str, Any]]
) -> None:
    """One seed's methods under one reward, from the seed's shared stages (linked) and SFT metrics (copied)."""
    from adagrpo_trl.scripts.pipeline import run_pipeline

    link_shared_stages(shared_dir, run_dir)
    sft_metrics = run_dir / "report" / "metrics_sft.json"
    if not sft_metrics.exists():
        sft_metrics.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_dir / "report" / "metrics_sft.json", sft_metrics)
    run_pipeline(pipeline_args(recipe, run_dir, seed, methods))


def log_timing(history: list[dict[str, Any]]) -> dict[str, Any]:
    """
    From a run's `log_history`: the steps trained, the mean seconds per optimizer step (TRL's `step_time`, generation
    and gate included, periodic validation excluded), the training seconds (Σ step_time × steps per logging interval,
    over every session of a resumed run) and the last session's `train_runtime` (validation included).
    """
    steps = max((log.get("step", 0) for log in history), default=0)
    timed = sorted((log["step"], log["step_time"]) for log in history if log.get("step_time") is not None)
    seconds, previous = 0.0, 0
    for step, step_time in timed:
        seconds += step_time * (step - previous)
        previous = step
    runtime = [log["train_runtime"] for log in history if "train_runtime" in log]
    return {
        "steps": steps,
        "step_seconds": float(np.mean([t for _, t in timed])) if timed else None,
        "train_seconds": round(seconds, 3) if timed else None,
        "train_runtime_last_session": runtime[-1] if runtime else None,
    }


def load_method(run_dir: Path, name: str, prompts_per_step: int) -> dict[str, Any]:
    """One method of one seed: test metrics (final, best), per-user HR@10, gate rate, validation, timing, visits."""
    report = run_dir / "report"
    final = json.loads((report / f"metrics_{name}.json").read_text())
    best_path = report / f"metrics_{name}@best.json"
    best = json.loads(best_path.read_text()) if best_path.exists() else final
    entry: dict[str, Any] = {"final": final, "best": best}
    method_dir = run_dir / "methods" / name
    if (method_dir / "log_history.json").exists():
        history = json.loads((method_dir / "log_history.json").read_text())
        rates = [log["gate/rate"] for log in history if "gate/rate" in log]
        entry["gate_rate"] = float(np.mean(rates)) if rates else None
        entry["validation_hr@10"] = validation_score(method_dir)
        summary = method_dir / "best_checkpoint.json"
        entry["best_step"] = json.loads(summary.read_text()).get("best_checkpoint_step") if summary.exists() else None
        entry.update(log_timing(history))
        entry["prompt_visits"] = entry["steps"] * prompts_per_step
    return entry


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------------------------------


def _per_user(per_seed: dict[int, dict[str, Any]], name: str, checkpoint: str, seeds: list[int]) -> np.ndarray:
    """Each test user's HR@10 averaged over `seeds` (the users are the same across seeds: a leave-one-out split)."""
    return np.mean([np.asarray(per_seed[seed][name][checkpoint]["per_sample"]["hr@10"]) for seed in seeds], axis=0)


def _mean_or_none(values: list[Any]) -> float | None:
    return None if not values or any(value is None for value in values) else float(np.mean(values))


def aggregate(per_seed: dict[int, dict[str, Any]], methods: list[str], best_mixture: str) -> dict[str, Any]:
    """
    The report's rows: per method, the seeds it ran, means and sample stds over those seeds of every metric at the
    final and best checkpoints, and paired-bootstrap ΔHR@10 vs SFT (its only checkpoint), vs `nll_only` and vs the best
    mixture (same checkpoint kind), each over test users with hits averaged over the seeds both rows ran.
    """
    from adagrpo_trl.evaluation import paired_bootstrap

    references = {"sft": "hr@10_vs_sft", "nll_only": "hr@10_vs_nll_only", best_mixture: "hr@10_vs_best_mixture"}
    table: dict[str, Any] = {}
    for name in ["sft", *methods]:
        seeds = [seed for seed in sorted(per_seed) if name in per_seed[seed]]
        entry: dict[str, Any] = {"seeds": len(seeds), "seed_list": seeds}
        for checkpoint in ("best", "final"):
            values = {
                m: [per_seed[s][name][checkpoint].get(m) for s in seeds]
                for m in METRICS
                if all(per_seed[s][name][checkpoint].get(m) is not None for s in seeds)
            }
            entry[checkpoint] = {m: float(np.mean(v)) for m, v in values.items()}
            entry[f"{checkpoint}_std"] = {
                m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in values.items()
            }
            comparisons = {}
            for reference, key in references.items():
                if name == "sft" or reference == name or (reference != "sft" and reference not in methods):
                    continue
                common = [s for s in seeds if reference in per_seed[s]]
                if not common:
                    continue
                result = paired_bootstrap(
                    _per_user(per_seed, reference, "final" if reference == "sft" else checkpoint, common),
                    _per_user(per_seed, name, checkpoint, common),
                )
                comparisons[key] = {**{k: float(v) for k, v in result.items()}, "seeds": common}
            entry[f"{checkpoint}_comparisons"] = comparisons
        if name != "sft":
            runs = [per_seed[s][name] for s in seeds]
            entry["gate_rate"] = _mean_or_none([run.get("gate_rate") for run in runs])
            entry["validation_hr@10"] = _mean_or_none([run.get("validation_hr@10") for run in runs])
            entry["best_step"] = [run.get("best_step") for run in runs]
            for key in ("train_seconds", "step_seconds"):
                entry[key] = _mean_or_none([run.get(key) for run in runs])
            entry["prompt_visits"] = [run.get("prompt_visits") for run in runs]
        table[name] = entry
    return table


def step_time_ratio(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """AdaGRPO's mean seconds per optimizer step over pure GRPO's, on the seeds both ran (from their own logs)."""
    seeds = [s for s in sorted(per_seed) if {"adagrpo", "grpo"} <= set(per_seed[s])]
    pairs = [(per_seed[s]["adagrpo"].get("step_seconds"), per_seed[s]["grpo"].get("step_seconds")) for s in seeds]
    pairs = [(a, g) for a, g in pairs if a is not None and g]
    if not pairs:
        return None
    adagrpo, grpo = float(np.mean([a for a, _ in pairs])), float(np.mean([g for _, g in pairs]))
    return {
        "adagrpo_step_seconds": adagrpo,
        "grpo_step_seconds": grpo,
        "ratio": adagrpo / grpo,
        "target": STEP_TIME_TARGET,
        "met": adagrpo / grpo <= STEP_TIME_TARGET,
        "seeds": [s for s in seeds if per_seed[s]["adagrpo"].get("step_seconds") is not None],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def row_label(name: str, best_mixture: str) -> str:
    return label(name) + (" (best by validation)" if name == best_mixture else "")


def format_table(report: dict[str, Any]) -> str:
    """The reward's table: one row per method and checkpoint (SFT once), metrics in %."""
    methods, best_mixture = report["methods"], report["best_mixture"]
    lines = [
        "| method | seeds | checkpoint | HR@1 | HR@5 | HR@10 | HR@20 | NDCG@10 | hallucination | ΔHR@10 vs SFT [95% CI] "
        "| ΔHR@10 vs NLL only [95% CI] | ΔHR@10 vs best mixture [95% CI] | gate rate | train s | s/step | prompt visits |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(entry: dict[str, Any], checkpoint: str, metric: str) -> str:
        if metric not in entry[checkpoint]:
            return "–"
        mean = 100 * entry[checkpoint][metric]
        if entry["seeds"] > 1:
            return f"{mean:.2f} ± {100 * entry[f'{checkpoint}_std'][metric]:.2f}"
        return f"{mean:.2f}"

    def delta(entry: dict[str, Any], checkpoint: str, key: str) -> str:
        result = entry[f"{checkpoint}_comparisons"].get(key)
        if result is None:
            return "–"
        return f"{100 * result['diff']:+.2f} [{100 * result['low']:+.2f}, {100 * result['high']:+.2f}]"

    def number(value: Any, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    for name, entry in methods.items():
        for checkpoint in ("final", "best") if name != "sft" else ("final",):
            first = checkpoint == "final"
            visits = entry.get("prompt_visits") or []
            lines.append(
                f"| {row_label(name, best_mixture)} | {entry['seeds']} | {checkpoint if name != 'sft' else '–'} | "
                + " | ".join(cell(entry, checkpoint, m) for m in METRICS)
                + " | "
                + " | ".join(
                    delta(entry, checkpoint, key)
                    for key in ("hr@10_vs_sft", "hr@10_vs_nll_only", "hr@10_vs_best_mixture")
                )
                + f" | {number(entry.get('gate_rate') if first else None, '.3f')}"
                + f" | {number(entry.get('train_seconds') if first else None, '.1f')}"
                + f" | {number(entry.get('step_seconds') if first else None, '.2f')}"
                + f" | {number(visits[0] if first and visits and visits[0] is not None else None, 'd')} |"
            )
    return "\n".join(lines)


def lambda_rows(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """ΔHR@10 vs SFT [95% CI] of pure GRPO, the best mixture and AdaGRPO for every reward with a λ, by λ."""
    rows = []
    for reward, report in reports.items():
        if report["lambda"] is None:
            continue
        row: dict[str, Any] = {"reward": reward, "lambda": report["lambda"], "mixture": report["best_mixture"]}
        for key, name in (("grpo", "grpo"), ("best_mixture", report["best_mixture"]), ("adagrpo", "adagrpo")):
            entry = report["methods"].get(name)
            if entry is not None:
                row[key] = {c: entry[f"{c}_comparisons"]["hr@10_vs_sft"] for c in ("final", "best")}
        rows.append(row)
    return sorted(rows, key=lambda row: row["lambda"])


def plot_lambda(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """ΔHR@10 vs SFT (points, 95% CI bars) against λ, final and best checkpoints side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adagrpo_trl.utils import atomic_write

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    styles = {"grpo": ("v-", "tab:red", "pure GRPO"), "best_mixture": ("o-", "tab:gray", "best fixed mixture")}
    styles["adagrpo"] = ("*-", "tab:blue", "AdaGRPO")
    for axis, checkpoint in zip(axes, ("final", "best"), strict=True):
        for key, (fmt, color, name) in styles.items():
            points = [(row["lambda"], row[key][checkpoint]) for row in rows if key in row]
            if not points:
                continue
            xs = [x for x, _ in points]
            ys = [100 * p["diff"] for _, p in points]
            errors = [
                [100 * (p["diff"] - p["low"]) for _, p in points],
                [100 * (p["high"] - p["diff"]) for _, p in points],
            ]
            axis.errorbar(xs, ys, yerr=errors, fmt=fmt, color=color, capsize=3, label=name)
        axis.axhline(0.0, color="black", linewidth=0.8)
        axis.set_xlabel("popularity bias λ of the ranker reward")
        axis.set_title(f"{checkpoint} checkpoint")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("ΔHR@10 vs SFT (points, 95% paired CI)")
    axes[1].legend(fontsize=8, loc="best")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    plt.close(figure)


def write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def write_reward_report(report: dict[str, Any], folder: Path, dataset: str) -> None:
    from adagrpo_trl.utils import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "report.json", report)
    selection, chosen = report["selection"], report["selection"]["chosen"]

    def how(stage: str) -> str:  # a one-value grid trains nothing: the value is the command's, not a selection
        return "chosen on validation" if selection[stage]["grid"] else "fixed by the command (one-value grid)"

    mixtures = [name for name in report["settings"]["methods"] if name.startswith("mixture_")]
    mixture = label(report["best_mixture"]) or "none in this grid"
    if len(mixtures) == 1:
        mixture += " (the only mixture run)"
    ratio = report["step_time_ratio"]
    ratio_text = "not measured" if ratio is None else f"{ratio['ratio']:.3f} (target ≤ {ratio['target']})"
    overrides = report.get("train_overrides") or {}
    variant = "".join(f"{key}={value}, " for key, value in overrides.items())
    if report.get("reused_from"):
        variant += f"shared stages (and the NLL-only control where equal) from {report['reused_from']}, "
    header = (
        f"{dataset}, reward `{report['reward']}`: {report['hardware']}; {variant}seeds {report['seeds']} "
        "(headline rows), "
        f"{report['sizing']['prompts_per_step']} prompts × {report['settings']['train']['num_generations']} rollouts "
        f"per step, {report['settings']['train']['max_steps']} steps = {report['sizing']['prompt_visits']} prompt "
        f"visits per method; lr={chosen['learning_rate']:g}, β={chosen['beta']:g} {how('learning_rate_beta')}; "
        f"τ={chosen['gate_tau']:g}, ρ={chosen['gate_rho']:g} {how('tau_rho')}; best fixed mixture (validation, seed "
        f"{report['seeds'][0]}): {mixture}; AdaGRPO / pure GRPO seconds per step, from each run's own log (not a "
        f"controlled timing: other jobs on the machine count): {ratio_text}; "
        f"wall time {report['wall_seconds'] / 60:.0f} min this invocation, "
        f"{report['wall_seconds_all_invocations'] / 60:.0f} min of clock time over every invocation of the run folder "
        "(parallel ones counted once).\n\n"
    )
    write_text(folder / "report.md", header + format_table(report) + "\n")
    plot_frontier(report, folder / "frontier.png", f"{dataset}, reward {report['reward']}")


def write_summary(summary: dict[str, Any], folder: Path, dataset: str) -> None:
    from adagrpo_trl.utils import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "summary.json", summary)
    lines = [
        "| reward | λ | best mixture | ΔHR@10 vs SFT, pure GRPO | best mixture | AdaGRPO (final checkpoints) |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["lambda_rows"]:

        def cell(key: str, row: dict[str, Any] = row) -> str:
            if key not in row:
                return "–"
            p = row[key]["final"]
            return f"{100 * p['diff']:+.2f} [{100 * p['low']:+.2f}, {100 * p['high']:+.2f}]"

        lines.append(
            f"| {row['reward']} | {row['lambda']:g} | {label(row['mixture']) or '–'} | {cell('grpo')} | "
            f"{cell('best_mixture')} | {cell('adagrpo')} |"
        )
    write_text(
        folder / "summary.md", f"{dataset}: ΔHR@10 vs SFT against the reward's λ.\n\n" + "\n".join(lines) + "\n"
    )
    if summary["lambda_rows"]:
        plot_lambda(summary["lambda_rows"], folder / "delta_hr10_vs_lambda.png", f"{dataset}: ΔHR@10 vs λ")


class WallClock:
    """
    This invocation's wall time, and the clock time over every invocation of a run folder (`invocations.json`):
    invocations that ran in parallel count once (the union of their intervals). With `heartbeat` seconds, a daemon
    thread also saves every `heartbeat` seconds, so an invocation that is killed (a session's end) keeps all but the
    last beat of its time.
    """

    def __init__(self, output_dir: Path, command: str, heartbeat: float | None = None):
        import threading

        self.path = output_dir / "invocations.json"
        self.start = time.perf_counter()
        self.entry = {"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": 0.0}
        self.lock, self.stopped = threading.Lock(), threading.Event()
        if heartbeat is not None:
            if heartbeat <= 0:
                raise ValueError(f"heartbeat must be > 0 seconds, got {heartbeat}.")
            threading.Thread(target=self._beat, args=(heartbeat,), daemon=True, name="wall-clock").start()

    def stop(self) -> float:
        """Stops the heartbeat and saves a last time; returns what `save` returns."""
        self.stopped.set()
        return self.save()

    def _beat(self, interval: float) -> None:
        while not self.stopped.wait(interval):
            try:
                self.save()
            except OSError as error:  # a full disk must not kill the run it times
                logger.warning("could not save %s: %s", self.path, error)

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 1)

    def save(self) -> float:
        """Records this invocation's time so far beside the others' (read again: they may run in parallel)."""
        from adagrpo_trl.utils import atomic_write_json

        with self.lock:
            self.entry["seconds"] = self.seconds()
            key = (self.entry["started"], self.entry["command"])
            others = json.loads(self.path.read_text()) if self.path.exists() else []
            invocations = [entry for entry in others if (entry["started"], entry["command"]) != key] + [self.entry]
            invocations.sort(key=lambda entry: entry["started"])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, invocations)
        return busy_seconds(invocations)


def busy_seconds(invocations: Sequence[dict[str, Any]]) -> float:
    """Seconds of clock time during which at least one invocation ran (`started` ISO time + `seconds`)."""
    import datetime

    intervals = sorted(
        (start, start + entry["seconds"])
        for entry in invocations
        for start in [datetime.datetime.fromisoformat(entry["started"]).timestamp()]
    )
    total, end = 0.0, -math.inf
    for start, stop in intervals:
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return round(total, 1)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Selection, then every reward for every seed; writes the reports and returns the summary."""
    output_dir = Path(args.output_dir or f"runs/quality_v2/{args.dataset}" + (f"-{args.tag}" if args.tag else ""))
    results_dir = Path(args.results_dir) / args.dataset / (args.tag or "")
    command = "python benchmarks/quality_v2.py " + shlex.join(args.argv)
    clock = WallClock(output_dir, command, heartbeat=None if args.report_only else 60.0)
    try:
        return _run_benchmark(args, output_dir, results_dir, command, clock)
    finally:
        clock.stopped.set()  # also when a stage fails: no heartbeat outlives its invocation


def _run_benchmark(
    args: argparse.Namespace, output_dir: Path, results_dir: Path, command: str, clock: WallClock
) -> dict[str, Any]:
    recipe, sizing = base_recipe(args)
    rewards = reward_grid(args.bias_levels, args.rewards)
    selection_rewards = reward_grid(args.bias_levels)
    if args.selection_reward not in selection_rewards:
        raise ValueError(
            f"--selection_reward must be one of {sorted(selection_rewards)}, got {args.selection_reward!r}."
        )
    first = args.seeds[0]
    for seed in args.seeds:
        if args.reuse_from:
            link_reused_shared(Path(args.reuse_from) / f"seed{seed}" / "shared", output_dir / f"seed{seed}" / "shared")
        if args.environment_seed is not None and seed != args.environment_seed:
            environment = output_dir / f"seed{args.environment_seed}" / "shared"
            if args.reuse_from:
                link_reused_shared(Path(args.reuse_from) / f"seed{args.environment_seed}" / "shared", environment)
            link_environment(environment, output_dir / f"seed{seed}" / "shared")
        if not args.report_only:
            run_shared(recipe, output_dir / f"seed{seed}" / "shared", seed)
        elif not (output_dir / f"seed{seed}" / "shared" / "report" / "metrics_sft.json").exists():
            raise FileNotFoundError(
                f"--report_only: the shared stages of seed {seed} in {output_dir} are not complete."
            )
    clock.save()
    selection = select_hyperparameters(
        args,
        reward_recipe(recipe, selection_rewards[args.selection_reward]),
        output_dir / f"seed{first}" / "shared",
        first,
    )
    chosen = selection["chosen"]
    logger.info("chosen on validation: %s", chosen)
    recipe["train"].update(learning_rate=chosen["learning_rate"], beta=chosen["beta"])
    methods = method_grid(chosen["gate_tau"], chosen["gate_rho"], args.mixture_weights, args.methods)
    shared_info = {
        "command": command,
        "versions": versions(),
        "hardware": hardware_description(),
        "seeds": list(args.seeds),
        "train_overrides": args.train_overrides,
        "reused_from": args.reuse_from,
        "environment_seed": args.environment_seed,
        "sizing": sizing,
        "selection": selection,
    }
    reports = {}
    # seed -> a run whose finished nll_only control the other rewards reuse
    nll_only_runs = finished_nll_only_controls(args, recipe, methods, output_dir)
    for reward_name, reward in rewards.items():
        reward_start = time.perf_counter()
        this_recipe = reward_recipe(recipe, reward)
        per_seed: dict[int, dict[str, Any]] = {}
        best_mixture = ""  # chosen on the first seed's validation, before the other seeds run
        for seed in args.seeds:
            run_dir = output_dir / f"seed{seed}" / reward_name
            if seed == first or args.all_methods_all_seeds or args.report_only:
                seed_methods = methods  # --report_only: every run that finished, on every seed (filtered below)
            else:
                headline = {"nll_only", "adagrpo", best_mixture}
                seed_methods = {name: overrides for name, overrides in methods.items() if name in headline}
            if "nll_only" in seed_methods and seed in nll_only_runs:
                link_nll_only(nll_only_runs[seed], run_dir)
            if reward_name == args.selection_reward and seed == first:  # the selection runs are the first seed's
                for name, overrides in seed_methods.items():
                    expected = method_train_config(this_recipe, overrides, seed)
                    selection_runs = selection_folder(output_dir / f"seed{seed}")
                    link_twin(run_dir / "methods" / name, [selection_runs], expected, ignored_differences(overrides))
            if args.report_only:
                seed_methods = {name: o for name, o in seed_methods.items() if trained(run_dir, name)}
            check_trained_configs(run_dir, this_recipe, seed_methods, seed)
            run_reward(this_recipe, output_dir / f"seed{seed}" / "shared", run_dir, seed, seed_methods)
            if "nll_only" in seed_methods:
                nll_only_runs.setdefault(seed, run_dir)
            per_seed[seed] = {
                name: load_method(run_dir, name, sizing["prompts_per_step"]) for name in ["sft", *seed_methods]
            }
            if seed == first:
                best_mixture = best_mixture_on_validation(per_seed[seed])
            total = clock.save()
        reported = [name for name in methods if name in per_seed[first]]  # --report_only: the trained ones
        report = {
            "dataset": args.dataset,
            "tag": args.tag,
            "reward": reward_name,
            "lambda": reward["lambda"],
            "reward_settings": reward["train"],
            **shared_info,
            "headline_rows": [
                name for name in ("sft", "nll_only", best_mixture, "adagrpo") if name in ["sft", *reported]
            ],
            "settings": {
                "train": method_train_config(this_recipe, {}),
                "evaluate": this_recipe["evaluate"],
                "test_users": "all",
                "validation_users": args.eval_samples,
                "methods": {name: methods[name] for name in reported},
            },
            "best_mixture": best_mixture,
            "methods": aggregate(per_seed, reported, best_mixture),
            "step_time_ratio": step_time_ratio(per_seed),
            "reward_seconds_this_invocation": round(time.perf_counter() - reward_start, 1),
            "wall_seconds": clock.seconds(),
            "wall_seconds_all_invocations": total,
            "note": "metrics are fractions (means over the row's seeds); *_std: sample std over seeds; comparisons: "
            "paired bootstrap over ALL test users of the per-user HR@10 averaged over the seeds both rows ran "
            "(`seeds`; SFT: its only checkpoint; nll_only and best mixture: the same checkpoint kind); train_seconds: "
            "Σ TRL step_time from the run's log_history (validation excluded); wall_seconds: this invocation so far "
            "(resumed stages are not re-timed), wall_seconds_all_invocations: the clock time during which any "
            "invocation of the run folder ran (parallel invocations counted once).",
        }
        write_reward_report(report, results_dir / reward_name, args.dataset)
        reports[reward_name] = report
    summary = {
        "dataset": args.dataset,
        **shared_info,
        "rewards": list(reports),
        "best_mixture": {name: report["best_mixture"] for name, report in reports.items()},
        "lambda_rows": lambda_rows(reports),
        "wall_seconds": clock.seconds(),
        "wall_seconds_all_invocations": clock.stop(),
    }
    write_summary(summary, results_dir, args.dataset)
    return summary


def hardware_description() -> str:
    """`quality.hardware()` (the CPU), with the GPU named when one is visible."""
    import torch

    cpu = hardware()
    if torch.cuda.is_available():
        return cpu.replace(", no GPU", "") + f", GPU: {torch.cuda.get_device_name(0)}"
    return cpu


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    main()
