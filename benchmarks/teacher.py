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
The teacher benchmark: is the ranker a better recommender than the SFT policy it is meant to teach, and does the
popularity-bias knob λ hurt it where a real exposure-biased ranker is wrong (tail ground truths) more than elsewhere?

Stages (each skipped when its output is complete, so a killed run resumes): prepare -> SFT policy -> the strong
SASRec ranker (full softmax, full histories up to `--max_len`, best epoch on validation; `--ranker_only` runs this
stage alone, e.g. beside SFT) -> the teacher report on ALL test users against the policy's own beam-search hits and
beams -> `benchmarks/results/teacher/<dataset>/report.{json,md}`.

    python benchmarks/teacher.py --dataset ml-1m                   # the committed run (2 CPU cores)
    python benchmarks/teacher.py --dataset synthetic --quick        # a one-minute check of the shape
"""

import argparse
import json
import sys
import time
from pathlib import Path

from quality import hardware, run_command, versions  # benchmarks/ is the script's folder, on sys.path

from adagrpo_trl.rankers import format_teacher_report


REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "teacher"

# The policy: the ML-1M CPU recipe's (adagrpo_trl/recipes/ml-1m/pipeline_cpu.yaml) prepare and SFT settings.
POLICY = {
    "prepare": ["--num_levels", "3", "--max_history", "10", "--min_interactions", "3"],
    "sft": [
        "--hidden_size", "128", "--num_hidden_layers", "2", "--num_attention_heads", "4", "--num_key_value_heads", "2",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "256", "--learning_rate", "0.003",
        "--lr_scheduler_type", "cosine", "--warmup_steps", "100", "--use_cpu", "true", "--bf16", "false",
        "--activation_checkpointing", "false", "--save_strategy", "no", "--logging_steps", "200",
        "--disable_tqdm", "true",
    ],
}  # fmt: skip


def teacher_vs_policy(data: Path, sft: Path, ranker: Path | None, popularity_biases: list[float]) -> dict:
    """
    The teacher report on every test user, with the SFT policy's beam-search hits and beams (public functions); with
    `ranker=None`, only the policy's beams (cached in `sft/test_beams.json`).
    """
    from transformers import AutoModelForCausalLM

    from adagrpo_trl.data import PreparedData
    from adagrpo_trl.evaluation import hits_at_k, prompts_and_targets, recommend
    from adagrpo_trl.rankers import SASRecRanker, prepared_teacher_report
    from adagrpo_trl.tokenization import load_tokenizer
    from adagrpo_trl.utils import atomic_write_json

    prepared = PreparedData.load(data)
    cache = sft / "test_beams.json"  # the policy's evaluation, kept so a resumed run does not redo it
    if cache.exists():
        ranked = json.loads(cache.read_text())
    else:
        tokenizer = load_tokenizer(sft)
        policy = AutoModelForCausalLM.from_pretrained(sft)
        prompts, _ = prompts_and_targets(prepared.datasets["test"], prepared.catalog)
        ranked = recommend(policy, tokenizer, prompts, prepared.catalog, 20, False, 32)
        atomic_write_json(cache, ranked)
    if ranker is None:
        return {}
    _, targets = prompts_and_targets(prepared.datasets["test"], prepared.catalog)
    hits = [bool(hit) for hit in hits_at_k(ranked, targets, 10)]
    invalid = sum(item is None for row in ranked for item in row[:10]) / (10 * len(ranked))
    report = prepared_teacher_report(
        SASRecRanker.load(ranker), prepared, popularity_biases=popularity_biases, policy_hits=hits,
        policy_rollouts=ranked,
    )  # fmt: skip
    report["policy"] = {"hr@10": sum(hits) / len(hits), "hallucination@10": invalid, "num_users": len(hits)}
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--output_dir", default=None, help="Run folder (default: runs/teacher-<dataset>).")
    parser.add_argument("--results_dir", default=str(RESULTS))
    parser.add_argument("--max_train_samples", type=int, default=300_000, help="SFT windows (the CPU recipe's).")
    parser.add_argument("--max_len", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--popularity_biases", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--item_feature_fields", nargs="*", default=[])
    parser.add_argument("--user_feature_fields", nargs="*", default=[])
    parser.add_argument("--quick", action="store_true", help="Tiny settings for a smoke run (synthetic data).")
    parser.add_argument("--ranker_only", action="store_true", help="Stop after the ranker stage (runs beside SFT).")
    parser.add_argument(
        "--policy_only",
        action="store_true",
        help="Only evaluate the SFT policy's test beams (runs beside the ranker).",
    )
    args = parser.parse_args(argv)
    out = Path(args.output_dir or f"runs/teacher-{args.dataset}")
    cli = [sys.executable, "-m", "adagrpo_trl.cli"]
    timings = {}
    data, sft, ranker = out / "data", out / "sft", out / "ranker"
    sft_args = list(POLICY["sft"])
    if args.quick:
        sft_args = [*sft_args, "--max_steps", "20"]
    if not (data / "catalog.json").exists():
        timings["prepare"] = run_command(
            [*cli, "prepare", "--dataset", args.dataset, "--output_dir", str(data), *POLICY["prepare"]]
        )
    if not args.ranker_only and not (sft / "model.safetensors").exists():
        timings["sft"] = run_command(
            [*cli, "sft", "--data_dir", str(data), "--output_dir", str(sft), "--max_train_samples",
             str(args.max_train_samples), *sft_args]
        )  # fmt: skip
    if args.policy_only:
        teacher_vs_policy(data, sft, None, args.popularity_biases)
        return {}
    if not (ranker / "quality_report.json").exists():
        ranker_args = [
            "--data_dir", str(data), "--output_dir", str(ranker), "--max_len", str(args.max_len), "--loss", "softmax",
            "--epochs", str(args.epochs), "--patience", str(args.patience), "--batch_size", str(args.batch_size),
            "--learning_rate", str(args.learning_rate), "--popularity_biases", *map(str, args.popularity_biases),
        ]  # fmt: skip
        if args.item_feature_fields:
            ranker_args += ["--item_feature_fields", *args.item_feature_fields]
        if args.user_feature_fields:
            ranker_args += ["--user_feature_fields", *args.user_feature_fields]
        timings["train-ranker"] = run_command([*cli, "train-ranker", *ranker_args])
    if args.ranker_only:
        return {}
    report_path = out / "teacher_vs_policy.json"
    if not report_path.exists():
        start = time.perf_counter()
        teacher = teacher_vs_policy(data, sft, ranker, args.popularity_biases)
        timings["policy evaluation + teacher report"] = time.perf_counter() - start
        report_path.write_text(json.dumps(teacher, indent=2))
    teacher = json.loads(report_path.read_text())
    teacher["ranker"] = json.loads((ranker / "teacher_report.json").read_text())["ranker"]
    vs = teacher.get("vs_policy", {})
    summary = {
        "ranker_hr@10": teacher["unmasked"]["overall"]["hr@10"],
        "ranker_hr@10_masked": teacher["masked"]["overall"]["hr@10"],
        "policy_hr@10": vs.get("policy_hr@10"),
        "ratio": (teacher["unmasked"]["overall"]["hr@10"] / vs["policy_hr@10"]) if vs.get("policy_hr@10") else None,
        "ranker_train_seconds": teacher["ranker"]["train_seconds"],
    }
    report = {
        "command": "python benchmarks/teacher.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": args.dataset,
        "hardware": hardware(),
        "versions": versions(),
        "stage_seconds_this_invocation": timings,
        "summary": summary,
        "teacher": teacher,
    }
    folder = Path(args.results_dir) / (args.dataset + ("_quick" if args.quick else ""))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(
        f"`{report['command']}` at {report['versions']['commit'][:10]} on {report['hardware']}\n\n"
        + json.dumps(summary, indent=2)
        + "\n\n"
        + format_teacher_report(teacher)
        + "\n"
    )
    print(json.dumps(summary, indent=2))  # noqa: T201
    return report


if __name__ == "__main__":
    main()
