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
"""The packaged recipes: every file parses with its command's dataclasses, names resolve, pipelines compose."""

import shutil
from pathlib import Path

import pytest
import yaml
from transformers.utils import is_torch_bf16_gpu_available

from adagrpo_trl.cli import make_parser
from adagrpo_trl.scripts.configs import RECIPE_FILES
from adagrpo_trl.scripts.recipe import (
    load_recipe,
    packaged_recipes_dir,
    resolve_accelerate_config,
    resolve_recipe,
    split_recipe_section,
)


RECIPES_DIR = packaged_recipes_dir()
RECIPES = sorted(RECIPES_DIR.rglob("*.yaml"))
FIXTURES = Path(__file__).parent / "fixtures" / "flat_recipes"
# The pipeline recipes as they were before the per-stage split (flat sections), and the packaged recipe composed from
# the stage recipes that replaced each.
FLAT_PIPELINES = {
    "ml-100k_pipeline.yaml": "ml-100k",
    "ml-1m_pipeline.yaml": "ml-1m",
    "qwen2.5-0.5b_pipeline.yaml": "qwen2.5-0.5b",
    "synthetic_pipeline_tiny.yaml": "synthetic/pipeline_tiny",
}


def command_of(recipe: Path) -> str:
    """The command a packaged recipe is written for: its file name in the dataset folder (see RECIPE_FILES)."""
    inner = recipe.relative_to(RECIPES_DIR).relative_to(recipe.relative_to(RECIPES_DIR).parts[0]).as_posix()
    if inner.startswith("train/"):
        return "train"
    if inner.startswith("pipeline"):
        return "pipeline"
    commands = {file: command for command, file in RECIPE_FILES.items()}
    assert inner in commands, f"{recipe} is not named after a command ({sorted(commands)}, train/*, pipeline*)"
    return commands[inner]


def test_recipes_are_packaged():
    assert RECIPES_DIR.is_relative_to(Path(__file__).resolve().parents[1] / "adagrpo_trl")
    assert {path.name for path in RECIPES_DIR.iterdir() if path.is_dir()} >= {"ml-100k", "ml-1m", "synthetic"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(RECIPES_DIR)))
def test_every_recipe_parses(recipe):
    # each file parses with its command's dataclasses; an unknown key or a wrong type fails (see test_bad_inputs.py)
    command = command_of(recipe)
    overrides = []
    if yaml.safe_load(recipe.read_text()).get("bf16") and not is_torch_bf16_gpu_available():
        # a GPU recipe: its keys are checked all the same, but TrainingArguments refuses bf16 without a GPU
        overrides = ["--bf16", "false"]
    parsed = make_parser(command).parse_args_and_config(["--config", str(recipe), *overrides])
    if command == "pipeline":
        # every section's keys belong to the stage that receives them
        (pipeline,) = parsed
        for section in ("prepare", "sft", "ranker", "evaluate"):
            split_recipe_section(section, getattr(pipeline, section))
        for name, overrides in pipeline.methods.items():
            split_recipe_section("train", {**pipeline.train, **(overrides or {})}, name)


@pytest.mark.parametrize("command", sorted(RECIPE_FILES))
def test_dataset_name_resolves_to_the_commands_recipe(command):
    path = resolve_recipe("ml-100k", command)
    assert path == RECIPES_DIR / "ml-100k" / RECIPE_FILES[command] and path.is_file()
    parsed = make_parser(command).parse_args_and_config(["--config", "ml-100k"])
    assert parsed  # the packaged file parses with the command's dataclasses


def test_recipe_names_paths_and_unknown_names(tmp_path):
    assert resolve_recipe("ml-100k/train/grpo", "train") == RECIPES_DIR / "ml-100k" / "train" / "grpo.yaml"
    assert resolve_recipe("ml-1m/pipeline_cpu", "pipeline") == RECIPES_DIR / "ml-1m" / "pipeline_cpu.yaml"
    _, config = make_parser("train").parse_args_and_config(["--config", "ml-100k/train/grpo"])
    assert (config.gate_mode, config.nll_coef) == ("always", 0.0)
    own = tmp_path / "my_train.yaml"
    shutil.copy(RECIPES_DIR / "ml-100k" / "train" / "adagrpo.yaml", own)
    assert resolve_recipe(str(own), "train") == own  # a path is taken as is
    with pytest.raises(ValueError, match=r"'ml-10k' is neither a file nor a packaged recipe; .*'ml-100k', 'ml-1m'"):
        resolve_recipe("ml-10k", "train")
    with pytest.raises(ValueError, match=r"'ml-10k' is neither a file nor a packaged recipe"):
        make_parser("pipeline").parse_args_and_config(["--config", "ml-10k"])
    with pytest.raises(ValueError, match="has no packaged recipe"):
        resolve_recipe("ml-100k", "serve-ranker")


def test_command_line_overrides_a_named_recipe():
    _, config = make_parser("train").parse_args_and_config(["--config", "ml-100k", "--max_steps", "7"])
    assert config.max_steps == 7 and config.learning_rate == 1e-4


