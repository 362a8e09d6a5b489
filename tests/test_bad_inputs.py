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
The bad-input matrix: every malformed input fails with a `ValueError` naming the file / row / field / value, or is a
documented skip whose count is logged. Also the atomic writes: a write that fails midway leaves the previous file.
"""

import json
import logging
import os
import stat

import pandas as pd
import pytest
from datasets import Dataset

from adagrpo_trl import AdaGRPOConfig, AdaGRPOTrainer, ItemCatalog
from adagrpo_trl.cli import make_parser, run
from adagrpo_trl.data import (
    PreparedData,
    build_datasets,
    check_dataset,
    check_ground_truths,
    leave_one_out_split,
    load_interactions,
    load_recbole,
    prepare_data,
)
from adagrpo_trl.evaluation import prompts_and_targets
from adagrpo_trl.rewards import RankerReward
from adagrpo_trl.scripts.configs import PipelineArguments
from adagrpo_trl.scripts.recipe import check_pipeline_sections, check_recipe_values, split_recipe_section
from adagrpo_trl.tokenization import build_sid_tokenizer, load_tokenizer, sid_vocabulary
from adagrpo_trl.utils import atomic_write, atomic_write_dir, atomic_write_json, atomic_write_text

from . import toy


INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


def write(path, content):
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def log_frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def small_log():
    """Two users with 4 interactions over items a-e."""
    return log_frame(
        [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4)]
        + [("u2", "b", 1), ("u2", "c", 2), ("u2", "d", 3), ("u2", "e", 4)]
    )


ITEM_IDS = ["a", "b", "c", "d", "e"]
CODES = [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]]


def small_catalog():
    return ItemCatalog.from_codes(ITEM_IDS, CODES)


# ---------------------------------------------------------------------------------------------------------------------
# Logs: columns, emptiness, users, timestamps
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("log.csv", "user,item,time\nu1,i1,3\n", r"log.csv: missing column\(s\) \['timestamp'\]; the file has \['user', 'item', 'time'\]"),
        ("log.inter", "user_id:token\titem_id:token\nu1\ti1\n", r"log.inter: missing required field\(s\) \['timestamp'\]"),
    ],
)  # fmt: skip
def test_missing_columns_in_a_file(tmp_path, name, content, match):
    loader = load_recbole if name.endswith(".inter") else load_interactions
    with pytest.raises(ValueError, match=match):
        loader(write(tmp_path / name, content))


def test_missing_columns_in_a_dataframe():
    with pytest.raises(
        ValueError, match=r"The log is missing column\(s\) \['timestamp'\]; it has \['user_id', 'item_id'\]"
    ):
        build_datasets(small_log().drop(columns="timestamp"), {})


def test_extra_columns_are_ignored(tmp_path):
    csv = write(tmp_path / "log.csv", "user,item,timestamp,rating,device\nu1,i1,3,5,phone\nu1,i2,4,1,tv\n")
    log, _ = load_interactions(csv)
    assert list(log.columns) == ["user_id", "item_id", "timestamp"] and len(log) == 2
    inter = write(
        tmp_path / "log.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t5\t3\n"
    )
    log, _ = load_recbole(inter)
    assert list(log.columns) == ["user_id", "item_id", "timestamp"]


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("log.csv", "", r"log.csv: the file is empty"),
        ("log.csv", "user,item,timestamp\n", r"log.csv: the file has a header but no rows"),
        ("log.inter", "", r"log.inter: the file is empty"),
        ("log.inter", INTER_HEADER, r"log.inter: the file has a header but no records"),
    ],
)
def test_empty_log_file(tmp_path, name, content, match):
    loader = load_recbole if name.endswith(".inter") else load_interactions
    with pytest.raises(ValueError, match=match):
        loader(write(tmp_path / name, content))


def test_empty_log_dataframe():
    with pytest.raises(ValueError, match="The log is empty"):
        build_datasets(log_frame([]), {})


def test_users_with_one_interaction_are_dropped_and_counted(caplog):
    log = pd.concat([small_log(), log_frame([("u3", "a", 1), ("u4", "b", 7)])])
    item_to_sid = dict(zip(ITEM_IDS, small_catalog().sids, strict=True))
    with caplog.at_level(logging.INFO, logger="adagrpo_trl.data.splits"):
        datasets = build_datasets(log, item_to_sid)
    assert "Dropped 2 of 4 users with fewer than 3 interactions" in caplog.text
    assert sorted(datasets["test"]["user_id"]) == ["u1", "u2"]
    with pytest.raises(ValueError, match=r"No user has at least 3 interactions \(2 users dropped\)"):
        build_datasets(log_frame([("u3", "a", 1), ("u4", "b", 7)]), item_to_sid)


def test_unsorted_and_duplicate_timestamps(caplog):
    # unsorted: sorted by time; tied timestamps (b, c at t=2): log order; an exact duplicate row is kept and counted
    log = log_frame([("u1", "d", 9), ("u1", "c", 2), ("u1", "b", 2), ("u1", "a", 1), ("u1", "d", 9)])
    with caplog.at_level(logging.WARNING, logger="adagrpo_trl.data.splits"):
        split = leave_one_out_split(log)
    assert split.sequences == [["a", "c", "b", "d", "d"]]
    assert "1 interaction(s) repeat an earlier (user_id, item_id, timestamp) row; they are kept" in caplog.text


def test_histories_longer_than_max_history_keep_the_most_recent_items(caplog):
    log = log_frame([("u1", item, t) for t, item in enumerate(ITEM_IDS)])  # 5 interactions
    item_to_sid = dict(zip(ITEM_IDS, small_catalog().sids, strict=True))
    with caplog.at_level(logging.INFO, logger="adagrpo_trl.data.splits"):
        datasets = build_datasets(log, item_to_sid, max_history=2)
    assert datasets["test"]["history"] == [["c", "d"]]  # a and b are cut
    assert datasets["validation"]["history"] == [["b", "c"]]
    assert datasets["train"]["history"] == [["a"], ["a", "b"]]
    assert (
        "Truncated 0 train / 1 validation / 1 test histories to their max_history=2 most recent items" in caplog.text
    )
    with pytest.raises(ValueError, match="max_history must be a positive integer or None, got 0"):
        build_datasets(log, item_to_sid, max_history=0)


# ---------------------------------------------------------------------------------------------------------------------
# Item text encoding
# ---------------------------------------------------------------------------------------------------------------------


def test_non_utf8_item_text_in_an_item_file(tmp_path):
    inter = write(tmp_path / "d.inter", INTER_HEADER + "u1\t1\t1\n")
    content = b"item_id:token\ttitle:token_seq\n1\tHeat\n2\tCaf\xe9 Society\n"
    item = write(tmp_path / "d.item", content)
    offset = content.index(b"\xe9")
    with pytest.raises(
        ValueError, match=rf"d.item: line 3 is not valid UTF-8 \(byte b'\\xe9' at file offset {offset}\)"
    ):
        load_recbole(inter, item)


def test_non_utf8_item_text_in_a_csv_column(tmp_path):
    csv = write(tmp_path / "log.csv", b"user,item,timestamp,title\nu1,i1,3,Heat\nu1,i2,4,Caf\xe9\n")
    with pytest.raises(ValueError, match=r"log.csv: line 3 is not valid UTF-8 \(byte b'\\xe9' at file offset"):
        load_interactions(csv, text_column="title")


def test_non_utf8_item_text_in_a_parquet_binary_column(tmp_path):
    frame = pd.DataFrame(
        {"user": ["u1", "u1"], "item": ["i1", "i2"], "timestamp": [1, 2], "title": [b"Heat", b"Caf\xe9"]}
    )
    frame.to_parquet(tmp_path / "log.parquet")
    with pytest.raises(
        ValueError, match=r"log.parquet: row 1: field 'title' is not valid UTF-8 \(byte b'\\xe9' at offset 3"
    ):
        load_interactions(tmp_path / "log.parquet", text_column="title")
    frame["title"] = [b"Heat", "Caf\u00e9".encode()]
    frame.to_parquet(tmp_path / "log.parquet")
    _, items = load_interactions(tmp_path / "log.parquet", text_column="title")
    assert items["text"].tolist() == ["Heat", "Caf\u00e9"]  # valid UTF-8 bytes are decoded, not rendered as "b'...'"


def test_non_utf8_item_text_in_an_item_table():
    items = pd.DataFrame({"item_id": ITEM_IDS, "text": ["A", "B", b"Caf\xe9", "D", "E"]})
    with pytest.raises(ValueError, match=r"<items>: row 2 \(item 'c'\): field 'text' is not valid UTF-8"):
        prepare_data(small_log(), items)


# ---------------------------------------------------------------------------------------------------------------------
# Ground truths, SIDs, catalogs and tokenizers
# ---------------------------------------------------------------------------------------------------------------------


class ConstantRanker:
    def score(self, contexts, candidate_item_ids):
        return [0.0] * len(candidate_item_ids)


def test_ground_truth_not_in_the_catalog_when_building_datasets():
    item_to_sid = dict(zip(ITEM_IDS[:-1], small_catalog().sids[:-1], strict=True))  # no SID for "e"
    with pytest.raises(ValueError, match=r"Item 'e' \(user 'u2', test split\) has no SID in item_to_sid"):
        build_datasets(small_log(), item_to_sid)


def test_ground_truth_not_in_the_catalog_at_trainer_construction(tmp_path, tokenizer):
    catalog = ItemCatalog(toy.ITEMS[:8], toy.ITEMS[:8])  # the first 8 toy items; the dataset uses all 16
    dataset = toy.make_dataset(8)
    with pytest.raises(ValueError, match=r"train_dataset: row 5: 'completion' = '<a_2><b_0>' is not the SID of a catalog item: a well-formed SID, but no item"):  # fmt: skip
        AdaGRPOTrainer(
            model=toy.make_model(tokenizer),
            reward_funcs=RankerReward(ConstantRanker(), catalog),
            args=toy.tiny_config(tmp_path),
            train_dataset=dataset,
            processing_class=tokenizer,
        )


def test_ground_truth_not_in_the_catalog_at_evaluation():
    rows = [{"prompt": "p", "target_item": "a"}, {"prompt": "p", "target_item": "zz"}]
    with pytest.raises(ValueError, match=r"Row 1: target item 'zz' is not in the catalog"):
        prompts_and_targets(rows, small_catalog())


@pytest.mark.parametrize(
    "completion, reason",
    [
        ("<a_1><x_0>", r"level 1 should be 'b', got 'x'"),
        ("<a_1><b_01>", r"expected a SID token like '<b_0>'"),
        ("<a_1>", r"it has 1 SID levels, the catalog's items have 2"),
        ("", r"must be a non-empty string"),
    ],
)
def test_invalid_sid_strings_in_a_dataset(completion, reason):
    dataset = Dataset.from_dict({"prompt": ["p", "p"], "completion": ["<a_0><b_0>", completion]})
    with pytest.raises(ValueError, match=rf"train_dataset: row 1: .*'completion'.*{reason}"):
        check_ground_truths(dataset, "completion", small_catalog())


def test_invalid_sid_strings_in_item_to_sid():
    item_to_sid = dict(zip(ITEM_IDS, small_catalog().sids, strict=True))
    item_to_sid["c"] = "<a_1>b_0>"
    with pytest.raises(ValueError, match=r"item_to_sid\['c'\] is not a valid SID: Malformed SID '<a_1>b_0>'"):
        build_datasets(small_log(), item_to_sid)


def test_missing_ground_truth_column_at_trainer_construction(tmp_path, tokenizer, dataset):
    with pytest.raises(ValueError, match=r"train_dataset has no ground-truth column 'target'"):
        AdaGRPOTrainer(
            model=toy.make_model(tokenizer),
            reward_funcs=toy.target_reward,
            args=toy.tiny_config(tmp_path, ground_truth_column="target"),
            train_dataset=dataset,
            processing_class=tokenizer,
        )


def prepared_folder(tmp_path):
    catalog = small_catalog()
    datasets = build_datasets(small_log(), dict(zip(catalog.item_ids, catalog.sids, strict=True)))
    tokenizer = build_sid_tokenizer(sid_vocabulary([3, 2]), words=["user", "history:", "next", "item:"])
    PreparedData(datasets=datasets, catalog=catalog, tokenizer=tokenizer).save(tmp_path / "data")
    return tmp_path / "data"


def test_catalog_file_from_another_tokenizer(tmp_path):
    folder = prepared_folder(tmp_path)
    PreparedData.load(folder)  # consistent
    # a catalog prepared with a bigger codebook: the tokenizer has no <a_7>
    ItemCatalog.from_codes(ITEM_IDS, [[7, 0], [0, 1], [1, 0], [1, 1], [2, 0]]).save(folder / "catalog.json")
    with pytest.raises(ValueError) as error:
        PreparedData.load(folder)
    message = str(error.value)
    assert f"The catalog {folder / 'catalog.json'} does not match the tokenizer {folder / 'tokenizer'}" in message
    assert "lacks the SID token '<a_7>'" in message
    # the `train` / `evaluate` / `analyze` commands check the data folder's catalog against the checkpoint's tokenizer
    with pytest.raises(
        ValueError, match=r"The catalog data/catalog.json does not match the tokenizer ckpt: .*'<a_7>'"
    ):
        ItemCatalog.load(folder / "catalog.json").check_tokenizer(
            load_tokenizer(folder / "tokenizer"), "data/catalog.json", "ckpt"
        )


def test_catalog_file_disagreeing_with_the_prepared_datasets(tmp_path):
    folder = prepared_folder(tmp_path)
    # same item ids and tokens, but items c and d swapped their SIDs: the datasets' completions now name other items
    ItemCatalog.from_codes(ITEM_IDS, [[0, 0], [0, 1], [1, 1], [1, 0], [2, 0]]).save(folder / "catalog.json")
    with pytest.raises(ValueError, match=r"data/datasets/train: row 1: 'target_item' = 'c' has the SID '<a_1><b_1>' in the catalog, but 'completion' is '<a_1><b_0>'"):  # fmt: skip
        PreparedData.load(folder)


def test_check_dataset_names_an_unknown_history_item():
    catalog = small_catalog()
    dataset = Dataset.from_dict(
        {"completion": ["<a_0><b_1>"] * 2, "target_item": ["b"] * 2, "history": [["a"], ["a", "zz"]]}
    )
    with pytest.raises(ValueError, match=r"valid: row 1: 'history' holds 'zz', which is not an item of the catalog"):
        check_dataset(dataset, catalog, source="valid")


# ---------------------------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------------------------

TRAIN_RECIPE = "data_dir: d\nmodel_name_or_path: m\noutput_dir: out\nuse_cpu: true\nreport_to: none\n"


@pytest.mark.parametrize(
    "extra, match",
    [
        (
            "gate_taux: 0.3\n",
            r"Unknown key 'gate_taux' in .*train.yaml \(adagrpo-trl train\); did you mean 'gate_tau'\?",
        ),
        ("max_steps: ten\n", r"train.yaml \(adagrpo-trl train\): key 'max_steps' must be int, got str 'ten'"),
        ("max_steps: 2.5\n", r"key 'max_steps' must be int, got float 2.5"),
        ("gate_tau: [1]\n", r"key 'gate_tau' must be float, got list \[1\]"),
        ("reward_funcs: sasrec\n", r"key 'reward_funcs' must be a list of str, got str 'sasrec'"),
        ("bf16: maybe\n", r"key 'bf16' must be bool or null, got str 'maybe'"),
        ("max_steps: [oops\n", r"train.yaml: not valid YAML"),
        ("save_strategy: no\n", r"key 'save_strategy' must be .*got bool False \(YAML reads unquoted yes/no"),
    ],
)
def test_train_recipe_with_an_unknown_key_or_a_wrong_type(tmp_path, extra, match):
    recipe = write(tmp_path / "train.yaml", TRAIN_RECIPE + extra)
    with pytest.raises(ValueError, match=match):
        make_parser("train").parse_args_and_config(["--config", str(recipe)])


def test_train_recipe_strings_are_parsed_like_the_command_line(tmp_path):
    recipe = write(tmp_path / "train.yaml", TRAIN_RECIPE + "learning_rate: 1e-3\nmax_steps: '7'\ngate_tau: 0.5\n")
    script, config = make_parser("train").parse_args_and_config(["--config", str(recipe)])
    assert (config.learning_rate, config.max_steps, config.gate_tau) == (0.001, 7, 0.5)
    # YAML scalars are accepted for plain string fields
    recipe = write(tmp_path / "train.yaml", TRAIN_RECIPE + "run_name: 2024\nresume_from_checkpoint: true\n")
    make_parser("train").parse_args_and_config(["--config", str(recipe)])
    (train,) = check_recipe_values({"run_name": 2024, "resume_from_checkpoint": True}, (AdaGRPOConfig,), "train")
    assert train == {"run_name": "2024", "resume_from_checkpoint": "true"}


@pytest.mark.parametrize(
    "section, values, match",
    [
        ("train", {"max_steps": "ten"}, r"the pipeline's 'train' section: key 'max_steps' must be int, got str 'ten'"),
        ("train", {"gate_tau": [1]}, r"the pipeline's 'train' section: key 'gate_tau' must be float, got list \[1\]"),
        ("sft", {"learning_rat": 0.1}, r"Unknown key 'learning_rat' in the pipeline's 'sft' section"),
        ("prepare", {"max_history": "twenty"}, r"'prepare' section: key 'max_history' must be int, got str 'twenty'"),
        ("evaluate", {"num_beams": None}, r"'evaluate' section: key 'num_beams' must be int, got NoneType None"),
        ("analyze", {"gate_tau": "high"}, r"'analyze' section: key 'gate_tau' must be float, got str 'high'"),
        ("ranker", [1, 2], r"the pipeline's 'ranker' section must be a mapping"),
    ],
)  # fmt: skip
def test_pipeline_section_with_an_unknown_key_or_a_wrong_type(section, values, match):
    with pytest.raises(ValueError, match=match):
        split_recipe_section(section, values)


def test_pipeline_sections_are_parsed_to_their_types():
    (ranker,) = split_recipe_section("ranker", {"learning_rate": "1e-3", "epochs": 2})
    assert ranker == {"learning_rate": 0.001, "epochs": 2}


def test_pipeline_checks_every_section_before_the_first_stage(tmp_path):
    args = PipelineArguments(
        output_dir=str(tmp_path / "run"), methods={"grpo": {"gate_mode": "always", "max_step": 3}}
    )
    with pytest.raises(ValueError, match=r"Unknown key 'max_step' in the pipeline's 'methods.grpo' section; did you mean 'max_steps'"):  # fmt: skip
        check_pipeline_sections(args)
    recipe = write(
        tmp_path / "pipeline.yaml", "output_dir: run\nprepare: {dataset: synthetic}\ntrain: {max_steps: ten}\n"
    )
    with pytest.raises(ValueError, match=r"the pipeline's 'train' section: key 'max_steps' must be int"):
        run(["pipeline", "--config", str(recipe), "--output_dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()  # nothing ran
    recipe = write(tmp_path / "pipeline.yaml", "output_dir: run\nprepare: 3\n")
    with pytest.raises(ValueError, match=r"pipeline.yaml \(adagrpo-trl pipeline\): key 'prepare' must be a mapping, got int 3"):  # fmt: skip
        run(["pipeline", "--config", str(recipe)])


# ---------------------------------------------------------------------------------------------------------------------
# num_generations and the batch
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, match",
    [
        (
            {"per_device_train_batch_size": 8, "num_generations": 3},
            r"num_generations=3 must divide the generation batch: generation_batch_size = per_device_train_batch_size "
            r"\(8\) × steps_per_generation \(1\) × processes \(1\) = 8 completions.*per_device_train_batch_size=9",
        ),
        (
            {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 3, "num_generations": 8},
            r"per_device_train_batch_size \(4\) × steps_per_generation \(3\) × processes \(1\) = 12 .*"
            r"per_device_train_batch_size=8",
        ),
        ({"num_generations": 1}, r"`num_generations` must be an integer >= 2.*got num_generations=1"),
        ({"num_generations": 0}, r"`num_generations` must be an integer >= 2.*got num_generations=0"),
    ],
)
def test_num_generations_incompatible_with_the_batch(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        AdaGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **overrides)


# ---------------------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------------------


def test_atomic_write_keeps_the_previous_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_json(path, {"hr@10": 0.1})

    def crash_midway(temporary):
        with open(temporary, "w") as file:
            file.write('{"hr@10": 0.')
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash_midway)
    assert json.loads(path.read_text()) == {"hr@10": 0.1}
    assert os.listdir(tmp_path) == ["report.json"]  # no temporary file left behind
    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": object()})  # unserialisable: nothing is written
    assert json.loads(path.read_text()) == {"hr@10": 0.1} and os.listdir(tmp_path) == ["report.json"]
    atomic_write_text(tmp_path / "sub" / "table.md", "| a |\n")  # parent folders are created
    assert (tmp_path / "sub" / "table.md").read_text() == "| a |\n"
    mode = stat.S_IMODE(os.stat(tmp_path / "sub" / "table.md").st_mode)
    assert mode & 0o044 == 0o666 & ~current_umask() & 0o044  # a regular file's permissions, not mkstemp's 0o600


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_dir_keeps_the_previous_folder(tmp_path):
    target = tmp_path / "data"

    def fill(content):
        def writer(staging):
            with open(os.path.join(staging, "a.txt"), "w") as file:
                file.write(content)

        return writer

    atomic_write_dir(target, fill("v1"))

    def crash(staging):
        fill("v2")(staging)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(target, crash)
    assert (target / "a.txt").read_text() == "v1" and sorted(os.listdir(tmp_path)) == ["data"]
    # a kill between the two renames left the previous folder at .data.old: the next write puts it back first
    os.replace(target, tmp_path / ".data.old")
    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(target, crash)
    assert (target / "a.txt").read_text() == "v1" and sorted(os.listdir(tmp_path)) == ["data"]
    atomic_write_dir(target, fill("v3"))
    assert (target / "a.txt").read_text() == "v3" and sorted(os.listdir(tmp_path)) == ["data"]


def test_prepared_data_save_keeps_the_previous_folder(tmp_path, monkeypatch):
    folder = prepared_folder(tmp_path)
    before = (folder / "catalog.json").read_text()
    prepared = PreparedData.load(folder)
    prepared.catalog = ItemCatalog.from_codes(ITEM_IDS, [[0, 0], [0, 1], [1, 1], [1, 0], [2, 0]])

    def failing_save(self, path):
        raise OSError("killed")

    monkeypatch.setattr(ItemCatalog, "save", failing_save)
    with pytest.raises(OSError, match="killed"):
        prepared.save(folder)
    assert (folder / "catalog.json").read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_sasrec_save_keeps_the_previous_weights(tmp_path, monkeypatch):
    from adagrpo_trl.rankers import sasrec
    from adagrpo_trl.rankers.sasrec import SASRecConfig, SASRecRanker

    ranker = SASRecRanker(SASRecConfig(max_len=4, hidden_size=8, num_layers=1, num_heads=1), ["a", "b"], "cpu")
    ranker.save(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def crash_midway(state, path, metadata=None):
        with open(path, "wb") as file:
            file.write(b"\x00" * 10)
        raise OSError("killed")

    monkeypatch.setattr(sasrec, "save_file", crash_midway)
    with pytest.raises(OSError, match="killed"):
        ranker.save(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]


def test_report_png_is_written_through_a_temporary_file(tmp_path, monkeypatch):
    import matplotlib.figure

    from adagrpo_trl.scripts.report import plot_report

    methods = {"sft": {"hallucination": 0.1, "hr@10": 0.2}}
    histories = {"sft": [{"step": 1, "loss/nll": 2.0}, {"step": 2, "loss/nll": 1.5}]}
    plot_report(tmp_path, methods, histories)
    before = (tmp_path / "frontier.png").read_bytes()
    assert before[:4] == b"\x89PNG"

    def crash_midway(self, path, **kwargs):
        with open(path, "wb") as file:
            file.write(b"\x89PN")
        raise OSError("killed")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", crash_midway)
    with pytest.raises(OSError, match="killed"):
        plot_report(tmp_path, methods, histories)
    assert (tmp_path / "frontier.png").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["frontier.png", "training_curves.png"]
