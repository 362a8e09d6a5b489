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
Which item features and codebook size make the best semantic IDs? A cheap probe (no model is trained).

For each dataset (ML-100K, ML-1M and its sparse proxy `ml-1m-sparse`), builds SIDs from each feature source (`text`,
`cooccurrence`, `text+cooccurrence`, the mix also with the co-occurrence block weighted 2 and 4) and codebook sizes
`ceil(f * num_items ** (1/3))` for a few factors `f` (2 is the default), and records
[`adagrpo_trl.sid_report.sid_quality_report`] twice: on the training pairs (consecutive items of the training
prefixes, which the co-occurrence features were fit on, so optimistic for them) and on the *validation* pairs (each
user's last training item -> validation item: held out from the features), which is the figure to choose by. The test
item is never read. Also records each log's statistics (the sparse proxy's documented figures come from here).

With `--sft_candidates SOURCE:SIZE[:COOCCURRENCE_WEIGHT] ...` it instead runs, for each candidate on ML-100K, the
packaged recipe's `prepare` (with that `--sid_features` / `--codebook_size` / `--sid_cooccurrence_weight`), `sft` and
`evaluate --split validation` (the CLI commands, recorded in the output), and records the SFT model's validation
HR@10 / NDCG@10 / hallucination and wall times.