@pytest.mark.parametrize("fixture", sorted(FLAT_PIPELINES))
def test_composed_pipeline_equals_the_flat_recipe_it_replaced(fixture):
    # The per-stage split changes no setting of the pipeline: the composed recipe has the same sections as the flat
    # file it replaced (copied in tests/fixtures), apart from the analysis section (defaults either way).
    flat = yaml.safe_load((FIXTURES / fixture).read_text())
    composed = load_recipe(resolve_recipe(FLAT_PIPELINES[fixture], "pipeline"), "pipeline")
    assert composed.pop("analyze", {}) == flat.pop("analyze", {})
    assert composed == flat
    # and so does what each method trains with
    (pipeline,) = make_parser("pipeline").parse_args_and_config(["--config", FLAT_PIPELINES[fixture]])
    for name, overrides in flat["methods"].items():
        assert {**pipeline.train, **pipeline.methods[name]} == {**flat["train"], **overrides}


def test_a_method_recipe_is_what_the_pipeline_trains_it_with():
    # train/<method>.yaml run alone = the pipeline's method, apart from the folders and the seed the pipeline sets
    (pipeline,) = make_parser("pipeline").parse_args_and_config(["--config", "ml-100k"])
    for name in pipeline.methods:
        alone = yaml.safe_load((RECIPES_DIR / "ml-100k" / "train" / f"{name}.yaml").read_text())
        for key in ("data_dir", "model_name_or_path", "ranker_path", "output_dir", "seed"):
            alone.pop(key)
        assert alone == {**pipeline.train, **pipeline.methods[name]}


def test_composition_rules(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "prepare.yaml").write_text("output_dir: elsewhere\nseed: 3\ndataset: synthetic\nmax_history: 5\n")
    (tmp_path / "train" / "a.yaml").write_text("output_dir: x\nmax_steps: 4\ngate_tau: 0.5\ngate_mode: adaptive\n")
    (tmp_path / "train" / "b.yaml").write_text("output_dir: y\nmax_steps: 4\ngate_mode: always\nnll_coef: 0.0\n")
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text(
        "output_dir: run\nstages: {prepare: prepare.yaml}\nprepare: {max_history: 7}\n"
        "train: {learning_rate: 0.1}\nmethods: {a: train/a.yaml, b: train/b.yaml, c: {gate_mode: never}}\n"
    )
    (pipeline,) = make_parser("pipeline").parse_args_and_config(["--config", str(recipe)])
    assert pipeline.prepare == {"dataset": "synthetic", "max_history": 7}  # folders and seed are the pipeline's
    assert pipeline.train == {"max_steps": 4, "learning_rate": 0.1}
    assert pipeline.methods == {
        "a": {"gate_tau": 0.5, "gate_mode": "adaptive"},
        "b": {"gate_mode": "always", "nll_coef": 0.0},
        "c": {"gate_mode": "never"},
    }
    recipe.write_text("output_dir: run\nstages: {prepare: missing.yaml}\n")
    with pytest.raises(ValueError, match=r"stages.prepare: no stage recipe"):
        make_parser("pipeline").parse_args_and_config(["--config", str(recipe)])
    recipe.write_text("output_dir: run\nstages: {train: train/a.yaml}\n")
    with pytest.raises(ValueError, match=r"Unknown stage 'train'.*training recipes go under 'methods'"):
        make_parser("pipeline").parse_args_and_config(["--config", str(recipe)])
    (tmp_path / "train" / "b.yaml").write_text("max_step: 4\n")
    recipe.write_text("output_dir: run\nmethods: {b: train/b.yaml}\n")
    with pytest.raises(ValueError, match=r"Unknown key 'max_step' in .*b.yaml \(the pipeline's 'train' stage\)"):
        make_parser("pipeline").parse_args_and_config(["--config", str(recipe)])


def test_accelerate_configs_resolve_by_name(tmp_path):
    for name in ("multi_cpu", "ddp", "zero2", "zero3"):
        path = resolve_accelerate_config(name)
        assert path.name == f"{name}.yaml" and path.parent.name == "accelerate_configs"
        assert yaml.safe_load(path.read_text())["compute_environment"] == "LOCAL_MACHINE"
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: NO\n")
    assert resolve_accelerate_config(str(own)) == own
    with pytest.raises(ValueError, match=r"'fsdp9' is neither a file nor one of the packaged \['ddp', 'multi_cpu'"):
        resolve_accelerate_config("fsdp9")


@pytest.mark.parametrize(
    "command, module", [("train", "adagrpo_trl.scripts.train"), ("sft", "adagrpo_trl.scripts.sft")]
)
def test_accelerate_config_relaunches_the_command_under_accelerate(monkeypatch, command, module):
    # `--accelerate_config multi_cpu --num_processes 2` becomes accelerate's own launch of the command module
    from accelerate.commands import launch

    from adagrpo_trl.cli import run

    launched = []
    monkeypatch.setattr(launch, "launch_command", launched.append)
    result = run([command, "--config", "ml-100k", "--accelerate_config", "multi_cpu", "--num_processes", "2"])
    assert result is None
    (args,) = launched
    assert Path(args.config_file) == resolve_accelerate_config("multi_cpu")
    assert args.num_processes == 2 and args.module and args.training_script == module
    assert args.training_script_args == ["--config", "ml-100k"]
