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
`adagrpo-trl train-ranker`: trains the SASRec ranker on the training prefixes and writes its quality report
(AUC / HR@10 against 100 random items, per popularity bucket).

    adagrpo-trl train-ranker --config ml-100k
    adagrpo-trl train-ranker --data_dir runs/ml-100k/data --output_dir runs/ml-100k/ranker
"""

import sys
from pathlib import Path
from typing import Any

from ..utils import atomic_write_json, atomic_write_text
from .configs import RankerArguments
from .recipe import RecipeParser, make_command_parser
from .utils import setup_logging


DESCRIPTION = "train the SASRec ranker and print its quality report"


def run_train_ranker(args: RankerArguments) -> dict[str, Any]:
    """
    Trains the SASRec ranker on the training sequences, then writes and prints its quality report on the test split
    (`quality_report.json`, written last, marks the stage complete).

    Returns:
        `dict[str, Any]`: the quality report.
    """
    from collections import Counter

    from ..data import PreparedData
    from ..rewards import SASRecConfig, format_quality_report, ranker_quality_report, train_ranker

    prepared = PreparedData.load(args.data_dir)
    if not prepared.train_sequences:
        raise ValueError(f"{args.data_dir} has no training sequences; prepare it again with this version.")
    config = SASRecConfig(
        max_len=args.max_len, hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads
    )
    ranker = train_ranker(
        prepared.train_sequences,
        config=config,
        output_dir=args.output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.learning_rate,
        num_negatives=args.num_negatives,
        negative_sampling=args.negative_sampling,
        seed=args.seed,
    )
    popularity = Counter(item for sequence in prepared.train_sequences for item in sequence)
    report = ranker_quality_report(ranker, prepared.datasets["test"], popularity, seed=args.seed)
    table = format_quality_report(report)
    atomic_write_text(Path(args.output_dir, "quality_report.md"), table + "\n")
    atomic_write_json(Path(args.output_dir, "quality_report.json"), report, indent=2)  # last: the stage's marker
    print("Ranker quality on the test split (AUC/HR@10 of the target vs 100 random items):")  # noqa: T201
    print(table)  # noqa: T201
    return report


def make_parser() -> RecipeParser:
    """The parser of `adagrpo-trl train-ranker`: [`RankerArguments`] from `--config` (a file or a packaged recipe name) and flags."""
    return make_command_parser("train-ranker", description=DESCRIPTION)


def main(argv: list[str] | None = None) -> Any:
    """Runs `adagrpo-trl train-ranker` with `argv` (default: `sys.argv[1:]`) and returns what [`run_train_ranker`] returns."""
    setup_logging()
    (args,) = make_parser().parse_args_and_config(sys.argv[1:] if argv is None else list(argv))
    return run_train_ranker(args)


if __name__ == "__main__":
    main()
