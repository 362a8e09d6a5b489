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
Moved to [`adagrpo_trl.rankers.http`]; re-exported here so that old imports and
`python -m adagrpo_trl.rewards.http` keep working.
"""

from ..rankers.http import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    HTTPRanker,
    RankerServerThread,
    create_app,
    load_ranker,
    main,
    run_server_in_thread,
    serve_ranker,
)


__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "HTTPRanker",
    "RankerServerThread",
    "create_app",
    "load_ranker",
    "main",
    "run_server_in_thread",
    "serve_ranker",
]

if __name__ == "__main__":
    main()
