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
`adagrpo-trl evaluate`: HR@K, NDCG@K and the hallucination rate of a checkpoint by beam search (and by
trie-constrained beam search), on the test or validation users.

    adagrpo-trl evaluate --config ml-100k --model_path runs/ml-100k/methods/adagrpo
    adagrpo-trl evaluate --model_path runs/ml-100k/sft --data_dir runs/ml-100k/data
"""

import json
import sys
from pathlib import Path
from typing import Any

from ..utils import atomic_write_json
from .configs import EvaluateArguments
from .recipe import RecipeParser, make_command_parser
from .utils import setup_logging


DESCRIPTION = "HR@K / NDCG@K / hallucination by beam search"


def run_evaluate(args: EvaluateArguments) -> dict[str, Any]:
    """
    Evaluates a checkpoint with [`~adagrpo_trl.evaluation.evaluate_recommendations`] and prints the metrics.

    Returns:
        `dict[str, Any]`: the metrics, with the per-user HR@10 / NDCG@10 (`per_sample`) for paired bootstraps.
    """
    from transformers import AutoModelForCausalLM

    from ..data import PreparedData
    from ..evaluation import evaluate_recommendations
    from ..tokenization import load_tokenizer

    prepared = PreparedData.load(args.data_dir)
    if args.split not in prepared.datasets:
        raise ValueError(f"Unknown split {args.split!r}; {args.data_dir} has {sorted(prepared.datasets)}.")
    tokenizer = load_tokenizer(args.model_path)
    prepared.catalog.check_tokenizer(tokenizer, str(Path(args.data_dir, "catalog.json")), args.model_path)
    model = AutoModelForCausalLM.from_pretrained(args.model_path)
    dataset = prepared.datasets[args.split]
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    ks = tuple(k for k in (1, 5, 10, 20) if k <= args.num_beams)
    results = evaluate_recommendations(
        model,
        tokenizer,
        dataset,
        prepared.catalog,
        ks=ks,
        num_beams=args.num_beams,
        hallucination_k=min(10, args.num_beams),
        batch_size=args.batch_size,
        return_per_sample=True,
    )
    # Per-user hits are kept (as lists) for paired bootstrap comparisons between checkpoints.
    per_sample = results.pop("per_sample")
    results["per_sample"] = {name: per_sample[name].tolist() for name in ("hr@10", "ndcg@10") if name in per_sample}
    if args.output_file:
        atomic_write_json(args.output_file, results)
    print(json.dumps({k: v for k, v in results.items() if k != "per_sample"}, indent=2))  # noqa: T201
    return results


def make_parser() -> RecipeParser:
    """The parser of `adagrpo-trl evaluate`: [`EvaluateArguments`] from `--config` (a file or a packaged recipe name) and flags."""
    return make_command_parser("evaluate", description=DESCRIPTION)


def main(argv: list[str] | None = None) -> Any:
    """Runs `adagrpo-trl evaluate` with `argv` (default: `sys.argv[1:]`) and returns what [`run_evaluate`] returns."""
    setup_logging()
    (args,) = make_parser().parse_args_and_config(sys.argv[1:] if argv is None else list(argv))
    return run_evaluate(args)


if __name__ == "__main__":
    main()
