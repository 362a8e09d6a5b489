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
Recipes: reading and checking the YAML files the commands take with `--config`, resolving packaged recipe and
accelerate-config names, and composing a pipeline recipe from the stage recipes of its dataset folder.

- [`check_recipe_values`] / [`check_recipe_file`]: an unknown key or a value of the wrong type fails at once, naming
  the file (or pipeline section) and the key, instead of deep inside training.
- [`resolve_recipe`]: `--config ml-100k` (a dataset folder of `adagrpo_trl/recipes/`, the command picks its file),
  `--config ml-100k/train/grpo` (a packaged file) or a path.
- [`compose_pipeline_recipe`]: `stages: {sft: sft.yaml, ...}` and `methods: {grpo: train/grpo.yaml, ...}` in a
  pipeline recipe read those stage recipes, so each stage has one file that both its command and the pipeline use.
- [`RecipeParser`]: TRL's `TrlParser` with the above applied to `--config`.
"""

import collections.abc
import dataclasses
import difflib
import enum
import importlib.resources
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trl import TrlParser

from .configs import COMMAND_SECTIONS, PIPELINE_SET_KEYS, RECIPE_FILES, RECIPE_SECTIONS, PipelineArguments


_INVALID = object()
_TRUE, _FALSE = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


def _convert(value: Any, annotation: Any, parse_strings: bool) -> Any:
    """`value` as a field of type `annotation` takes it, or `_INVALID`. Strings are parsed as on the command line."""
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, bool) and any(isinstance(arm, type) and issubclass(arm, enum.Enum) for arm in args):
            return _INVALID  # e.g. `save_strategy: no`, which YAML reads as False
        for parse in (False, parse_strings):  # an exact match first: "10" stays a string for `int | str`
            for arm in args:
                converted = _convert(value, arm, parse)
                if converted is not _INVALID:
                    return converted
        return _INVALID
    if annotation is type(None):
        return None if value is None else _INVALID
    if origin is typing.Literal:
        matches = [
            arg for arg in args if arg == value or (parse_strings and isinstance(value, str) and str(arg) == value)
        ]
        return matches[0] if matches else _INVALID
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        if not isinstance(value, list | tuple):
            return _INVALID
        element = args[0] if args else Any
        converted = [_convert(item, element, parse_strings) for item in value]
        return _INVALID if any(item is _INVALID for item in converted) else converted
    if origin is dict or annotation is dict:
        return value if isinstance(value, dict) else _INVALID
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if parse_strings and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        return _INVALID
    if annotation in (int, float):
        if isinstance(value, bool):
            return _INVALID
        if isinstance(value, int) or (annotation is float and isinstance(value, float)):
            return annotation(value)
        if parse_strings and isinstance(value, str):
            try:
                return annotation(value.strip())
            except ValueError:
                return _INVALID
        return _INVALID
    if annotation is str:
        if isinstance(value, str):
            return value
        if parse_strings and isinstance(value, bool):  # e.g. `resume_from_checkpoint: true`
            return "true" if value else "false"
        if parse_strings and isinstance(value, int | float):  # e.g. `run_name: 2024`
            return str(value)
        return _INVALID
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        members = list(annotation)
        return value if value in members or value in [member.value for member in members] else _INVALID
    return value  # a type a YAML value cannot be checked against (e.g. a config object): left to the dataclass


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arm) for arm in args)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"one of {[member.value for member in annotation]}"
    return getattr(annotation, "__name__", str(annotation))


def check_recipe_values(values: dict[str, Any], dataclass_types: Sequence[type], where: str) -> list[dict[str, Any]]:
    """
    Splits a recipe's keys among the dataclasses that receive them and checks each value against its field's type, so
    that a typo or a wrong type fails at once with the key's name instead of deep inside training. Strings are parsed
    like command-line values (`"1e-3"` for a `float`, `"true"` for a `bool`), other values must have the field's type
    (an `int` is accepted for a `float`, a number or boolean for a plain `str` field, e.g. `run_name: 2024` or
    `resume_from_checkpoint: true`); `null` is accepted where the field is optional or defaults to `None`.

    Args:
        values (`dict[str, Any]`):
            The recipe's (or a recipe section's) keys and values.
        dataclass_types (`Sequence[type]`):
            The dataclasses; a key goes to the first one with a field of that name.
        where (`str`):
            The recipe file or section, for messages.

    Returns:
        `list[dict[str, Any]]`: the values of each dataclass, strings parsed to the fields' types.

    Raises:
        `ValueError`: naming `where` and the unknown key (with the closest known keys), or the key, the expected type
        and the value.
    """
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping of keys to values, got {type(values).__name__} {values!r}.")
    fields = []
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        fields.append({f.name: (hints.get(f.name, Any), f) for f in dataclasses.fields(cls) if f.init})
    parts: list[dict[str, Any]] = [{} for _ in dataclass_types]
    for key, value in values.items():
        index = next((i for i, known in enumerate(fields) if key in known), None)
        if index is None:
            known = sorted({name for names in fields for name in names})
            close = difflib.get_close_matches(str(key), known, n=3)
            hint = f"; did you mean {' or '.join(repr(name) for name in close)}?" if close else "."
            raise ValueError(
                f"Unknown key {key!r} in {where}{hint} (it takes the fields of "
                f"{', '.join(cls.__name__ for cls in dataclass_types)}; `adagrpo-trl <command> --help` lists them)"
            )
        annotation, field_ = fields[index][key]
        if value is None and field_.default is None:
            converted = None
        else:
            converted = _convert(value, annotation, parse_strings=True)
        if converted is _INVALID:
            hint = ""
            if isinstance(value, bool):
                hint = " (YAML reads unquoted yes/no/on/off/true/false as booleans: quote the value)"
            raise ValueError(
                f"{where}: key {key!r} must be {_type_name(annotation)}, got {type(value).__name__} {value!r}{hint}."
            )
        parts[index][key] = converted
    return parts


def split_recipe_section(
    section: str, values: dict[str, Any] | None, where: str | None = None
) -> list[dict[str, Any]]:
    """
    Splits a pipeline section's keys among the dataclasses of that stage ([`RECIPE_SECTIONS`]) and checks their types
    with [`check_recipe_values`]: an unknown key or a value of the wrong type raises an error naming the section and
    the key; strings such as `"1e-3"` are parsed to the field's type.

    Args:
        section (`str`):
            `prepare`, `sft`, `ranker`, `train` (also for `methods.<name>` overrides), `evaluate` or `analyze`.
        values (`dict[str, Any]` or `None`):
            The section's keys and values (`None`: empty).
        where (`str`, *optional*):
            What the messages call it; defaults to "the pipeline's '<section>' section".

    Returns:
        `list[dict[str, Any]]`: the values of each of the stage's dataclasses.

    Example:

    ```python
    >>> from adagrpo_trl.scripts.recipe import split_recipe_section
    >>> script, config = split_recipe_section("train", {"max_steps": "100", "ranker_path": "runs/x/ranker"})
    >>> config
    {'max_steps': 100}
    ```
    """
    if section not in RECIPE_SECTIONS:
        raise ValueError(f"Unknown pipeline section {section!r}; expected one of {sorted(RECIPE_SECTIONS)}.")
    where = where or f"the pipeline's {section!r} section"
    return check_recipe_values({} if values is None else values, RECIPE_SECTIONS[section], where)


def check_pipeline_sections(args: PipelineArguments) -> None:
    """Checks every section of a pipeline recipe (and each method's overrides), so a typo in `train` fails in seconds."""
    for section in ("prepare", "sft", "ranker", "evaluate"):
        split_recipe_section(section, getattr(args, section))
    if args.analyze is not None:
        split_recipe_section("analyze", args.analyze)
    # An empty mapping is allowed: it runs the shared stages (data, SFT, ranker, SFT evaluation) only.
    if not isinstance(args.methods, dict):
        raise ValueError(f"The pipeline's 'methods' must map method names to overrides, got {args.methods!r}.")
    split_recipe_section("train", args.train)
    for name, overrides in args.methods.items():
        if overrides is not None and not isinstance(overrides, dict):
            raise ValueError(f"The pipeline's 'methods.{name}' must be a mapping of overrides, got {overrides!r}.")
        split_recipe_section("train", overrides, f"the pipeline's 'methods.{name}' section")


# ---------------------------------------------------------------------------------------------------------------------
# Reading recipes, packaged names, pipeline composition
# ---------------------------------------------------------------------------------------------------------------------


def packaged_recipes_dir() -> Path:
    """The folder of the recipes shipped with the package (`adagrpo_trl/recipes/<dataset>/...`)."""
    return Path(str(importlib.resources.files("adagrpo_trl").joinpath("recipes")))


def packaged_accelerate_configs_dir() -> Path:
    """The folder of the accelerate configs shipped with the package (`adagrpo_trl/accelerate_configs/*.yaml`)."""
    return Path(str(importlib.resources.files("adagrpo_trl").joinpath("accelerate_configs")))


def packaged_recipe_names() -> list[str]:
    """Every packaged recipe name: the dataset folders (`ml-100k`) and their files (`ml-100k/train/grpo`)."""
    root = packaged_recipes_dir()
    datasets = sorted(path.name for path in root.iterdir() if path.is_dir() and not path.name.startswith(("_", ".")))
    files = sorted(path.relative_to(root).with_suffix("").as_posix() for path in root.rglob("*.yaml"))
    return datasets + files


def resolve_recipe(name_or_path: str | os.PathLike, command: str) -> Path:
    """
    The recipe file `--config NAME_OR_PATH` means for `command`: an existing file is taken as is; otherwise a name of
    the packaged recipes (`adagrpo_trl/recipes/`): a dataset folder (`ml-100k`: the command's own file in it, see
    [`RECIPE_FILES`], e.g. `train/adagrpo.yaml` for `train`) or a file without its `.yaml` suffix
    (`ml-100k/train/grpo`, `ml-1m/pipeline_cpu`).

    Raises:
        `ValueError`: the name is neither a file nor a packaged recipe (the message lists the packaged names), or the
        dataset folder has no recipe for that command.

    Example:

    ```python
    >>> from adagrpo_trl.scripts.recipe import packaged_recipes_dir, resolve_recipe
    >>> resolve_recipe("ml-100k", "train").relative_to(packaged_recipes_dir()).as_posix()
    'ml-100k/train/adagrpo.yaml'
    ```
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    root = packaged_recipes_dir()
    name = str(name_or_path).strip("/").removesuffix(".yaml")
    if name and ".." not in Path(name).parts and not path.is_absolute():
        if (root / name).is_dir():
            if command not in RECIPE_FILES:
                raise ValueError(f"`adagrpo-trl {command}` has no packaged recipe; pass a YAML file to --config.")
            candidate = root / name / RECIPE_FILES[command]
            if candidate.is_file():
                return candidate
            raise ValueError(
                f"The packaged recipes of {name!r} have no {RECIPE_FILES[command]} for `adagrpo-trl {command}`; "
                f"they are {[n for n in packaged_recipe_names() if n.startswith(name + '/')]}."
            )
        if (root / f"{name}.yaml").is_file():
            return root / f"{name}.yaml"
    raise ValueError(
        f"--config {str(name_or_path)!r} is neither a file nor a packaged recipe; the packaged recipes are "
        f"{packaged_recipe_names()} (a dataset folder picks the command's own file)."
    )


def resolve_accelerate_config(name_or_path: str | os.PathLike) -> Path:
    """
    An accelerate config file: an existing path, or the name of one shipped in `adagrpo_trl/accelerate_configs/`
    (`multi_cpu`, `ddp`, `zero2`, `zero3`), as TRL resolves `--accelerate_config`.

    Raises:
        `ValueError`: neither a file nor a packaged name (the message lists the names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    root = packaged_accelerate_configs_dir()
    candidate = root / f"{str(name_or_path).removesuffix('.yaml')}.yaml"
    if candidate.is_file() and candidate.parent == root:
        return candidate
    names = sorted(p.stem for p in root.glob("*.yaml"))
    raise ValueError(f"--accelerate_config {str(name_or_path)!r} is neither a file nor one of the packaged {names}.")


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """
    A YAML recipe as a mapping.

    Raises:
        `ValueError`: naming the file: not UTF-8, not YAML, or not a mapping.
    """
    import yaml

    path = os.fspath(path)
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not valid UTF-8 (byte offset {error.start}).") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping of keys to values, got {type(config).__name__}.")
    return config


def _stage_settings(recipe_dir: Path, file: Any, section: str, where: str) -> dict[str, Any]:
    """A stage recipe's settings as a pipeline section: checked, without the keys the pipeline sets itself."""
    if not isinstance(file, str):
        raise ValueError(f"{where} must name a stage recipe (a YAML file), got {type(file).__name__} {file!r}.")
    path = Path(file) if Path(file).is_absolute() else recipe_dir / file
    if not path.is_file():
        raise ValueError(f"{where}: no stage recipe {str(path)!r}.")
    settings = {key: value for key, value in read_recipe(path).items() if key != "env"}
    check_recipe_values(settings, RECIPE_SECTIONS[section], f"{path} (the pipeline's {section!r} stage)")
    return {key: value for key, value in settings.items() if key not in PIPELINE_SET_KEYS[section]}


def compose_pipeline_recipe(config: dict[str, Any], recipe_dir: str | os.PathLike) -> dict[str, Any]:
    """
    A pipeline recipe with its stage recipes read into flat sections (what [`PipelineArguments`] takes).

    - `stages: {prepare: prepare.yaml, sft: sft.yaml, ranker: ranker.yaml, evaluate: evaluate.yaml, analyze: ...}`:
      each section is that stage recipe (paths relative to the pipeline recipe's folder), without the keys the
      pipeline sets itself (its folders and seed, see [`PIPELINE_SET_KEYS`]); an inline section of the same name is
      applied on top.
    - `methods: {adagrpo: train/adagrpo.yaml, grpo: train/grpo.yaml}`: a method named by a `train` recipe trains with
      exactly that recipe's settings; the keys every such recipe shares with the same value become the `train`
      section and the rest the method's overrides, so the composed recipe reads like a flat one. An inline `train`
      section overrides every method recipe; a method given as a mapping stays overrides of `train`.

    A recipe without `stages` and method files is returned unchanged.

    Raises:
        `ValueError`: an unknown stage, a missing file, or a stage recipe with an unknown key or a wrong type.
    """
    config = dict(config)
    recipe_dir = Path(recipe_dir)
    stages = config.pop("stages", None) or {}
    if not isinstance(stages, dict):
        raise ValueError(f"The pipeline's 'stages' must map stage names to recipe files, got {stages!r}.")
    for section, file in stages.items():
        if section not in RECIPE_SECTIONS or section == "train":
            known = sorted(set(RECIPE_SECTIONS) - {"train"})
            raise ValueError(
                f"Unknown stage {section!r} in the pipeline's 'stages' (expected one of {known}; training recipes go "
                "under 'methods')."
            )
        inline = config.get(section)
        if inline is not None and not isinstance(inline, dict):
            raise ValueError(f"The pipeline's {section!r} section must be a mapping, got {inline!r}.")
        config[section] = {**_stage_settings(recipe_dir, file, section, f"stages.{section}"), **(inline or {})}
    methods = config.get("methods")
    if isinstance(methods, dict) and any(isinstance(value, str) for value in methods.values()):
        files = {
            name: _stage_settings(recipe_dir, value, "train", f"methods.{name}")
            for name, value in methods.items()
            if isinstance(value, str)
        }
        first, *others = files.values()
        shared = {key: value for key, value in first.items() if all(key in o and o[key] == value for o in others)}
        inline_train = config.get("train") or {}
        if not isinstance(inline_train, dict):
            raise ValueError(f"The pipeline's 'train' section must be a mapping, got {inline_train!r}.")
        config["train"] = {**shared, **inline_train}
        config["methods"] = {
            name: (
                {key: value for key, value in files[name].items() if key not in shared and key not in inline_train}
                if name in files
                else value
            )
            for name, value in methods.items()
        }
    return config


def load_recipe(path: str | os.PathLike, command: str) -> dict[str, Any]:
    """A command's recipe as the mapping it is parsed from: the YAML file, composed for `pipeline` (see [`compose_pipeline_recipe`])."""
    config = read_recipe(path)
    if command == "pipeline":
        env = config.pop("env", None)
        config = compose_pipeline_recipe(config, Path(path).parent)
        if env is not None:
            config["env"] = env
    return config


def check_recipe_file(path: str | os.PathLike, dataclass_types: Sequence[type], command: str) -> dict[str, Any]:
    """
    Reads a command's recipe with [`load_recipe`] and checks it with [`check_recipe_values`] (the `env` mapping TRL
    reads is skipped).

    Returns:
        `dict[str, Any]`: the recipe (composed, for `pipeline`), `env` included.

    Raises:
        `ValueError`: naming the file: not UTF-8, not YAML, not a mapping, an unknown key or a value of the wrong type.
    """
    config = load_recipe(path, command)
    check_recipe_values(
        {key: value for key, value in config.items() if key != "env"},
        dataclass_types,
        f"{os.fspath(path)} (adagrpo-trl {command})",
    )
    return config


class RecipeParser(TrlParser):
    """
    TRL's `TrlParser` for an `adagrpo-trl` command: `--config` takes a path or a packaged recipe name
    ([`resolve_recipe`]), the recipe's unknown keys and values of the wrong type are rejected with the file and key
    named ([`check_recipe_file`]), and a pipeline recipe is composed from its stage recipes. Command-line flags
    override the recipe's values, as with TRL.

    Args:
        dataclass_types (`Sequence[type]`):
            The command's argument dataclasses.
        command (`str`):
            The command name (`train`, `pipeline`, ...): which packaged file a dataset name means.
        **kwargs:
            Passed to `TrlParser` (`description`, ...); `prog` defaults to `adagrpo-trl <command>`.
    """

    def __init__(self, dataclass_types: Sequence[type], command: str, **kwargs: Any):
        kwargs.setdefault("prog", f"adagrpo-trl {command}")
        super().__init__(dataclass_types, **kwargs)
        self.command = command

    def parse_args_and_config(
        self,
        args: Sequence[str] | None = None,
        return_remaining_strings: bool = False,
        fail_with_unknown_args: bool = True,
        separate_remaining_strings: bool = False,
    ) -> tuple:
        args = list(args) if args is not None else sys.argv[1:]
        if "--config" not in args or args.index("--config") + 1 >= len(args):
            return super().parse_args_and_config(
                args, return_remaining_strings, fail_with_unknown_args, separate_remaining_strings
            )
        index = args.index("--config")
        path = resolve_recipe(args[index + 1], self.command)
        args = args[:index] + args[index + 2 :]
        strict = fail_with_unknown_args and not return_remaining_strings  # else the caller takes the unknown keys
        if strict:
            config = check_recipe_file(path, list(self.dataclass_types), self.command)
        else:
            config = load_recipe(path, self.command)
        # As TrlParser: the `env` mapping is exported, the recipe's values become the defaults, flags override them.
        env = config.pop("env", {})
        if not isinstance(env, dict):
            raise ValueError(f"{path}: `env` should be a mapping, got {env!r}.")
        for key, value in env.items():
            os.environ[key] = str(value)
        config_remaining = self.set_defaults_with_config(**config)
        output = self.parse_args_into_dataclasses(args=args, return_remaining_strings=return_remaining_strings)
        if return_remaining_strings:
            if separate_remaining_strings:
                return output[:-1] + (config_remaining, output[-1])
            return output[:-1] + (config_remaining + output[-1],)
        if fail_with_unknown_args and config_remaining:
            raise ValueError(f"Unknown arguments from config file {path}: {config_remaining}.")
        return output


def make_command_parser(
    command: str, dataclass_types: Sequence[type] | None = None, description: str | None = None
) -> RecipeParser:
    """The [`RecipeParser`] of a command; a stage command's dataclasses default to its [`RECIPE_SECTIONS`] entry."""
    if dataclass_types is None:
        dataclass_types = RECIPE_SECTIONS[COMMAND_SECTIONS[command]]
    return RecipeParser(dataclass_types, command, description=description)
