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
`adagrpo-trl pipeline`, the end-to-end job: prepare → SFT → ranker → AdaGRPO and baselines → evaluation → a report folder.

Each stage writes its own folder under the run's `output_dir` and is skipped when that folder is already complete, so
a run that dies resumes where it stopped (delete a folder to redo its stage). A stage counts as complete when the file
it writes last exists, and those files are written atomically (temporary file + rename): `data/` is swapped in as a
whole, then `sft/sft_complete.json`, `ranker/quality_report.json`, `methods/<name>/log_history.json`,
`report/metrics_<name>.json` and `report/analysis_sft.json`. A kill mid-stage therefore redoes that stage, never
builds on a partial one. The recipe's sections are all checked (unknown keys, value types) before the first stage, and
a method folder whose run trained with other arguments than the recipe now asks for is refused before anything trains
([`check_method_runs`]): skipped or resumed, it would be reported under the new arguments.

    adagrpo-trl pipeline --config ml-100k                     # the packaged ml-100k/pipeline.yaml
    adagrpo-trl pipeline --config ml-1m/pipeline_cpu --output_dir runs/ml-1m-cpu
    python -m adagrpo_trl.scripts.pipeline --config my_pipeline.yaml

A pipeline recipe either holds every stage's keys in sections (`prepare:`, `sft:`, `train:` + `methods:`, ...) or names
each stage's own recipe (`stages: {sft: sft.yaml}`, `methods: {grpo: train/grpo.yaml}`), the files a user runs the
stages with one by one (see [`~adagrpo_trl.scripts.recipe.compose_pipeline_recipe`]).
"""

import json
import logging
import os
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, NamedTuple

from trl import GRPOConfig, SFTConfig

from ..adagrpo_config import AdaGRPOConfig
from ..checkpoints import last_complete_checkpoint, saved_training_args, training_args_differences
from ..utils import atomic_write_json
from .analyze import run_analyze
from .configs import (
    AnalyzeArguments,
    EvaluateArguments,
    PipelineArguments,
    PrepareArguments,
    RankerArguments,
    SFTScriptArguments,
    TrainScriptArguments,
)
from .evaluate import run_evaluate
from .prepare import run_prepare
from .recipe import RecipeParser, check_pipeline_sections, make_command_parser, split_recipe_section
from .report import write_report
from .sft import run_sft
from .train import run_train
from .train_ranker import run_train_ranker
from .utils import setup_logging


logger = logging.getLogger(__name__)

DESCRIPTION = "prepare -> SFT -> ranker -> methods -> evaluation -> report"
SFT_DONE_FILE = "sft_complete.json"


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


# Training arguments that say where a run logs and saves, not what it trains: a rerun may change them.
BOOKKEEPING_KEYS = frozenset(
    {
        "output_dir",
        "logging_dir",
        "run_name",
        "report_to",
        "resume_from_checkpoint",
        "logging_steps",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "disable_tqdm",
        "log_level",
    }
)


class _MethodPlan(NamedTuple):
    script_args: TrainScriptArguments
    train_args: AdaGRPOConfig
    recipe_keys: set[str]  # the training keys the recipe sets


def _method_arguments(args: PipelineArguments, root: Path, name: str, overrides: dict[str, Any] | None) -> _MethodPlan:
    """
    A method's `train` arguments: the pipeline's `train` section with the method's overrides, on this run's stages,
    and the training keys the recipe sets.
    """
    data_dir, sft_dir, ranker_dir, method_dir = root / "data", root / "sft", root / "ranker", root / "methods" / name
    script, config = split_recipe_section(
        "train", {**args.train, **(overrides or {})}, f"the pipeline's 'train (+ methods.{name})' section"
    )
    script_args = TrainScriptArguments(
        **{"ranker_path": str(ranker_dir), **script, "data_dir": str(data_dir), "model_name_or_path": str(sft_dir)}
    )
    # Training that died mid-way resumes from the method's latest complete checkpoint (when the recipe saves
    # checkpoints) instead of starting over; a resume_from_checkpoint in the recipe wins.
    resume = None if _done(method_dir, "log_history.json") else last_complete_checkpoint(method_dir)
    train_args = AdaGRPOConfig(
        **{
            "seed": args.seed,
            "report_to": "none",
            "resume_from_checkpoint": resume,
            **config,
            "output_dir": str(method_dir),
        }
    )
    return _MethodPlan(script_args, train_args, set(config))


def check_method_runs(wanted: dict[Path, tuple[AdaGRPOConfig, Collection[str]]]) -> None:
    """
    Refuses, before anything trains, a method folder whose run (finished, or a checkpoint a rerun would resume) trained
    with other arguments than the recipe now asks for: skipped or resumed, it would be reported under the new ones. The
    keys compared are those the recipe sets (`train` + the method's section), the `seed` and every AdaGRPO key
    ([`AdaGRPOConfig`]'s own fields), less `BOOKKEEPING_KEYS`; script keys (the reward, the ranker) are not saved by
    the run and not compared. A method folder that is a symbolic link (a run reused on purpose, e.g. by the benchmark)
    is not checked.

    Args:
        wanted (`dict[Path, tuple[AdaGRPOConfig, Collection[str]]]`):
            Each method folder, the arguments the pipeline would train it with and the training keys the recipe sets.

    Raises:
        `ValueError`: naming each folder and its keys (saved value, wanted value), and how to go on.
    """
    own_keys = set(AdaGRPOConfig.__dataclass_fields__) - set(GRPOConfig.__dataclass_fields__)
    wrong = {}
    for method_dir, (train_args, set_keys) in wanted.items():
        if method_dir.is_symlink():
            logger.info("Method folder %s is a link to %s: reused as it is.", method_dir, method_dir.resolve())
            continue
        saved = saved_training_args(method_dir)
        if saved is None:
            continue
        keys = sorted((set(set_keys) | own_keys | {"seed"}) - BOOKKEEPING_KEYS)
        differences = training_args_differences(saved, train_args, keys)
        if differences:
            wrong[str(method_dir)] = differences
    if wrong:
        listed = "; ".join(f"{folder}: {differences}" for folder, differences in wrong.items())
        raise ValueError(
            f"Method runs trained with other arguments than the recipe asks for (saved, wanted): {listed}. Delete "
            "those folders to train them again with the recipe's arguments, use another --output_dir, or set the "
            "recipe back to the values they ran with."
        )


def run_pipeline(args: PipelineArguments) -> dict[str, Any]:
    """
    Runs every stage of a [`~adagrpo_trl.scripts.configs.PipelineArguments`] recipe and writes `report/results.json`,
    `report/results.md` and the PNG plots (HR@10-vs-hallucination frontier, training curves, gate rate). A method
    trained with `recommendation_eval_steps` is also evaluated at its best validation checkpoint (`<name>@best`), and
    the stratified analysis of the SFT model goes to `report/analysis_sft.json` (`analyze: null` skips it).

    A method whose training was killed resumes from the latest complete `checkpoint-<step>` in `methods/<name>` (when
    the recipe saves checkpoints, e.g. `save_strategy: steps`) and continues as the uninterrupted run would; delete
    the folder to train it again from the SFT model. A finished or resumable method run that trained with other
    arguments than the recipe's is refused ([`check_method_runs`], `ValueError`).

    Returns:
        `dict`: the metrics of every method (`sft` included) on the test split.
    """
    check_pipeline_sections(args)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        # The stages write and read shared folders (data, checkpoints, tokenizer) without synchronising processes.
        raise RuntimeError(
            f"`adagrpo-trl pipeline` runs its stages in one process, but it was launched with WORLD_SIZE={world_size}. "
            "Run the pipeline without `accelerate launch`, or run `prepare`, `sft`, `train-ranker` and `evaluate` in "
            "one process and only `train` under `accelerate launch` (see adagrpo_trl/recipes/README.md)."
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
        (prepare,) = split_recipe_section("prepare", args.prepare)
        timed("prepare", run_prepare, PrepareArguments(**{"seed": args.seed, **prepare, "output_dir": str(data_dir)}))

    # The SFT model's own files are written non-atomically by transformers (config.json first): a marker written
    # atomically after them says the stage finished.
    if not _done(sft_dir, SFT_DONE_FILE):
        script, sft = split_recipe_section("sft", args.sft)
        sft_args = SFTConfig(**{"seed": args.seed, "report_to": "none", **sft, "output_dir": str(sft_dir)})
        timed("sft", run_sft, SFTScriptArguments(**{**script, "data_dir": str(data_dir)}), sft_args)
        atomic_write_json(sft_dir / SFT_DONE_FILE, {"seconds": timings["sft"]})

    if not _done(ranker_dir, "quality_report.json"):
        (ranker,) = split_recipe_section("ranker", args.ranker)
        timed(
            "ranker",
            run_train_ranker,
            RankerArguments(**{"seed": args.seed, **ranker, "data_dir": str(data_dir), "output_dir": str(ranker_dir)}),
        )

    evaluate_options = dict(args.evaluate)
    (evaluate_section,) = split_recipe_section("evaluate", evaluate_options)
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
    planned = {name: _method_arguments(args, root, name, overrides) for name, overrides in args.methods.items()}
    check_method_runs({root / "methods" / name: (plan.train_args, plan.recipe_keys) for name, plan in planned.items()})
    for name, (script_args, train_args, _) in planned.items():
        method_dir = root / "methods" / name
        if not _done(method_dir, "log_history.json"):
            if train_args.resume_from_checkpoint is not None:
                logger.info("Method %s: resuming its training from %s.", name, train_args.resume_from_checkpoint)
            timed(f"train/{name}", run_train, script_args, train_args)
        evaluate(name, method_dir)
        best = _best_checkpoint(method_dir)
        if best is not None:
            evaluate(f"{name}@best", best)

    if args.analyze is not None:
        analysis_file = root / "report" / "analysis_sft.json"
        if not analysis_file.exists():
            (analyze,) = split_recipe_section("analyze", args.analyze)
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


def make_parser() -> RecipeParser:
    """The parser of `adagrpo-trl pipeline`: [`PipelineArguments`] from `--config` (composed from its stage recipes)."""
    return make_command_parser("pipeline", (PipelineArguments,), description=DESCRIPTION)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs `adagrpo-trl pipeline` with `argv` (default: `sys.argv[1:]`) and returns [`run_pipeline`]'s metrics."""
    setup_logging()
    (args,) = make_parser().parse_args_and_config(sys.argv[1:] if argv is None else list(argv))
    return run_pipeline(args)


if __name__ == "__main__":
    main()
