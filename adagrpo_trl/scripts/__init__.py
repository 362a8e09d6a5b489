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
The `adagrpo-trl` commands, one module each (`prepare`, `sft`, `train_ranker`, `serve_ranker`, `train`,
`evaluate`, `analyze`, `pipeline`), each with `make_parser()`, `main(argv=None)` and its `run_<command>` function,
and runnable as `python -m adagrpo_trl.scripts.<command>` (so `accelerate launch -m adagrpo_trl.scripts.train`).
`configs` holds every argument dataclass and the recipe-section table, `recipe` the YAML checks and packaged-recipe
names, `report` the pipeline's results table and plots.
"""
