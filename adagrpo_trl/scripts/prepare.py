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
`adagrpo-trl prepare`: an interaction log (MovieLens, its sparse proxy, RecBole, CSV/Parquet or the simulator) ->
leave-one-out datasets, semantic IDs, the item catalog and the SID tokenizer; the semantic IDs' quality goes to
`prepare_summary.json` (`sid_quality`) and `sid_report.md`.

    adagrpo-trl prepare --config ml-100k
    adagrpo-trl prepare --dataset ml-100k --output_dir runs/ml-100k/data
    adagrpo-trl prepare --config ml-1m-sparse --sid_features cooccurrence --codebook_size 32
    python -m adagrpo_trl.scripts.prepare --config ml-100k
"""

import json
import logging
import sys
from pathlib import Path
from typing import Any

from .configs import PrepareArguments
from .recipe import RecipeParser, make_command_parser
from .utils import setup_logging


logger = logging.getLogger(__name__)

DESCRIPTION = "log -> datasets, semantic IDs, catalog and tokenizer"
SID_REPORT_FILE = "sid_report.md"  # the SID quality table, beside prepare_summary.json


def run_prepare(args: PrepareArguments) -> dict[str, Any]:
    """
    Prepares a dataset folder with [`~adagrpo_trl.data.prepare_data`] (the simulator's log first, for `synthetic`).

    Returns:
        `dict[str, Any]`: the summary (users, items, split sizes, SID collisions, ...).
    """
    from ..data import prepare_data, simulate_exposure_biased_logs
    from ..semantic_ids import load_item_embeddings
    from ..sid_report import sid_report_markdown

    items = None
    if args.dataset == "synthetic":
        simulated = simulate_exposure_biased_logs(
            num_users=args.synthetic_users,
            num_items=args.synthetic_items,
            exposure_bias=args.exposure_bias,
            popularity_skew=args.popularity_skew,
            seed=args.seed,
        )
        source, items = simulated.log, simulated.items
    else:
        source = args.dataset
    features = feature_item_ids = None
    if args.sid_embeddings is not None:
        features, feature_item_ids = load_item_embeddings(args.sid_embeddings)
    prepared = prepare_data(
        source,
        items,
        features=features,
        feature_item_ids=feature_item_ids,
        num_levels=args.num_levels,
        codebook_size=args.codebook_size,
        max_history=args.max_history,
        min_interactions=args.min_interactions,
        seed=args.seed,
        output_dir=args.output_dir,
        sid_features=args.sid_features,
        cooccurrence_weight=args.sid_cooccurrence_weight,
    )
    logger.info("Prepared %s into %s: %s", args.dataset, args.output_dir, json.dumps(prepared.summary))
    report = sid_report_markdown(
        prepared.summary["sid_quality"], title=f"Semantic IDs of {args.dataset} ({prepared.summary['sid_features']})"
    )
    (Path(args.output_dir) / SID_REPORT_FILE).write_text(report)
    logger.info("Semantic-ID quality (also in %s):\n%s", Path(args.output_dir) / SID_REPORT_FILE, report)
    return prepared.summary


def make_parser() -> RecipeParser:
    """The parser of `adagrpo-trl prepare`: [`PrepareArguments`] from `--config` (a file or a packaged recipe name) and flags."""
    return make_command_parser("prepare", description=DESCRIPTION)


def main(argv: list[str] | None = None) -> Any:
    """Runs `adagrpo-trl prepare` with `argv` (default: `sys.argv[1:]`) and returns what [`run_prepare`] returns."""
    setup_logging()
    (args,) = make_parser().parse_args_and_config(sys.argv[1:] if argv is None else list(argv))
    return run_prepare(args)


if __name__ == "__main__":
    main()
