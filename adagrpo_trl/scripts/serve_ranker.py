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
`adagrpo-trl serve-ranker`: serves a saved SASRec ranker over HTTP (the `http` reward's service).

    adagrpo-trl serve-ranker --ranker_dir runs/ml-100k/ranker --port 8000
"""

import sys
from typing import Any

from .configs import ServeArguments
from .recipe import RecipeParser, make_command_parser
from .utils import setup_logging


DESCRIPTION = "serve a saved ranker over HTTP"


def run_serve_ranker(args: ServeArguments) -> None:
    """Serves the saved ranker over HTTP until interrupted (see [`~adagrpo_trl.rewards.serve_ranker`])."""
    from ..rewards import SASRecRanker, serve_ranker

    serve_ranker(SASRecRanker.load(args.ranker_dir), host=args.host, port=args.port)


def make_parser() -> RecipeParser:
    """The parser of `adagrpo-trl serve-ranker`: [`ServeArguments`] from `--config` (a file or a packaged recipe name) and flags."""
    return make_command_parser("serve-ranker", (ServeArguments,), description=DESCRIPTION)


def main(argv: list[str] | None = None) -> Any:
    """Runs `adagrpo-trl serve-ranker` with `argv` (default: `sys.argv[1:]`) and returns what [`run_serve_ranker`] returns."""
    setup_logging()
    (args,) = make_parser().parse_args_and_config(sys.argv[1:] if argv is None else list(argv))
    return run_serve_ranker(args)


if __name__ == "__main__":
    main()
