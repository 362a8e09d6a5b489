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
The policy benchmark: is the SFT policy at least as good a recommender as the classic peer, a SASRec that reads the
same history length as the policy's prompt, and how often does it write an item that does not exist?

For each dataset, on one split and in one run: the recipe's `prepare` and `sft` stages unchanged (the packaged
pipeline recipe of `RECIPES`), the peer SASRec (`PEER`: full-softmax objective, best epoch on validation HR@10 with
patience, `max_len` = the recipe's `max_history`, i.e. the items the policy's prompt shows), then on ALL test users:
the policy's HR@{1,5,10,20} / NDCG@10 by unconstrained beam search (an invalid SID is a miss; the headline), by
trie-constrained beam search, its unconstrained hallucination@10, the peer's metrics from a full ranking of the
catalog (history items not masked, as the policy's beams are not; the masked figure beside it), and the paired
bootstrap 95% interval of policy - peer over test users. Every stage's wall time is recorded.

Stages are skipped when their output is complete, so a killed run resumes:

    python benchmarks/policy.py                                   # ml-100k, ml-1m-sparse, ml-1m (the committed run)
    python benchmarks/policy.py --datasets ml-100k --tag ul1 --sft_override sid_unlikelihood_coef=1.0
    python benchmarks/policy.py --datasets synthetic --quick      # a one-minute check of the shape

Results: `benchmarks/results/policy/<tag>/report.{json,md}` (index: benchmarks/README.md).
"""

import argparse
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from quality import (  # benchmarks/ is the script's folder, on sys.path
    hardware,
    parse_overrides,
    ranked_from_scores,
    run_command,
    versions,
)


REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "policy"

# The packaged pipeline recipe whose prepare and sft stages each dataset runs unchanged.
RECIPES = {
    "ml-100k": "ml-100k/pipeline",
    "ml-1m-sparse": "ml-1m-sparse/pipeline",
    "ml-1m": "ml-1m/pipeline_cpu",
    "synthetic": "synthetic/pipeline_tiny",
}
# The peer: the strong teacher's SASRec settings (adagrpo_trl/recipes/ml-1m/ranker.yaml) with the policy's history.
PEER = {
    "loss": "softmax",
    "epochs": 40,
    "patience": 3,
    "batch_size": 64,
    "learning_rate": 0.002,
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 2,
    "popularity_biases": [0.0],
}
KS = (1, 5, 10, 20)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m-sparse", "ml-1m"], choices=list(RECIPES))
    parser.add_argument("--tag", default="recipes", help="Names the run folder and the results folder.")
    parser.add_argument("--runs_dir", default="runs/policy", help="Where the stages' outputs live.")
    parser.add_argument("--results_dir", default=str(RESULTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sft_override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Change one key of the recipe's sft stage (YAML value), e.g. sid_unlikelihood_coef=1.0; repeatable.",
    )
    parser.add_argument("--num_beams", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32, help="Prompts per generate call.")
    parser.add_argument("--num_resamples", type=int, default=2000, help="Paired-bootstrap resamples.")
    parser.add_argument("--quick", action="store_true", help="Tiny settings (a few SFT steps, 2 peer epochs).")
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="A line of provenance for the report (e.g. a stage copied from another run folder); repeatable.",
    )
    args = parser.parse_args(argv)
    args.sft_overrides = parse_overrides(args.sft_override, "--sft_override")
    return args


def stage_configs(dataset: str, run_dir: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The prepare, sft and peer-ranker recipes of one dataset (the pipeline recipe's sections, paths filled in)."""
    from adagrpo_trl.scripts.configs import PrepareArguments
    from adagrpo_trl.scripts.recipe import load_recipe, resolve_recipe, split_recipe_section

    recipe = load_recipe(resolve_recipe(RECIPES[dataset], "pipeline"), "pipeline")
    data, sft, peer = run_dir / "data", run_dir / "sft", run_dir / "peer"
    prepare = {**recipe["prepare"], "output_dir": str(data), "seed": args.seed}
    sft_section = {**recipe["sft"], **args.sft_overrides}
    split_recipe_section("sft", sft_section, "--sft_override")  # an unknown key fails here, naming it
    sft_config = {**sft_section, "data_dir": str(data), "output_dir": str(sft), "seed": args.seed}
    (prepare_values,) = split_recipe_section("prepare", recipe["prepare"])
    max_history = PrepareArguments(**{**prepare_values, "output_dir": str(data)}).max_history  # the prompt's items
    ranker = {**PEER, "max_len": max_history, "data_dir": str(data), "output_dir": str(peer), "seed": args.seed}
    if args.quick:
        sft_config.update(max_steps=20, num_train_epochs=1)
        ranker.update(epochs=2)
    return {"prepare": prepare, "sft": sft_config, "train-ranker": ranker}


def run_stage(command: str, config: Mapping[str, Any], config_path: Path) -> float:
    """Writes the stage's recipe beside its outputs and runs `adagrpo-trl <command> --config` on it; its seconds."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return run_command([sys.executable, "-m", "adagrpo_trl.cli", command, "--config", str(config_path)])


def peer_metrics(peer_dir: Path, prepared: Any, split: str = "test") -> dict[str, Any]:
    """The peer's HR@K / NDCG@10 on every row of `split` (the rows' own histories), unmasked and history-masked."""
    from adagrpo_trl.evaluation import hits_at_k, ndcg_at_k
    from adagrpo_trl.rankers import SASRecRanker
    from adagrpo_trl.rankers.base import score_matrix

    ranker = SASRecRanker.load(peer_dir)
    rows = list(prepared.datasets[split])
    item_ids = list(prepared.catalog.item_ids)
    column_of = {item: column for column, item in enumerate(item_ids)}
    targets = [str(row["target_item"]) for row in rows]
    contexts = [{key: value for key, value in row.items() if key != "target_item"} for row in rows]
    scores = score_matrix(ranker, contexts, item_ids).astype(np.float64)
    out: dict[str, Any] = {"num_samples": len(rows), "max_len": ranker.config.max_len, "best_epoch": ranker.best_epoch}
    target_columns = np.array([column_of[target] for target in targets], dtype=np.int64)
    for prefix, mask in (("", False), ("masked/", True)):
        if mask:  # the rows' history items leave the ranking, the ground truth stays
            kept = scores[np.arange(len(rows)), target_columns].copy()
            scores = scores.copy()
            for r, row in enumerate(rows):
                scores[r, [column_of[str(item)] for item in row["history"] if str(item) in column_of]] = -np.inf
            scores[np.arange(len(rows)), target_columns] = kept
        ranked = ranked_from_scores(scores, item_ids, max(KS))
        for k in KS:
            out[f"{prefix}hr@{k}"] = float(hits_at_k(ranked, targets, k).mean())
        per_hr, per_ndcg = hits_at_k(ranked, targets, 10), ndcg_at_k(ranked, targets, 10)
        out[f"{prefix}ndcg@10"] = float(per_ndcg.mean())
        if not mask:
            out["per_sample"] = {"hr@10": per_hr.tolist(), "ndcg@10": per_ndcg.tolist()}
    return out


def policy_metrics(sft_dir: Path, prepared: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The policy's metrics on every test row (unconstrained and constrained beams), with per-user HR@10 / NDCG@10."""
    from transformers import AutoModelForCausalLM

    from adagrpo_trl.evaluation import evaluate_recommendations
    from adagrpo_trl.tokenization import load_tokenizer

    tokenizer = load_tokenizer(sft_dir)
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    results = evaluate_recommendations(
        model, tokenizer, prepared.datasets["test"], prepared.catalog, ks=KS, num_beams=args.num_beams,
        batch_size=args.batch_size, return_per_sample=True,
    )  # fmt: skip
    per_sample = results.pop("per_sample")
    results["per_sample"] = {name: per_sample[name].tolist() for name in ("hr@10", "ndcg@10")}
    return results


