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
The quality benchmark: does AdaGRPO beat SFT and the fixed NLL+GRPO mixtures on public data?

For each seed, one shared SFT checkpoint and one shared SASRec ranker (the `pipeline` recipe's `prepare`, `sft` and
`ranker` stages) and, from them, with the same rollout budget, steps and evaluation:

- `grpo`: pure GRPO (`gate_mode="always", nll_coef=0`);
- `mixture_<c>`: fixed NLL + c·GRPO mixtures (`gate_mode="always", nll_coef=1, grpo_coef=c`), weak to strong RL;
- `adagrpo` and its ablations `adagrpo_difficulty` and `adagrpo_discriminability`, with τ and ρ chosen beforehand by a
  small sweep on the **validation** split of the first seed (best validation HR@10 during training).

Every method is evaluated on the test users at its final checkpoint and at its best checkpoint by validation HR@10.
The report (`benchmarks/results/quality/<dataset>/<variant>/report.{json,md,png}`; the synthetic sweep:
`bias<level>.{json,md,png}` and `sweep.json` in that folder) holds means ± std over seeds, the paired-bootstrap
95% interval (over test users, each user's hits averaged over seeds) of the HR@10 difference to SFT and to the best
fixed mixture (chosen by validation HR@10), gate rates and wall times.

```bash
python benchmarks/quality.py --dataset ml-100k --seeds 0 1 2           # quality/ml-100k/lr1e-4/ (recipe's lr)
python benchmarks/quality.py --dataset ml-1m --seeds 0                  # the headline dataset (hours on 2 cores)
python benchmarks/quality.py --dataset synthetic --exposure_bias 0.2 0.5 0.8 0.95   # reward-noise sweep
```

Runs are resumable: every stage and every method is skipped when its output folder is complete. A variant of a table
(another normaliser, step budget) gets its own name and folder with `--tag` (without one, the variant is the RL
learning rate, e.g. `lr1e-5`), and can reuse the shared stages of an earlier run instead of retraining them:

```bash
python benchmarks/quality.py --dataset ml-100k --learning_rate 1e-5 --tag lr1e-5 --reuse_from runs/quality/ml-100k
```
"""

import argparse
import json
import logging
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adagrpo_trl.utils import atomic_write, atomic_write_json


logger = logging.getLogger("benchmarks.quality")

REPO = Path(__file__).resolve().parent.parent
RECIPES = {
    "ml-100k": REPO / "adagrpo_trl" / "recipes" / "ml-100k" / "pipeline.yaml",
    "ml-1m": REPO / "adagrpo_trl" / "recipes" / "ml-1m" / "pipeline.yaml",
    "synthetic": REPO / "adagrpo_trl" / "recipes" / "ml-100k" / "pipeline.yaml",
}
METRICS = ("hr@10", "ndcg@10", "hallucination")
MIXTURE_COEFS = (0.1, 0.3, 1.0, 3.0)
TAU_GRID = (0.125, 0.25, 0.5)
RHO_GRID = (0.25, 0.5)
# The synthetic reward-noise sweep: a simulator large enough for RL to matter, small enough for minutes per level.
SYNTHETIC_PREPARE = {
    "dataset": "synthetic",
    "synthetic_users": 2000,
    "synthetic_items": 400,
    "num_levels": 2,
    "max_history": 10,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(RECIPES), default="ml-100k")
    parser.add_argument("--recipe", default=None, help="Pipeline recipe (default: the dataset's pipeline.yaml).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=200, help="RL steps of every method.")
    parser.add_argument("--eval_steps", type=int, default=100, help="Validation HR@10 (and a checkpoint) every N.")
    parser.add_argument(
        "--learning_rate",
        type=float,
        default=None,
        help="RL learning rate of every method (default: the recipe's `train.learning_rate`).",
    )
    parser.add_argument(
        "--gate_normalization",
        choices=["diluted", "admitted"],
        default=None,
        help="Normaliser of the gated GRPO term (default: the recipe's, else `AdaGRPOConfig`'s `diluted`); the "
        "identity for the always-gated methods (pure GRPO, mixtures).",
    )
    parser.add_argument(
        "--eval_samples", type=int, default=None, help="Validation users per periodic evaluation (default: all)."
    )
    parser.add_argument("--mixture_coefs", type=float, nargs="+", default=list(MIXTURE_COEFS))
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="Run only these methods of the grid (default: all), e.g. `adagrpo mixture_0.1 mixture_1`.",
    )
    parser.add_argument("--tau_grid", type=float, nargs="+", default=list(TAU_GRID))
    parser.add_argument("--rho_grid", type=float, nargs="+", default=list(RHO_GRID))
    parser.add_argument(
        "--exposure_bias",
        type=float,
        nargs="+",
        default=None,
        help="Synthetic only: simulator exposure-bias levels (reward noise, low to high); one table per level.",
    )
    parser.add_argument(
        "--tag",
        default=None,
        help="Names a variant of the benchmark (e.g. `1000steps`): the report goes to `<results_dir>/<dataset>/<tag>/` "
        "(default variant: `lr<RL learning rate>`, e.g. `lr1e-4`) and the default run folder becomes "
        "`runs/quality/<dataset>-<tag>`, so a variant never overwrites, nor resumes from, the untagged run.",
    )
    parser.add_argument("--output_dir", default=None, help="Run folder (default: runs/quality/<dataset>[-<tag>]).")
    parser.add_argument(
        "--reuse_from",
        default=None,
        help="Another run folder of this benchmark (same dataset, recipe and seeds) whose shared stages (data, SFT "
        "model, ranker) every seed links instead of retraining them; they must be complete.",
    )
    parser.add_argument(
        "--reuse_methods",
        nargs="+",
        default=[],
        help="With --reuse_from: always-gated methods (pure GRPO, mixtures) linked from that folder instead of "
        "retrained, when their training settings (`AdaGRPOConfig` fields and seed) equal this run's except "
        "`gate_normalization` (the identity for them); the validation settings (`--eval_samples`) are not checked.",
    )
    parser.add_argument(
        "--results_dir",
        default="benchmarks/results/quality",
        help="Root of the committed reports: each goes to `<results_dir>/<dataset>/<variant>/`.",
    )
    args = parser.parse_args(argv)
    if args.tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.tag):
        parser.error(f"--tag must be letters, digits, '.', '_' or '-' (it names files), got {args.tag!r}.")
    if args.reuse_methods and args.reuse_from is None:
        parser.error("--reuse_methods needs --reuse_from (the run folder the methods come from).")
    return args


def format_learning_rate(learning_rate: float) -> str:
    """`1e-4` for 0.0001, `3e-5` for 3e-05, `1.5e-5` for 1.5e-05: the learning rate as a folder name."""
    mantissa, exponent = f"{float(learning_rate):e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def report_dir(args: argparse.Namespace, recipe: dict[str, Any]) -> Path:
    """
    `<results_dir>/<dataset>/<variant>`: the folder of a report. The variant is `--tag`, else `lr<RL learning rate>`
    (the recipe's `train.learning_rate` after `--learning_rate`), else `default`.
    """
    if args.tag:
        variant = args.tag
    else:
        learning_rate = recipe.get("train", {}).get("learning_rate")
        variant = "default" if learning_rate is None else f"lr{format_learning_rate(learning_rate)}"
    return Path(args.results_dir) / args.dataset / variant


def report_stem(args: argparse.Namespace, level: str | None = None) -> str:
    """`report`, or the sweep level's name (`bias0.2`, `sweep`): the file name of a report in its folder."""
    return level or "report"


# ---------------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------------


def base_recipe(args: argparse.Namespace) -> dict[str, Any]:
    from adagrpo_trl.scripts.recipe import load_recipe

    recipe = load_recipe(Path(args.recipe or RECIPES[args.dataset]), "pipeline")
    train = dict(recipe.get("train", {}))
    train.update(
        max_steps=args.max_steps,
        save_strategy="steps",
        save_steps=args.eval_steps,
        recommendation_eval_steps=args.eval_steps,
        recommendation_eval_samples=args.eval_samples,
    )
    if args.learning_rate is not None:
        if args.learning_rate <= 0:
            raise ValueError(f"--learning_rate must be > 0, got {args.learning_rate}.")
        train["learning_rate"] = args.learning_rate
    if args.gate_normalization is not None:
        train["gate_normalization"] = args.gate_normalization
    recipe["train"] = train
    recipe["analyze"] = None
    return recipe


def method_grid(args: argparse.Namespace, tau: float, rho: float) -> dict[str, dict[str, Any]]:
    methods: dict[str, dict[str, Any]] = {"grpo": {"gate_mode": "always", "nll_coef": 0.0}}
    for coef in args.mixture_coefs:
        methods[f"mixture_{coef:g}"] = {"gate_mode": "always", "nll_coef": 1.0, "grpo_coef": coef}
    for name, mode in (("adagrpo", "adaptive"), ("adagrpo_difficulty", "difficulty")):
        methods[name] = {"gate_mode": mode, "gate_tau": tau, "gate_rho": rho}
    methods["adagrpo_discriminability"] = {"gate_mode": "discriminability", "gate_tau": tau, "gate_rho": rho}
    if args.methods is not None:
        unknown = sorted(set(args.methods) - set(methods))
        if unknown:
            raise ValueError(f"--methods: unknown method(s) {unknown}; the grid has {sorted(methods)}.")
        methods = {name: overrides for name, overrides in methods.items() if name in args.methods}
        if not any(name.startswith("mixture_") for name in methods):
            raise ValueError("--methods must keep at least one fixed mixture (the comparison the report is about).")
    return methods


def pipeline_args(recipe: dict[str, Any], output_dir: Path, seed: int, methods: dict[str, Any]):
    from adagrpo_trl.scripts.configs import PipelineArguments

    return PipelineArguments(**{**recipe, "output_dir": str(output_dir), "seed": seed, "methods": methods})


def train_for_selection(run_dir: Path, recipe: dict[str, Any], seed: int, name: str, overrides: dict) -> float:
    """Trains one (τ, ρ) candidate from the seed's shared SFT model; returns its best validation HR@10."""
    from adagrpo_trl.adagrpo_config import AdaGRPOConfig
    from adagrpo_trl.scripts.configs import TrainScriptArguments
    from adagrpo_trl.scripts.recipe import split_recipe_section
    from adagrpo_trl.scripts.train import run_train

    method_dir = run_dir / "selection" / name
    if not (method_dir / "log_history.json").exists():
        script, config = split_recipe_section("train", {**recipe["train"], **overrides})
        script_args = TrainScriptArguments(
            **{
                "ranker_path": str(run_dir / "ranker"),
                **script,
                "data_dir": str(run_dir / "data"),
                "model_name_or_path": str(run_dir / "sft"),
            }
        )
        # Only the validation metrics are needed: no model is kept beyond the checkpoints the callback reads.
        train_args = AdaGRPOConfig(**{"seed": seed, "report_to": "none", **config, "output_dir": str(method_dir)})
        run_train(script_args, train_args)
    return best_validation(method_dir)


def best_validation(method_dir: Path, metric: str = "eval_hr@10") -> float:
    history = json.loads((method_dir / "log_history.json").read_text())
    values = [log[metric] for log in history if metric in log]
    if not values:
        raise ValueError(f"{method_dir}/log_history.json has no {metric!r}: was recommendation_eval_steps set?")
    return max(values)


def select_tau_rho(args: argparse.Namespace, recipe: dict[str, Any], run_dir: Path, seed: int) -> dict[str, Any]:
    """The small (τ, ρ) sweep on the validation split of one seed; returns the grid and the chosen pair."""
    # The shared stages (data, SFT, ranker) and the SFT evaluation, without any method yet.
    from adagrpo_trl.scripts.pipeline import run_pipeline

    run_pipeline(pipeline_args(recipe, run_dir, seed, {}))
    if len(args.tau_grid) == 1 and len(args.rho_grid) == 1:
        # A single candidate: nothing to select, no training spent on it.
        chosen = {"gate_tau": args.tau_grid[0], "gate_rho": args.rho_grid[0], "validation_hr@10": None}
        return {"seed": seed, "split": "validation", "grid": [], "chosen": chosen}
    grid = []
    for tau in args.tau_grid:
        for rho in args.rho_grid:
            name = f"adagrpo_tau{tau:g}_rho{rho:g}"
            overrides = {"gate_mode": "adaptive", "gate_tau": tau, "gate_rho": rho}
            start = time.perf_counter()
            value = train_for_selection(run_dir, recipe, seed, name, overrides)
            grid.append({"gate_tau": tau, "gate_rho": rho, "validation_hr@10": value})
            logger.info("selection %s: validation HR@10 %.4f (%.0f s)", name, value, time.perf_counter() - start)
    # Ties go to the first candidate of the grid (the smaller τ, then the smaller ρ).
    chosen = max(grid, key=lambda row: row["validation_hr@10"])
    return {"seed": seed, "split": "validation", "grid": grid, "chosen": chosen}


SHARED_STAGES = {"data": "catalog.json", "sft": "sft_complete.json", "ranker": "quality_report.json"}


def link_shared_stages(
    source_run: Path, run_dir: Path, stages: Sequence[str] = tuple(SHARED_STAGES), flag: str = "--reuse_from"
) -> list[str]:
    """
    Links a seed's complete shared `stages` (default: data, SFT model, ranker) from another run folder of this
    benchmark into `run_dir`, where they are missing; returns the stages it linked. A stage that is incomplete in the
    source is refused, before anything is linked, rather than linked: the pipeline would otherwise retrain it *inside*
    the source run. `flag` names the option in the error.
    """
    for stage in stages:
        marker = SHARED_STAGES[stage]
        if not (source_run / stage / marker).exists():
            raise FileNotFoundError(
                f"{flag}: {source_run / stage} is not a complete {stage!r} stage ({marker} is missing); finish that "
                f"run first or drop {flag}."
            )
    linked = []
    for stage in stages:
        target = run_dir / stage
        if target.is_symlink() or target.exists():
            continue  # already linked (a resumed run) or trained here
        run_dir.mkdir(parents=True, exist_ok=True)
        target.symlink_to((source_run / stage).resolve(), target_is_directory=True)
        linked.append(stage)
    return linked


def link_reused_method(
    source_run: Path, run_dir: Path, name: str, recipe: dict[str, Any], overrides: dict[str, Any], seed: int
) -> None:
    """
    Links one always-gated method's trained folder from another run folder, after checking that it was trained with
    this run's settings: the seed and every `AdaGRPOConfig` field of the recipe's `train` section and the method's
    overrides, except `gate_normalization`, which is the identity when every prompt is admitted.
    """
    import dataclasses

    import torch

    from adagrpo_trl.adagrpo_config import AdaGRPOConfig

    if overrides.get("gate_mode") != "always":
        raise ValueError(
            f"--reuse_methods: {name!r} is not always-gated (gate_mode={overrides.get('gate_mode')!r}); only pure GRPO "
            "and the fixed mixtures can be reused."
        )
    target = run_dir / "methods" / name
    if target.is_symlink() or (target / "log_history.json").exists():
        return
    source = source_run / "methods" / name
    if not (source / "log_history.json").exists():
        raise FileNotFoundError(f"--reuse_methods: {source} is not a trained method (log_history.json is missing).")
    trained = torch.load(source / "training_args.bin", weights_only=False)
    fields = {field.name for field in dataclasses.fields(AdaGRPOConfig)}
    expected = {"seed": seed, **recipe["train"], **overrides}
    for key, value in expected.items():
        if key not in fields or key == "gate_normalization":
            continue
        got = getattr(trained, key)
        got = getattr(got, "value", got)  # transformers turns some strings into enums
        if got != value:
            raise ValueError(
                f"--reuse_methods: {source} was trained with {key}={got!r}, this run uses {key}={value!r}; retrain it "
                "here (drop it from --reuse_methods)."
            )
    if target.exists():
        raise FileExistsError(
            f"--reuse_methods: {target} holds an unfinished training run; delete it to link {source}."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve(), target_is_directory=True)


def run_seed(recipe: dict[str, Any], run_dir: Path, seed: int, methods: dict[str, Any]) -> dict[str, Any]:
    from adagrpo_trl.scripts.pipeline import run_pipeline

    return run_pipeline(pipeline_args(recipe, run_dir, seed, methods))


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------------------------------


def load_seed(run_dir: Path, methods: list[str]) -> dict[str, Any]:
    """Per method of one seed's run: test metrics at the final and best checkpoints, per-user hits, gate rate, times."""
    report = run_dir / "report"
    timings = json.loads((report / "results.json").read_text()).get("timings_seconds", {})
    seed_results = {}
    for name in ["sft", *methods]:
        final = json.loads((report / f"metrics_{name}.json").read_text())
        best_path = report / f"metrics_{name}@best.json"
        best = json.loads(best_path.read_text()) if best_path.exists() else final
        entry: dict[str, Any] = {"final": final, "best": best}
        history_path = run_dir / "methods" / name / "log_history.json"
        if history_path.exists():
            history = json.loads(history_path.read_text())
            rates = [log["gate/rate"] for log in history if "gate/rate" in log]
            entry["gate_rate"] = float(np.mean(rates)) if rates else None
            entry["validation_hr@10"] = best_validation(run_dir / "methods" / name)
            summary_path = run_dir / "methods" / name / "best_checkpoint.json"
            if summary_path.exists():
                entry["best_step"] = json.loads(summary_path.read_text()).get("best_checkpoint_step")
        entry["train_seconds"] = timings.get(f"train/{name}")
        seed_results[name] = entry
    return seed_results


def _per_user(per_seed: list[dict[str, Any]], name: str, checkpoint: str) -> np.ndarray:
    """Each test user's HR@10 averaged over seeds (users are the same across seeds: a leave-one-out split)."""
    return np.mean([np.asarray(seed[name][checkpoint]["per_sample"]["hr@10"]) for seed in per_seed], axis=0)


def aggregate(per_seed: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    from adagrpo_trl.evaluation import paired_bootstrap

    mixtures = [name for name in methods if name.startswith("mixture_")]
    # The best fixed mixture is chosen on validation (mean over seeds of its best validation HR@10), never on test.
    best_mixture = max(mixtures, key=lambda name: np.mean([seed[name]["validation_hr@10"] for seed in per_seed]))
    table: dict[str, Any] = {}
    for name in ["sft", *methods]:
        entry: dict[str, Any] = {"seeds": len(per_seed)}
        for checkpoint in ("best", "final"):
            values = {m: [seed[name][checkpoint][m] for seed in per_seed] for m in METRICS}
            entry[checkpoint] = {m: float(np.mean(v)) for m, v in values.items()}
            entry[f"{checkpoint}_std"] = {
                m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in values.items()
            }
            comparisons = {}
            for reference in ("sft", best_mixture):
                if reference != name:
                    result = paired_bootstrap(
                        _per_user(per_seed, reference, "final" if reference == "sft" else checkpoint),
                        _per_user(per_seed, name, checkpoint),
                    )
                    comparisons[f"hr@10_vs_{'sft' if reference == 'sft' else 'best_mixture'}"] = {
                        k: float(v) for k, v in result.items()
                    }
            entry[f"{checkpoint}_comparisons"] = comparisons
        if name != "sft":
            rates = [seed[name].get("gate_rate") for seed in per_seed]
            entry["gate_rate"] = float(np.mean(rates)) if None not in rates else None
            entry["validation_hr@10"] = float(np.mean([seed[name]["validation_hr@10"] for seed in per_seed]))
            entry["best_step"] = [seed[name].get("best_step") for seed in per_seed]
            seconds = [seed[name].get("train_seconds") for seed in per_seed]
            entry["train_seconds"] = float(np.mean(seconds)) if None not in seconds else None
        table[name] = entry
    return {"methods": table, "best_mixture": best_mixture}


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------

LABELS = {
    "sft": "SFT",
    "nll_only": "NLL only",
    "grpo": "pure GRPO",
    "adagrpo": "AdaGRPO",
    "adagrpo_difficulty": "AdaGRPO, difficulty only",
    "adagrpo_discriminability": "AdaGRPO, discriminability only",
}


def label(name: str) -> str:
    if name.startswith("mixture_"):
        return f"NLL + {name.removeprefix('mixture_')}·GRPO"
    return LABELS.get(name, name)


def format_table(report: dict[str, Any]) -> str:
    methods = report["methods"]
    seeds = methods["sft"]["seeds"]
    lines = [
        "| method | checkpoint | HR@10 | NDCG@10 | hallucination | ΔHR@10 vs SFT [95% CI] "
        "| ΔHR@10 vs best mixture [95% CI] | gate rate | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(entry: dict[str, Any], checkpoint: str, metric: str) -> str:
        mean = 100 * entry[checkpoint][metric]
        if seeds > 1:
            return f"{mean:.2f} ± {100 * entry[f'{checkpoint}_std'][metric]:.2f}"
        return f"{mean:.2f}"

    def delta(entry: dict[str, Any], checkpoint: str, key: str) -> str:
        result = entry[f"{checkpoint}_comparisons"].get(key)
        if result is None:
            return "–"
        return f"{100 * result['diff']:+.2f} [{100 * result['low']:+.2f}, {100 * result['high']:+.2f}]"

    for name, entry in methods.items():
        for checkpoint in ("final", "best") if name != "sft" else ("final",):
            rate = entry.get("gate_rate")
            seconds = entry.get("train_seconds")
            lines.append(
                f"| {label(name)} | {checkpoint if name != 'sft' else '–'} | "
                + " | ".join(cell(entry, checkpoint, m) for m in METRICS)
                + f" | {delta(entry, checkpoint, 'hr@10_vs_sft')} | {delta(entry, checkpoint, 'hr@10_vs_best_mixture')}"
                + f" | {'' if rate is None or checkpoint == 'best' else f'{rate:.3f}'}"
                + f" | {'' if seconds is None or checkpoint == 'best' else f'{seconds:.0f}'} |"
            )
    return "\n".join(lines)


def plot_frontier(report: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    methods = report["methods"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, checkpoint in zip(axes, ("final", "best"), strict=True):
        mixtures = sorted((n for n in methods if n.startswith("mixture_")), key=lambda n: float(n.split("_")[1]))
        xs = [100 * methods[n][checkpoint]["hallucination"] for n in mixtures]
        ys = [100 * methods[n][checkpoint]["hr@10"] for n in mixtures]
        axis.plot(xs, ys, "o-", color="tab:gray", label="fixed NLL + c·GRPO")
        for name, x, y in zip(mixtures, xs, ys, strict=True):
            axis.annotate(f"c={name.split('_')[1]}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        styles = {
            "sft": ("s", "black"),
            "nll_only": ("P", "tab:green"),  # quality_v2.py's same-compute control
            "grpo": ("v", "tab:red"),
            "adagrpo": ("*", "tab:blue"),
            "adagrpo_difficulty": ("^", "tab:cyan"),
            "adagrpo_discriminability": ("D", "tab:purple"),
        }
        for name, (marker, color) in styles.items():
            if name not in methods:
                continue
            point = methods[name]["final" if name == "sft" else checkpoint]
            std = methods[name][f"{'final' if name == 'sft' else checkpoint}_std"]["hr@10"]
            axis.errorbar(
                100 * point["hallucination"],
                100 * point["hr@10"],
                yerr=100 * std,
                fmt=marker,
                color=color,
                markersize=10 if name == "adagrpo" else 7,
                capsize=3,
                label=label(name),
            )
        # linear up to 0.1%, logarithmic beyond: the NLL-anchored rows sit within 0.1% and pure GRPO can reach 17%
        axis.set_xscale("symlog", linthresh=0.1)
        axis.set_xlim(left=0.0)
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_xlabel("hallucination (% of top-10 SIDs, unconstrained; log above 0.1)")
        axis.set_title(f"{checkpoint} checkpoint")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("HR@10 (%), mean ± std over seeds")
    axes[1].legend(fontsize=7, loc="best")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    plt.close(figure)


def ranked_from_scores(scores: np.ndarray, item_ids: Sequence[str], k: int) -> list[list[str]]:
    """The `k` best-scored items per row, best first (ties: lower column first), as the evaluation's ranked lists."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[item_ids[column] for column in row] for row in order]


def parse_overrides(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """
    `["a=1", "b=[x, y]"]` -> `{"a": 1, "b": ["x", "y"]}`: the `KEY=VALUE` pairs of a repeatable override flag, values
    read as YAML; a pair without `=` or without a key is an error naming `flag` and the pair.
    """
    import yaml

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}.")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def run_command(argv: list[str]) -> float:
    """Runs a command (echoed first), failing on a non-zero exit; returns its wall-clock seconds."""
    print("+", " ".join(argv), flush=True)  # noqa: T201
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - start


def versions() -> dict[str, str]:
    import accelerate
    import datasets
    import torch
    import transformers
    import trl

    import adagrpo_trl

    try:
        commit = subprocess.run(
            ["git", "-C", str(Path(adagrpo_trl.__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "adagrpo_trl": getattr(adagrpo_trl, "__version__", "unknown"),
        "commit": commit,
        "trl": trl.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def hardware() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU" if os.cpu_count() else cpu


def benchmark(
    args: argparse.Namespace,
    dataset_tag: str,
    recipe: dict[str, Any],
    output_dir: Path,
    reuse_dir: Path | None = None,
) -> dict[str, Any]:
    """
    Selection on the first seed's validation split, then every method for every seed; returns the report. With
    `reuse_dir`, the seeds' shared stages (and `args.reuse_methods`) are linked from that run folder first.
    """
    start = time.perf_counter()
    if reuse_dir is not None:
        if reuse_dir.resolve() == output_dir.resolve():
            raise ValueError(f"--reuse_from {reuse_dir} is this run's own folder; give another run's folder.")
        for seed in args.seeds:
            link_shared_stages(reuse_dir / f"seed{seed}", output_dir / f"seed{seed}")
    selection = select_tau_rho(args, recipe, output_dir / f"seed{args.seeds[0]}", args.seeds[0])
    tau, rho = selection["chosen"]["gate_tau"], selection["chosen"]["gate_rho"]
    logger.info("chosen on validation: gate_tau=%g gate_rho=%g", tau, rho)
    methods = method_grid(args, tau, rho)
    unknown = sorted(set(args.reuse_methods) - set(methods))
    if unknown:
        raise ValueError(f"--reuse_methods: {unknown} are not methods of this run ({sorted(methods)}).")
    for seed in args.seeds:
        for name in args.reuse_methods:
            link_reused_method(
                reuse_dir / f"seed{seed}", output_dir / f"seed{seed}", name, recipe, methods[name], seed
            )
    per_seed = []
    for seed in args.seeds:
        run_dir = output_dir / f"seed{seed}"
        run_seed(recipe, run_dir, seed, methods)
        per_seed.append(load_seed(run_dir, list(methods)))
    report = aggregate(per_seed, list(methods))
    wall = time.perf_counter() - start
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    return {
        "dataset": dataset_tag,
        "tag": args.tag,
        "command": command,
        "reused_from": None if reuse_dir is None else {"run_dir": str(reuse_dir), "methods": list(args.reuse_methods)},
        "versions": versions(),
        "hardware": hardware(),
        "seeds": list(args.seeds),
        "settings": {
            "max_steps": args.max_steps,
            "eval_steps": args.eval_steps,
            "validation_users": args.eval_samples or "all",
            "train": {k: v for k, v in recipe["train"].items() if not k.startswith("recommendation_")},
            "methods": methods,
        },
        "selection": selection,
        "best_mixture": report["best_mixture"],
        "methods": report["methods"],
        "wall_seconds": round(wall, 1),
        "note": "metrics are fractions (means over seeds); *_std: sample std over seeds; comparisons: paired "
        "bootstrap over test users of the per-user HR@10 averaged over seeds (SFT: its only checkpoint; best "
        "mixture: same checkpoint kind); wall_seconds covers this invocation only (resumed stages are not re-timed).",
    }


def write_outputs(report: dict[str, Any], results_dir: Path, stem: str, title: str) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results_dir / f"{stem}.json", report, indent=2)
    table = format_table(report)
    chosen = report["selection"]["chosen"]
    header = (
        f"{title}: {report['hardware']}; seeds {report['seeds']}; {report['settings']['max_steps']} RL steps per "
        f"method; τ={chosen['gate_tau']:g}, ρ={chosen['gate_rho']:g} chosen on validation; best fixed mixture (by "
        f"validation): {label(report['best_mixture'])}; wall time {report['wall_seconds'] / 60:.0f} min.\n\n"
    )
    temporary = results_dir / f"{stem}.md.tmp"
    temporary.write_text(header + table + "\n")
    temporary.replace(results_dir / f"{stem}.md")
    plot_frontier(report, results_dir / f"{stem}.png", title)
    print(header + table)  # noqa: T201


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    output_dir = Path(args.output_dir or f"runs/quality/{args.dataset}" + (f"-{args.tag}" if args.tag else ""))
    reuse_dir = None if args.reuse_from is None else Path(args.reuse_from)
    recipe = base_recipe(args)
    if args.dataset != "synthetic":
        if args.exposure_bias is not None:
            raise ValueError("--exposure_bias is only for --dataset synthetic.")
        report = benchmark(args, args.dataset, recipe, output_dir, reuse_dir)
        write_outputs(report, report_dir(args, recipe), report_stem(args), f"{args.dataset} quality benchmark")
        return
    levels = args.exposure_bias or [0.2, 0.5, 0.8, 0.95]
    sweep = []
    for bias in levels:
        # The recipe's own `prepare` section when one is given (e.g. the tiny test recipe), else SYNTHETIC_PREPARE.
        prepare = recipe["prepare"] if args.recipe else SYNTHETIC_PREPARE
        level_recipe = {**recipe, "prepare": {**prepare, "dataset": "synthetic", "exposure_bias": bias}}
        tag = f"synthetic_bias{bias:g}"
        level_reuse = None if reuse_dir is None else reuse_dir / f"bias{bias:g}"
        report = benchmark(args, tag, level_recipe, output_dir / f"bias{bias:g}", level_reuse)
        write_outputs(
            report, report_dir(args, recipe), report_stem(args, f"bias{bias:g}"), f"synthetic, exposure bias {bias:g}"
        )
        methods = report["methods"]
        best_mixture = report["best_mixture"]
        sweep.append(
            {
                "exposure_bias": bias,
                "sft": methods["sft"]["final"]["hr@10"],
                "adagrpo": {c: methods["adagrpo"][c]["hr@10"] for c in ("best", "final")},
                "best_mixture": best_mixture,
                "best_mixture_hr@10": {c: methods[best_mixture][c]["hr@10"] for c in ("best", "final")},
                "adagrpo_vs_best_mixture": {
                    c: methods["adagrpo"][f"{c}_comparisons"]["hr@10_vs_best_mixture"] for c in ("best", "final")
                },
            }
        )
    atomic_write_json(
        report_dir(args, recipe) / f"{report_stem(args, 'sweep')}.json",
        {"command": "python benchmarks/quality.py " + " ".join(sys.argv[1:]), "levels": sweep},
        indent=2,
    )


if __name__ == "__main__":
    main()