```bash
nice -n 10 python benchmarks/sid_probe.py --output benchmarks/results/probes/sid/sid_probe.json
OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sid_probe.py --run_dir runs/sid_probe \
    --sft_candidates text+cooccurrence:24 --output benchmarks/results/probes/sid/sid_probe_sft_ml-100k.json
OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sid_probe.py --run_dir runs/sid_probe \
    --sft_candidates text+cooccurrence:24:2 --output benchmarks/results/probes/sid/sid_probe_sft_ml-100k_w2.json
```
"""

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from adagrpo_trl.data import leave_one_out_split, log_statistics  # noqa: E402
from adagrpo_trl.data.loaders import text_column_as_str  # noqa: E402
from adagrpo_trl.data.prepare import load_log  # noqa: E402
from adagrpo_trl.semantic_ids import build_item_features, build_semantic_ids  # noqa: E402
from adagrpo_trl.sid_report import sid_quality_report  # noqa: E402


logger = logging.getLogger("benchmarks.sid_probe")

SOURCES = ("text", "cooccurrence", "text+cooccurrence")


def probe_dataset(name: str, factors: list[float], num_levels: int, seed: int, weights: list[float]) -> dict:
    """Every (source, codebook size) of one dataset: SID quality on training and validation pairs, and wall times."""
    start = time.perf_counter()
    log, items = load_log(name)
    split = leave_one_out_split(log, min_interactions=3)
    item_ids = sorted(log["item_id"].astype(str).unique())
    text = text_column_as_str(items["text"], "<items>", "text", keys=items["item_id"].astype(str).tolist())
    text_of = dict(zip(items["item_id"].astype(str), text, strict=True))
    texts = [text_of.get(item, "") for item in item_ids]
    train_sequences = split.train_sequences
    validation_pairs = [sequence[-3:-1] for sequence in split.sequences]
    result = {"dataset": name, "statistics": log_statistics(log), "load_s": time.perf_counter() - start, "runs": []}
    variants = [(source, 1.0) for source in SOURCES] + [
        ("text+cooccurrence", weight) for weight in weights if weight != 1
    ]
    for source, weight in variants:
        source_start = time.perf_counter()
        features = build_item_features(
            item_ids, source, texts=texts, sequences=train_sequences, cooccurrence_weight=weight, seed=seed
        )
        features_s = time.perf_counter() - source_start
        for factor in factors:
            size = int(min(256, max(2, math.ceil(round(factor * len(item_ids) ** (1.0 / num_levels), 9)))))
            run_start = time.perf_counter()
            semantic_ids = build_semantic_ids(features, item_ids, num_levels=num_levels, codebook_size=size, seed=seed)
            train = sid_quality_report(semantic_ids, train_sequences)
            validation = sid_quality_report(semantic_ids, validation_pairs)
            run = {
                "sid_features": source,
                "cooccurrence_weight": weight,
                "codebook_factor": factor,
                "codebook_size": size,
                "collision_rate_before_dedup": train["collision_rate_before_dedup"],
                "max_dedup_code": int(semantic_ids.codes[:, -1].max()),
                "levels": train["levels"],
                "train_prefix_grouping": train["prefix_grouping"],
                "validation_prefix_grouping": validation["prefix_grouping"],
                "features_s": features_s,
                "kmeans_s": time.perf_counter() - run_start,
            }
            result["runs"].append(run)
            logger.info(
                "%s %s (co-occurrence weight %g) size %d: collisions %.3f, validation next-item share depth 1 %.3f "
                "(random %.3f), depth 2 %.3f (random %.3f)",
                name,
                source,
                weight,
                size,
                run["collision_rate_before_dedup"],
                validation["prefix_grouping"][0]["share"],
                validation["prefix_grouping"][0]["random_share"],
                validation["prefix_grouping"][1]["share"],
                validation["prefix_grouping"][1]["random_share"],
            )
    return result


def probe_sft(candidates: list[str], run_dir: Path, output: Path) -> None:
    """prepare -> sft -> evaluate (validation split of ML-100K) per `SOURCE:SIZE[:WEIGHT]`; the JSON after each."""
    results = {"command": "python " + " ".join(sys.argv), "dataset": "ml-100k", "runs": []}
    for candidate in candidates:
        source, size, weight = (candidate.split(":") + ["1"])[:3]
        folder = run_dir / f"{source}_{size}" if weight == "1" else run_dir / f"{source}_{size}_w{weight}"
        commands = {
            "prepare": ["prepare", "--config", "ml-100k", "--sid_features", source, "--codebook_size", size,
                        "--sid_cooccurrence_weight", weight, "--output_dir", str(folder / "data")],
            "sft": ["sft", "--config", "ml-100k", "--data_dir", str(folder / "data"), "--output_dir", str(folder / "sft")],
            "evaluate": ["evaluate", "--config", "ml-100k", "--model_path", str(folder / "sft"), "--data_dir",
                         str(folder / "data"), "--split", "validation", "--output_file", str(folder / "validation.json")],
        }  # fmt: skip
        run = {
            "sid_features": source,
            "codebook_size": int(size),
            "cooccurrence_weight": float(weight),
            "commands": {},
            "wall_s": {},
        }
        for stage, arguments in commands.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", f"adagrpo_trl.scripts.{stage}", *arguments[1:]], check=True)
            run["commands"][stage] = "adagrpo-trl " + " ".join(arguments)
            run["wall_s"][stage] = time.perf_counter() - start
        metrics = json.loads((folder / "validation.json").read_text())
        summary = json.loads((folder / "data" / "prepare_summary.json").read_text())
        run["validation"] = {key: value for key, value in metrics.items() if key != "per_sample"}
        run["sid_quality"] = summary["sid_quality"]
        results["runs"].append(run)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
        logger.info("%s: validation %s", candidate, run["validation"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m", "ml-1m-sparse"])
    parser.add_argument("--factors", nargs="+", type=float, default=[1.0, 2.0, 4.0])
    parser.add_argument("--cooccurrence_weights", nargs="+", type=float, default=[1.0, 2.0, 4.0])
    parser.add_argument("--num_levels", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="benchmarks/results/probes/sid/sid_probe.json")
    parser.add_argument(
        "--sft_candidates",
        nargs="*",
        default=None,
        help="SOURCE:SIZE[:COOCCURRENCE_WEIGHT] candidates to train SFT on.",
    )
    parser.add_argument("--run_dir", default="runs/sid_probe", help="--sft_candidates: where the runs are written.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.sft_candidates:
        probe_sft(args.sft_candidates, Path(args.run_dir), Path(args.output))
        return
    start = time.perf_counter()
    results = {
        "command": "python " + " ".join(sys.argv),
        "num_levels": args.num_levels,
        "seed": args.seed,
        "datasets": [
            probe_dataset(name, args.factors, args.num_levels, args.seed, args.cooccurrence_weights)
            for name in args.datasets
        ],
    }
    results["wall_s"] = time.perf_counter() - start
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    logger.info("Wrote %s in %.0f s.", output, results["wall_s"])


if __name__ == "__main__":
    main()
