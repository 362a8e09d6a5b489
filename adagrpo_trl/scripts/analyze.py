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
`adagrpo-trl analyze`: the stratified analysis of a checkpoint (policy-rank x ranker-rank buckets of the ground
truth, and where the ranker would correct the policy), with the gate's `gate_tau` / `gate_rho`
(see docs/method.md#definitions).

    adagrpo-trl analyze --config ml-100k
    adagrpo-trl analyze --model_path runs/ml-100k/sft --data_dir runs/ml-100k/data --ranker_path runs/ml-100k/ranker
"""

import sys
from pathlib import Path
from typing import Any

from ..utils import atomic_write_json
from .configs import AnalyzeArguments
from .recipe import RecipeParser, make_command_parser
from .utils import setup_logging


DESCRIPTION = "policy-rank x ranker-rank buckets and the ranker's correction"


def run_analyze(args: AnalyzeArguments) -> dict[str, Any]:
    """
    Runs [`~adagrpo_trl.analysis.stratified_analysis`] on a checkpoint with a saved SASRec ranker and prints its table.

    Returns:
        `dict[str, Any]`: the analysis (buckets, shares, the ranker's corrections).
    """
    from transformers import AutoModelForCausalLM

    from ..analysis import format_stratified_analysis, stratified_analysis
    from ..data import PreparedData
    from ..rewards import RankerReward, SASRecRanker
    from ..tokenization import load_tokenizer

    prepared = PreparedData.load(args.data_dir)
    tokenizer = load_tokenizer(args.model_path)
    prepared.catalog.check_tokenizer(tokenizer, str(Path(args.data_dir, "catalog.json")), args.model_path)
    model = AutoModelForCausalLM.from_pretrained(args.model_path)
    reward = RankerReward(SASRecRanker.load(args.ranker_path), prepared.catalog, transform=args.reward_transform)
    result = stratified_analysis(
        model,
        tokenizer,
        prepared.datasets[args.split],
        prepared.catalog,
        reward,
        num_generations=args.num_generations,
        tau=args.gate_tau,
        rho=args.gate_rho,
        num_cross_negatives=args.num_cross_negatives,
        batch_size=args.batch_size,
        max_samples=args.max_samples,
    )
    if args.output_file:
        atomic_write_json(args.output_file, result, indent=2, default=str)
    print(format_stratified_analysis(result))  # noqa: T201
    return result


def make_parser() -> RecipeParser:
    """The parser of `adagrpo-trl analyze`: [`AnalyzeArguments`] from `--config` (a file or a packaged recipe name) and flags."""
    return make_command_parser("analyze", description=DESCRIPTION)


def main(argv: list[str] | None = None) -> Any:
    """Runs `adagrpo-trl analyze` with `argv` (default: `sys.argv[1:]`) and returns what [`run_analyze`] returns."""
    setup_logging()
    (args,) = make_parser().parse_args_and_config(sys.argv[1:] if argv is None else list(argv))
    return run_analyze(args)


if __name__ == "__main__":
    main()