def compare(policy: Mapping[str, Any], peer: Mapping[str, Any], num_resamples: int) -> dict[str, Any]:
    """Paired bootstrap (over test users) of policy - peer for HR@10 and NDCG@10, and the ratio of the HR@10s."""
    from adagrpo_trl.evaluation import paired_bootstrap

    out = {}
    for metric in ("hr@10", "ndcg@10"):
        a, b = np.asarray(peer["per_sample"][metric]), np.asarray(policy["per_sample"][metric])
        out[metric] = paired_bootstrap(a, b, num_resamples=num_resamples)
    out["hr@10_ratio"] = policy["hr@10"] / peer["hr@10"] if peer["hr@10"] else None
    return out


def run_dataset(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every stage of one dataset (skipping completed ones) and its comparison."""
    from adagrpo_trl.data import PreparedData
    from adagrpo_trl.utils import atomic_write_json

    run_dir = Path(args.runs_dir) / args.tag / (dataset + ("_quick" if args.quick else ""))
    configs = stage_configs(dataset, run_dir, args)
    timings_path = run_dir / "stage_seconds.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    done = {
        "prepare": run_dir / "data" / "catalog.json",
        "sft": run_dir / "sft" / "model.safetensors",
        "train-ranker": run_dir / "peer" / "quality_report.json",
    }
    for command, marker in done.items():
        if not marker.exists():
            timings[command] = run_stage(command, configs[command], run_dir / "configs" / f"{command}.yaml")
            atomic_write_json(timings_path, timings)
    prepared = PreparedData.load(run_dir / "data")
    evaluation = run_dir / "evaluation.json"
    if evaluation.exists():
        result = json.loads(evaluation.read_text())
    else:
        start = time.perf_counter()
        policy = policy_metrics(run_dir / "sft", prepared, args)
        timings["evaluate policy"] = time.perf_counter() - start
        start = time.perf_counter()
        peer = peer_metrics(run_dir / "peer", prepared)
        timings["evaluate peer"] = time.perf_counter() - start
        atomic_write_json(timings_path, timings)
        result = {"policy": policy, "peer": peer}
        atomic_write_json(evaluation, result)
    selection = run_dir / "sft" / "sft_selection.json"
    stats = {
        "users": len(prepared.datasets["test"]),
        "items": len(prepared.catalog.item_ids),
        "training_rows": len(prepared.datasets["train"]),
        "max_history": configs["train-ranker"]["max_len"],
    }
    return {
        "dataset": dataset,
        "recipe": RECIPES[dataset],
        "data": stats,
        "configs": configs,
        "sft_selection": json.loads(selection.read_text()) if selection.exists() else None,
        "stage_seconds": timings,
        "policy": {key: value for key, value in result["policy"].items() if key != "per_sample"},
        "peer": {key: value for key, value in result["peer"].items() if key != "per_sample"},
        "policy_minus_peer": compare(result["policy"], result["peer"], args.num_resamples),
    }


def targets(rows: Sequence[Mapping[str, Any]], max_hallucination: float = 0.01) -> dict[str, Any]:
    """
    Issue 17's targets per dataset: the policy's test HR@10 at least the peer's (the point estimate, with whether the
    95% interval excludes a loss) and unconstrained hallucination@10 at most `max_hallucination`.
    """
    out = {}
    for row in rows:
        hr = row["policy_minus_peer"]["hr@10"]
        out[row["dataset"]] = {
            "sft_at_least_peer": hr["diff"] >= 0,
            "significantly_below_peer": hr["high"] < 0,
            "hallucination_at_most_1pct": row["policy"]["hallucination"] <= max_hallucination,
        }
    return out


def format_report(report: Mapping[str, Any]) -> str:
    """The report's markdown table: one row per dataset, then the targets and the notes."""
    lines = [
        "| dataset | test users | history | SFT HR@10 | SASRec HR@10 (masked) | SFT - SASRec HR@10 [95% CI] | "
        "SFT NDCG@10 | SASRec NDCG@10 | SFT - SASRec NDCG@10 [95% CI] | SFT constrained HR@10 | "
        "hallucination@10 | wall time (prepare / SFT / SASRec / eval) |",
        "|" + "---|" * 12,
    ]
    for row in report["datasets"]:
        policy, peer, diff, seconds = row["policy"], row["peer"], row["policy_minus_peer"], row["stage_seconds"]
        hr, ndcg = diff["hr@10"], diff["ndcg@10"]
        evaluation = seconds.get("evaluate policy", 0) + seconds.get("evaluate peer", 0)
        wall = " / ".join(
            f"{seconds[name] / 60:.1f}" if name in seconds else "-" for name in ("prepare", "sft", "train-ranker")
        )
        lines.append(
            f"| {row['dataset']} | {row['data']['users']:,} | {row['data']['max_history']} | "
            f"{100 * policy['hr@10']:.2f}% | {100 * peer['hr@10']:.2f}% ({100 * peer['masked/hr@10']:.2f}%) | "
            f"{100 * hr['diff']:+.2f} [{100 * hr['low']:+.2f}, {100 * hr['high']:+.2f}] | "
            f"{100 * policy['ndcg@10']:.2f}% | {100 * peer['ndcg@10']:.2f}% | "
            f"{100 * ndcg['diff']:+.2f} [{100 * ndcg['low']:+.2f}, {100 * ndcg['high']:+.2f}] | "
            f"{100 * policy['constrained/hr@10']:.2f}% | {100 * policy['hallucination']:.2f}% | "
            f"{wall} / {evaluation / 60:.1f} min |"
        )
    lines += [
        "",
        "| dataset | SFT HR@10 >= SASRec | significantly below | hallucination@10 <= 1% |",
        "|---|---|---|---|",
    ]
    for dataset, met in report["targets"].items():
        cells = [
            "yes" if met[key] else "no"
            for key in ("sft_at_least_peer", "significantly_below_peer", "hallucination_at_most_1pct")
        ]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {note}" for note in report.get("notes", []))]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()
    rows = [run_dataset(dataset, args) for dataset in args.datasets]
    report = {
        "command": "python benchmarks/policy.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "hardware": hardware(),
        "versions": versions(),
        "peer": PEER,
        "wall_seconds_this_invocation": time.perf_counter() - start,
        "datasets": rows,
        "targets": targets(rows),
        "notes": list(args.note),
    }
    folder = Path(args.results_dir) / (args.tag + ("_quick" if args.quick else ""))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(
        f"`{report['command']}` at {report['versions']['commit'][:10]} on {report['hardware']}\n\n"
        + format_report(report)
    )
    print(format_report(report))  # noqa: T201
    return report


if __name__ == "__main__":
    main()
