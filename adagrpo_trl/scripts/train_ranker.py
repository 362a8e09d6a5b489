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
`adagrpo-trl train-ranker`: trains the SASRec ranker on the training part of each user's sequence and writes its
quality report (AUC / HR@10 against 100 random items, per popularity bucket) and its teacher report (full ranking as
the policy is evaluated, per bucket, per popularity bias λ, and against a policy).

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
    Trains the SASRec ranker on the training part of each user's sequence (best epoch by validation HR@10), then
    writes and prints two reports on the test users: the quality report (AUC / HR@10 against 100 random items, per
    popularity bucket: `quality_report.*`) and the teacher report (full ranking of the catalog, as the policy is
    evaluated, masked and unmasked, per bucket, per popularity bias λ, and against a policy when
    `teacher_policy_path` is set: `teacher_report.*`). `quality_report.json`, written last, marks the stage complete.

    Returns:
        `dict[str, Any]`: `{"quality": ..., "teacher": ...}`.
    """
    import dataclasses
    import time
    from collections import Counter

    from ..data import PreparedData
    from ..rankers import (
        SASRecConfig,
        format_quality_report,
        format_teacher_report,
        prepared_teacher_report,
        ranker_quality_report,
        train_ranker_from_prepared,
    )

    prepared = PreparedData.load(args.data_dir)
    config = SASRecConfig(
        max_len=args.max_len,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        dropout=args.dropout,
    )
    start = time.perf_counter()
    ranker = train_ranker_from_prepared(
        prepared,
        config,
        item_feature_fields=args.item_feature_fields,
        user_feature_fields=args.user_feature_fields,
        output_dir=args.output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.learning_rate,
        loss=args.loss,
        num_negatives=args.num_negatives,
        negative_sampling=args.negative_sampling,
        patience=args.patience,
        seed=args.seed,
        checkpoint_dir=Path(args.output_dir) / "fit_checkpoint",  # a killed run resumes at its last epoch
    )
    train_seconds = time.perf_counter() - start
    histories = prepared.user_histories
    test_rows = list(prepared.datasets["test"])
    if histories is not None and "target_position" in prepared.datasets["test"].column_names:
        test_rows = histories.with_full_history(test_rows)
    popularity = Counter(item for sequence in prepared.train_sequences for item in sequence)
    quality = ranker_quality_report(ranker, test_rows, popularity, seed=args.seed)

    policy_hits = policy_rollouts = None
    if args.teacher_policy_path is not None:
        policy_hits, policy_rollouts = _policy_per_user(args, prepared)
    teacher = prepared_teacher_report(
        ranker,
        prepared,
        max_examples=args.teacher_max_examples,
        popularity_biases=args.popularity_biases,
        policy_hits=policy_hits,
        policy_rollouts=policy_rollouts,
        seed=args.seed,
    )
    teacher["ranker"] = {
        "train_seconds": train_seconds,
        "best_epoch": ranker.best_epoch,
        "training": ranker.training_args,
        "training_log": ranker.training_log,
        "config": dataclasses.asdict(config),
        "item_feature_fields": list(args.item_feature_fields),
        "user_feature_fields": list(args.user_feature_fields),
    }
    teacher_table = format_teacher_report(teacher)
    quality_table = format_quality_report(quality)
    atomic_write_text(Path(args.output_dir, "teacher_report.md"), teacher_table + "\n")
    atomic_write_json(Path(args.output_dir, "teacher_report.json"), teacher, indent=2)
    atomic_write_text(Path(args.output_dir, "quality_report.md"), quality_table + "\n")
    atomic_write_json(Path(args.output_dir, "quality_report.json"), quality, indent=2)  # last: the stage's marker
    print(f"Ranker trained in {train_seconds:.0f} s (best epoch {ranker.best_epoch}).")  # noqa: T201
    print("Ranker quality on the test split (AUC/HR@10 of the target vs 100 random items):")  # noqa: T201
    print(quality_table)  # noqa: T201
    print(teacher_table)  # noqa: T201
    return {"quality": quality, "teacher": teacher}


def _policy_per_user(args: RankerArguments, prepared: Any) -> tuple[list[bool], list[list[str | None]]]:
    """The policy's HR@10 hit and top-20 beam items on each test row (same order as the teacher report's rows)."""
    from transformers import AutoModelForCausalLM

    from ..evaluation import hits_at_k, prompts_and_targets, recommend
    from ..tokenization import load_tokenizer

    test = prepared.datasets["test"]
    if args.teacher_max_examples is not None:
        test = test.select(range(min(args.teacher_max_examples, len(test))))
    tokenizer = load_tokenizer(args.teacher_policy_path)
    model = AutoModelForCausalLM.from_pretrained(args.teacher_policy_path)
    prompts, targets = prompts_and_targets(test, prepared.catalog)
    ranked = recommend(model, tokenizer, prompts, prepared.catalog, 20, False, 16)
    return [bool(hit) for hit in hits_at_k(ranked, targets, 10)], ranked


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
