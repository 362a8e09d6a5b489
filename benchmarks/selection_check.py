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
Does a selection on validation hold on the whole validation split? `quality_v2.py` scores its candidates by the best
validation HR@10 during training on `--eval_samples` users (1,000 on ML-1M), where candidates end 2-3 users apart.
This script evaluates each candidate's final model and its best checkpoint (the one the selection scored) on every
validation user and compares groups of candidates with a paired bootstrap over users (a group's per-user hit is the
mean over its candidates: the selection's panel mean).

    python benchmarks/selection_check.py \
        --selection_dir runs/quality_v2/ml-1m-beam-raw-selected/seed0/selection \
        --data_dir runs/quality_v2/ml-1m-beam-raw-selected/seed0/shared/data \
        --compare "lr 1e-4 vs 3e-5=nll_only_learning_rate3e-05_beta0,mixture_1_learning_rate3e-05_beta0,adagrpo_learning_rate3e-05_beta0:nll_only_learning_rate0.0001_beta0,mixture_1_learning_rate0.0001_beta0,adagrpo_learning_rate0.0001_beta0" \
        --compare "τ 0.5 vs 0.25=adagrpo_gate_tau0.25_gate_rho0.5:adagrpo_gate_tau0.5_gate_rho0.5" \
        --results_dir benchmarks/results/quality_v2/ml-1m/beam_raw_selected/selection_check

The same works on a reward's `methods/` folder (e.g. to check which fixed mixture validation prefers; then pass a
`--cache_dir` outside it). Each evaluation is cached in `--cache_dir` (default: `<selection_dir>/full_validation`),
so a killed run resumes.
Writes `report.json` and `report.md` (command, commit, hardware, wall time) to `--results_dir`.
"""

import argparse
import json
import logging
import shlex
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from quality import hardware, versions  # benchmarks/ is the script's folder, on sys.path


logger = logging.getLogger("benchmarks.selection_check")


def parse_comparison(text: str) -> tuple[str, list[str], list[str]]:
    """`"NAME=A1,A2:B1,B2"` → `(NAME, [A1, A2], [B1, B2])`: group B against group A."""
    name, sep, groups = text.partition("=")
    first, colon, second = groups.partition(":")
    a, b = [c for c in first.split(",") if c], [c for c in second.split(",") if c]
    if not sep or not colon or not name or not a or not b:
        raise ValueError(f"--compare {text!r}: expected NAME=A1,A2,...:B1,B2,... (candidate folder names).")
    return name, a, b


def candidate_models(selection_dir: Path, name: str) -> dict[str, Path]:
    """
    `{"final": …, "best": …}`: the final model of candidate `name` (its folder, or the run it links to), which must
    have finished, and its best checkpoint by periodic validation HR@10 (the final model when none was recorded).
    """
    folder = selection_dir / name
    if not (folder / "log_history.json").exists():
        known = sorted(path.name for path in selection_dir.iterdir()) if selection_dir.is_dir() else []
        raise FileNotFoundError(f"{folder}: no finished candidate run (log_history.json) there; candidates: {known}.")
    final = folder.resolve()
    summary = final / "best_checkpoint.json"
    best = json.loads(summary.read_text()).get("best_checkpoint") if summary.exists() else None
    # the recorded path is the one the run was given (relative to where it ran); its folder name is what counts
    best_dir = final / Path(best).name if best else final
    if not best_dir.is_dir():
        raise FileNotFoundError(f"{summary}: its best checkpoint {best_dir} does not exist.")
    return {"final": final, "best": best_dir}


def group_comparison(per_user: dict[str, np.ndarray], a: list[str], b: list[str], seed: int = 0) -> dict[str, Any]:
    """
    Paired bootstrap over users of mean(B) − mean(A), a group's per-user value being the mean of its candidates' hits
    (in points of HR@10). Every candidate must hold the same users in the same order.
    """
    from adagrpo_trl.evaluation import paired_bootstrap

    sizes = {name: len(per_user[name]) for name in (*a, *b)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"candidates were evaluated on different numbers of users: {sizes}.")
    first = np.mean([per_user[name] for name in a], axis=0)
    second = np.mean([per_user[name] for name in b], axis=0)
    result = paired_bootstrap(first, second, seed=seed)
    return {
        "a": a,
        "b": b,
        "a_hr@10": 100 * float(first.mean()),
        "b_hr@10": 100 * float(second.mean()),
        **{key: 100 * value if key != "p_value" else value for key, value in result.items()},
    }


def best_during_training(model_dir: Path) -> float | None:
    """The selection's own score: the best periodic validation HR@10 (on `--eval_samples` users), if recorded."""
    path = model_dir / "best_checkpoint.json"
    if not path.exists():
        return None
    scores = [entry.get("eval_hr@10") for entry in json.loads(path.read_text()).get("history", [])]
    scores = [score for score in scores if score is not None]
    return 100 * max(scores) if scores else None


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"Selection check on all {report['num_users']} validation users ({report['hardware']}; commit "
        f"{report['versions']['commit'][:7]}; wall time {report['wall_seconds'] / 60:.0f} min). Command: "
        f"`{report['command']}`",
        "",
        "| candidate | selection's score: best periodic HR@10 (its users) | best checkpoint, all users | final "
        "model, all users |",
        "|---|---|---|---|",
    ]
    for name, row in report["candidates"].items():
        best = "n/a" if row["best_during_training"] is None else f"{row['best_during_training']:.2f}"
        lines.append(f"| {name} | {best} | {row['best_hr@10']:.2f} | {row['final_hr@10']:.2f} |")
    lines += ["", "| comparison | model | A | B | B − A [95% CI] | p |", "|---|---|---|---|---|---|"]
    for kind, rows in report["comparisons"].items():
        for name, row in rows.items():
            lines.append(
                f"| {name} | {kind} | {row['a_hr@10']:.2f} | {row['b_hr@10']:.2f} | {row['diff']:+.2f} "
                f"[{row['low']:+.2f}, {row['high']:+.2f}] | {row['p_value']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from adagrpo_trl.scripts.configs import EvaluateArguments
    from adagrpo_trl.scripts.evaluate import run_evaluate
    from adagrpo_trl.utils import atomic_write_json, atomic_write_text

    start = time.perf_counter()
    selection_dir = Path(args.selection_dir)
    comparisons = [parse_comparison(text) for text in args.compare]
    names = list(dict.fromkeys(name for _, a, b in comparisons for name in (*a, *b)))
    models = {name: candidate_models(selection_dir, name) for name in names}  # all checked before any work
    cache = Path(args.cache_dir or selection_dir / "full_validation")
    cache.mkdir(parents=True, exist_ok=True)
    metrics: dict[Path, dict[str, Any]] = {}
    for name, model in ((name, model) for name, kinds in models.items() for model in kinds.values()):
        if model in metrics:  # two names of one run (a linked twin), or a best checkpoint that is the final model
            continue
        output = cache / f"{'__'.join(model.parts[-2:])}_{zlib.crc32(str(model).encode()):08x}.json"
        if not output.exists():
            logger.info("evaluating %s (%s) on the validation split", name, model)
            run_evaluate(
                EvaluateArguments(
                    model_path=str(model),
                    data_dir=args.data_dir,
                    split="validation",
                    num_beams=args.num_beams,
                    batch_size=args.batch_size,
                    output_file=str(output),
                )
            )
        metrics[model] = json.loads(output.read_text())
    per_user = {
        kind: {name: np.asarray(metrics[models[name][kind]]["per_sample"]["hr@10"], dtype=float) for name in models}
        for kind in ("final", "best")
    }
    report = {
        "command": args.command,
        "versions": versions(),
        "hardware": hardware(),
        "num_users": int(next(iter(per_user["final"].values())).size),
        "candidates": {
            name: {
                "final": str(kinds["final"]),
                "best": str(kinds["best"]),
                "final_hr@10": 100 * metrics[kinds["final"]]["hr@10"],
                "best_hr@10": 100 * metrics[kinds["best"]]["hr@10"],
                "best_during_training": best_during_training(kinds["final"]),
            }
            for name, kinds in models.items()
        },
        "comparisons": {
            kind: {name: group_comparison(per_user[kind], a, b) for name, a, b in comparisons}
            for kind in ("final", "best")
        },
        "wall_seconds": time.perf_counter() - start,
    }
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results_dir / "report.json", report)
    table = format_report(report)
    atomic_write_text(results_dir / "report.md", table)
    sys.stdout.write(table)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--selection_dir",
        required=True,
        help="A folder of finished runs: a seed's selection folder of a quality_v2 run, or a reward's methods/ folder.",
    )
    parser.add_argument("--data_dir", required=True, help="The seed's prepared data (its shared/data).")
    parser.add_argument("--compare", action="append", required=True, help="NAME=A1,A2:B1,B2 (candidate names).")
    parser.add_argument("--results_dir", required=True, help="Where report.json and report.md go.")
    parser.add_argument(
        "--cache_dir", default=None, help="Evaluations cache (default: <selection_dir>/full_validation)."
    )
    parser.add_argument("--num_beams", type=int, default=20, help="Beam width, as the test evaluation.")
    parser.add_argument("--batch_size", type=int, default=32, help="Prompts per generate call.")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "benchmarks/selection_check.py", *(sys.argv[1:] if argv is None else argv)])
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
