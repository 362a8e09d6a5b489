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
"""A plain install holds what the documented commands need: the recipes and accelerate configs ship in the wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_recipes_and_accelerate_configs(tmp_path):
    # offline: no build isolation, no dependencies (the build backend is the installed setuptools)
    build = tmp_path / "build"
    shutil_copy = [
        sys.executable,
        "-c",
        "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], ignore=shutil.ignore_patterns('.venv', '.git', 'runs', 'build', '*.egg-info', '__pycache__'))",
    ]
    subprocess.run([*shutil_copy, str(ROOT), str(build)], check=True, timeout=300)  # the build writes into the tree
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", ".", "-w", str(tmp_path / "dist")],
        cwd=build, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("adagrpo_trl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = sorted(
        path.relative_to(ROOT).as_posix()
        for folder in ("adagrpo_trl/recipes", "adagrpo_trl/accelerate_configs")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".yaml", ".md")
    )
    assert {"adagrpo_trl/recipes/ml-100k/pipeline.yaml", "adagrpo_trl/recipes/ml-100k/train/adagrpo.yaml",
            "adagrpo_trl/accelerate_configs/multi_cpu.yaml"} <= set(packaged)  # fmt: skip
    assert [name for name in packaged if name not in names] == []
    assert "adagrpo_trl/scripts/train.py" in names and "adagrpo_trl/checkpoints.py" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "examples/")) for name in names)
    # installed from the wheel (no repository around), the names resolve to the installed package data
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    probe = (
        "import adagrpo_trl.scripts.recipe as r; print(r.resolve_recipe('ml-100k', 'train')); "
        "print(r.resolve_accelerate_config('multi_cpu')); from adagrpo_trl.cli import make_parser; "
        "print(make_parser('pipeline').parse_args_and_config(['--config', 'ml-100k'])[0].methods)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    train, accelerate_config, methods = done.stdout.splitlines()[-3:]
    assert train == str(site / "adagrpo_trl" / "recipes" / "ml-100k" / "train" / "adagrpo.yaml")
    assert accelerate_config == str(site / "adagrpo_trl" / "accelerate_configs" / "multi_cpu.yaml")
    assert "'grpo': {'gate_mode': 'always', 'nll_coef': 0.0}" in methods
