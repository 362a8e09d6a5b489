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
The end-to-end job: prepare → SFT → ranker → AdaGRPO and baselines → evaluation → a report folder.

Each stage writes its own folder under the run's `output_dir` and is skipped when that folder is already complete, so
a run that dies resumes where it stopped (delete a folder to redo its stage). A stage counts as complete when the file
it writes last exists, and those files are written atomically (temporary file + rename): `data/` is swapped in as a
whole, then `sft/sft_complete.json`, `ranker/quality_report.json`, `methods/<name>/log_history.json`,
`report/metrics_<name>.json` and `report/analysis_sft.json`. A kill mid-stage therefore redoes that stage, never
builds on a partial one. The recipe's sections are all checked (unknown keys, value types) before the first stage.
"""

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from trl import SFTConfig

from .adagrpo_config import AdaGRPOConfig
from .utils import atomic_write, atomic_write_json, atomic_write_text


logger = logging.getLogger(__name__)

REPORT_METRICS = ("hr@10", "ndcg@10", "hr@20", "hallucination", "constrained/hr@10")
SFT_DONE_FILE = "sft_complete.json"


def _split_section(name: str, section: dict[str, Any] | None, classes: tuple[type, ...]) -> list[dict[str, Any]]:
    """
    Splits a recipe section's keys among dataclasses and checks their types (see
    [`~adagrpo_trl.cli.check_recipe_values`]): an unknown key or a value of the wrong type raises an error naming the
    section and the key; strings such as `"1e-3"` are parsed to the field's type.
    """
    from .cli import check_recipe_values

    return check_recipe_values(section or {}, classes, f"the pipeline's {name!r} section")


def _check_sections(args: Any) -> None:
    """Checks every section of the recipe before the first stage runs, so a typo in `train` fails in seconds."""
    from .cli import (
        AnalyzeArguments,
        EvaluateArguments,
        PolicyArguments,
        PrepareArguments,
        RankerArguments,
        TrainScriptArguments,
    )

    _split_section("prepare", args.prepare, (PrepareArguments,))
    _split_section("sft", args.sft, (PolicyArguments, SFTConfig))
    _split_section("ranker", args.ranker, (RankerArguments,))
    _split_section("evaluate", args.evaluate, (EvaluateArguments,))
    if args.analyze is not None:
        _split_section("analyze", args.analyze, (AnalyzeArguments,))
    # An empty mapping is allowed: it runs the shared stages (data, SFT, ranker, SFT evaluation) only.
    if not isinstance(args.methods, dict):
        raise ValueError(f"The pipeline's 'methods' must map method names to overrides, got {args.methods!r}.")
    _split_section("train", args.train, (TrainScriptArguments, AdaGRPOConfig))
    for name, overrides in args.methods.items():
        if overrides is not None and not isinstance(overrides, dict):
            raise ValueError(f"The pipeline's 'methods.{name}' must be a mapping of overrides, got {overrides!r}.")
        _split_section(f"methods.{name}", overrides, (TrainScriptArguments, AdaGRPOConfig))


def _done(path: Path, marker: str) -> bool:
    return (path / marker).exists()


def _best_checkpoint(method_dir: Path) -> Path | None:
    """The best checkpoint recorded by the recommendation eval callback, if it is not the final model."""
    summary_path = method_dir / "best_checkpoint.json"
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text())
    best, final_step = summary.get("best_checkpoint"), summary.get("final_step")
    if best is None or summary.get("best_checkpoint_step") == final_step or not Path(best).exists():
        return None
    return Path(best)


def run_pipeline(args: Any) -> dict[str, Any]:
    """
    Runs every stage of a [`~adagrpo_trl.cli.PipelineArguments`] recipe and writes `report/results.json`,
    `report/results.md` and the PNG plots (HR@10-vs-hallucination frontier, training curves, gate rate). A method
    trained with `recommendation_eval_steps` is also evaluated at its best validation checkpoint (`<name>@best`), and
    the stratified analysis of the SFT model goes to `report/analysis_sft.json` (`analyze: null` skips it).

    A method whose training was killed resumes from the latest complete `checkpoint-<step>` in `methods/<name>` (when
    the recipe saves checkpoints, e.g. `save_strategy: steps`) and continues as the uninterrupted run would; delete
    the folder to train it again from the SFT model.

    Returns:
        `dict`: the metrics of every method (`sft` included) on the test split.
    """
    from .cli import (
        AnalyzeArguments,
        EvaluateArguments,
        PolicyArguments,
        PrepareArguments,
        RankerArguments,
        TrainScriptArguments,
        last_complete_checkpoint,
        run_analyze,
        run_evaluate,
        run_prepare,
        run_sft,
        run_train,
        run_train_ranker,
    )

    _check_sections(args)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        # The stages write and read shared folders (data, checkpoints, tokenizer) without synchronising processes.
        raise RuntimeError(
            f"`adagrpo-trl pipeline` runs its stages in one process, but it was launched with WORLD_SIZE={world_size}. "
            "Run the pipeline without `accelerate launch`, or run `prepare`, `sft`, `train-ranker` and `evaluate` in "
            "one process and only `train` under `accelerate launch` (see recipes/README.md)."
        )
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    data_dir, sft_dir, ranker_dir = root / "data", root / "sft", root / "ranker"
    timings: dict[str, float] = {}

    def timed(stage: str, fn, *fn_args):
        start = time.perf_counter()
        result = fn(*fn_args)
        timings[stage] = round(time.perf_counter() - start, 1)
        logger.info("Stage %s took %.1f s", stage, timings[stage])
        return result

    if not _done(data_dir, "catalog.json"):
        (prepare,) = _split_section("prepare", args.prepare, (PrepareArguments,))
        timed("prepare", run_prepare, PrepareArguments(**{"seed": args.seed, **prepare, "output_dir": str(data_dir)}))

    # The SFT model's own files are written non-atomically by transformers (config.json first): a marker written
    # atomically after them says the stage finished.
    if not _done(sft_dir, SFT_DONE_FILE):
        policy, sft = _split_section("sft", args.sft, (PolicyArguments, SFTConfig))
        sft_args = SFTConfig(**{"seed": args.seed, "report_to": "none", **sft, "output_dir": str(sft_dir)})
        timed("sft", run_sft, PolicyArguments(**{**policy, "data_dir": str(data_dir)}), sft_args)
        atomic_write_json(sft_dir / SFT_DONE_FILE, {"seconds": timings["sft"]})

    if not _done(ranker_dir, "quality_report.json"):
        (ranker,) = _split_section("ranker", args.ranker, (RankerArguments,))
        timed(
            "ranker",
            run_train_ranker,
            RankerArguments(**{"seed": args.seed, **ranker, "data_dir": str(data_dir), "output_dir": str(ranker_dir)}),
        )

    evaluate_options = dict(args.evaluate)
    (evaluate_section,) = _split_section("evaluate", evaluate_options, (EvaluateArguments,))
    results: dict[str, Any] = {}

    def evaluate(name: str, model_dir: Path) -> None:
        output = root / "report" / f"metrics_{name}.json"
        if output.exists():
            results[name] = json.loads(output.read_text())
            return
        evaluate_args = EvaluateArguments(
            **{**evaluate_section, "model_path": str(model_dir), "data_dir": str(data_dir), "output_file": str(output)}
        )
        results[name] = timed(f"evaluate/{name}", run_evaluate, evaluate_args)

    evaluate("sft", sft_dir)
    for name, overrides in args.methods.items():
        method_dir = root / "methods" / name
        if not _done(method_dir, "log_history.json"):
            script, config = _split_section(
                f"train (+ methods.{name})", {**args.train, **(overrides or {})}, (TrainScriptArguments, AdaGRPOConfig)
            )
            script_args = TrainScriptArguments(
                **{
                    "ranker_path": str(ranker_dir),
                    **script,
                    "data_dir": str(data_dir),
                    "model_name_or_path": str(sft_dir),
                }
            )
            # Training that died mid-way resumes from the method's latest complete checkpoint (when the recipe saves
            # checkpoints) instead of starting over; a resume_from_checkpoint in the recipe wins.
            resume = last_complete_checkpoint(method_dir)
            if resume is not None:
                logger.info("Method %s: resuming its training from %s.", name, resume)
            train_args = AdaGRPOConfig(
                **{
                    "seed": args.seed,
                    "report_to": "none",
                    "resume_from_checkpoint": resume,
                    **config,
                    "output_dir": str(method_dir),
                }
            )
            timed(f"train/{name}", run_train, script_args, train_args)
        evaluate(name, method_dir)
        best = _best_checkpoint(method_dir)
        if best is not None:
            evaluate(f"{name}@best", best)

    if args.analyze is not None:
        analysis_file = root / "report" / "analysis_sft.json"
        if not analysis_file.exists():
            (analyze,) = _split_section("analyze", args.analyze, (AnalyzeArguments,))
            analyze_args = AnalyzeArguments(
                **{
                    **analyze,
                    "model_path": str(sft_dir),
                    "data_dir": str(data_dir),
                    "ranker_path": str(ranker_dir),
                    "output_file": str(analysis_file),
                }
            )
            timed("analyze", run_analyze, analyze_args)

    report = write_report(root, results, list(args.methods), timings)
    return report["methods"]


def write_report(root: Path, results: dict[str, Any], methods: list[str], timings: dict[str, float]) -> dict[str, Any]:
    """Writes `report/results.json`, `report/results.md` and the plots; prints the markdown table."""
    report_dir = root / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    histories = {}
    for name in methods:
        path = root / "methods" / name / "log_history.json"
        if path.exists():
            histories[name] = json.loads(path.read_text())
    gate_rates = {
        name: _mean([log["gate/rate"] for log in history if "gate/rate" in log]) for name, history in histories.items()
    }
    report = {
        "methods": {
            name: {k: v for k, v in metrics.items() if k != "per_sample"} for name, metrics in results.items()
        },
        "gate_rate": gate_rates,
        "hr@10_vs_sft": _bootstrap_against(results, "sft", "hr@10"),
        "timings_seconds": timings,
    }
    atomic_write_json(report_dir / "results.json", report, indent=2)
    table = format_results_table(report["methods"], gate_rates, report["hr@10_vs_sft"])
    atomic_write_text(report_dir / "results.md", table + "\n")
    plot_report(report_dir, report["methods"], histories)
    print(table)  # noqa: T201
    return report


def _bootstrap_against(results: dict[str, Any], reference: str, metric: str) -> dict[str, dict[str, float]]:
    """Paired bootstrap (over test users) of each method's `metric` minus the reference's: difference and 95% CI."""
    from .evaluation import paired_bootstrap

    base = results.get(reference, {}).get("per_sample", {}).get(metric)
    if base is None:
        return {}
    comparisons = {}
    for name, metrics in results.items():
        values = metrics.get("per_sample", {}).get(metric)
        if name != reference and values is not None and len(values) == len(base):
            comparisons[name] = paired_bootstrap(np.asarray(base), np.asarray(values))
    return comparisons


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def format_results_table(
    methods: dict[str, dict[str, float]],
    gate_rates: dict[str, float | None],
    versus_sft: dict[str, dict[str, float]] | None = None,
) -> str:
    """The results as a markdown table (metrics in %, HR@10 difference to SFT with its 95% paired-bootstrap CI)."""
    versus_sft = versus_sft or {}
    header = "| method | " + " | ".join(REPORT_METRICS) + " | ΔHR@10 vs SFT [95% CI] | gate rate |"
    lines = [header, "|" + "---|" * (len(REPORT_METRICS) + 3)]
    for name, metrics in methods.items():
        cells = [f"{100 * metrics[m]:.2f}" if m in metrics else "n/a" for m in REPORT_METRICS]
        delta = versus_sft.get(name)
        if delta is None:
            delta_cell = "–"
        else:
            delta_cell = f"{100 * delta['diff']:+.2f} [{100 * delta['low']:+.2f}, {100 * delta['high']:+.2f}]"
        rate = gate_rates.get(name)
        rate_cell = "n/a" if rate is None else f"{rate:.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {delta_cell} | {rate_cell} |")
    return "\n".join(lines)


def plot_report(report_dir: Path, methods: dict[str, dict[str, float]], histories: dict[str, list[dict]]) -> None:
    """PNG plots: the HR@10-vs-hallucination frontier, training curves (NLL, reward) and the gate rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4))
    for name, metrics in methods.items():
        axis.scatter(100 * metrics["hallucination"], 100 * metrics["hr@10"], s=40)
        axis.annotate(name, (100 * metrics["hallucination"], 100 * metrics["hr@10"]), fontsize=8)
    axis.set_xlabel("hallucination (% of top-10, unconstrained)")
    axis.set_ylabel("HR@10 (%)")
    axis.set_title("HR@10 vs hallucination")
    figure.tight_layout()
    atomic_write(report_dir / "frontier.png", lambda path: figure.savefig(path, format="png", dpi=120))
    plt.close(figure)

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for name, history in histories.items():
        for axis, key in zip(axes, ("loss/nll", "reward", "gate/rate"), strict=True):
            points = [(log["step"], log[key]) for log in history if key in log and "step" in log]
            if points:
                axis.plot(*zip(*points, strict=True), label=name)
    for axis, title in zip(axes, ("ground-truth NLL", "reward", "gate rate"), strict=True):
        axis.set_title(title)
        axis.set_xlabel("step")
    if axes[0].lines:  # no method trained yet (e.g. a run of the shared stages only): nothing to label
        axes[0].legend(fontsize=8)
    figure.tight_layout()
    atomic_write(report_dir / "training_curves.png", lambda path: figure.savefig(path, format="png", dpi=120))
    plt.close(figure)
