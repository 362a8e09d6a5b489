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
"""From a log to a prepared folder in one call, then a short SFT run that beats popularity on HR@10."""

from collections import Counter

import pytest
import torch
from transformers import Qwen2ForCausalLM
from trl import SFTConfig

from adagrpo_trl.data import simulate_exposure_biased_logs
from adagrpo_trl.data.prepare import PreparedData, prepare_data
from adagrpo_trl.evaluation import evaluate_recommendations, hits_at_k
from adagrpo_trl.sft import train_sft
from adagrpo_trl.tokenization import load_tokenizer, small_qwen2_config


@pytest.fixture(scope="module")
def simulated():
    return simulate_exposure_biased_logs(num_users=300, num_items=60, seq_len=(6, 12), seed=0)


def test_prepare_data_round_trip(simulated, tmp_path):
    prepared = prepare_data(simulated.log, simulated.items, num_levels=2, max_history=5, output_dir=tmp_path / "prep")
    loaded = PreparedData.load(tmp_path / "prep")
    assert loaded.catalog.item_ids == prepared.catalog.item_ids and loaded.catalog.sids == prepared.catalog.sids
    assert {name: len(split) for name, split in loaded.datasets.items()} == prepared.summary["splits"]
    assert loaded.summary["semantic_ids"]["num_items"] == len(prepared.catalog) == simulated.log["item_id"].nunique()
    assert loaded.train_sequences == prepared.train_sequences and len(loaded.train_sequences) == 300
    # a training prefix never holds its user's validation or test item
    for sequence, row in zip(loaded.train_sequences, loaded.datasets["validation"], strict=True):
        assert row["history"] == sequence[-5:]
    # every completion is a catalog SID, every prompt SID tokenises to single tokens the tokenizer knows
    for row in loaded.datasets["test"].select(range(20)):
        assert loaded.catalog.sid_to_item(row["completion"]) == row["target_item"]
        assert loaded.tokenizer.unk_token_id not in loaded.tokenizer(row["prompt"])["input_ids"]
        assert len(row["history"]) <= 5
    # saving again replaces the folder as a whole
    prepared.save(tmp_path / "prep")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prep"]


def test_prepare_data_from_a_recbole_folder_and_a_csv(tmp_path):
    inter = "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"u{u}\ti{(u + t) % 7}\t{t}\n" for u in range(12) for t in range(5)
    )
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.inter").write_text(inter)
    (tmp_path / "toy" / "toy.item").write_text(
        "item_id:token\ttitle:token_seq\n" + "".join(f"i{i}\tmovie {i}\n" for i in range(7))
    )
    from_recbole = prepare_data(tmp_path / "toy", num_levels=2, seed=0)
    csv = tmp_path / "log.csv"
    csv.write_text(
        "user,item,timestamp\n" + "".join(f"u{u},i{(u + t) % 7},{t}\n" for u in range(12) for t in range(5))
    )
    from_csv = prepare_data(csv, num_levels=2, seed=0)
    assert len(from_recbole.catalog) == len(from_csv.catalog) == 7
    assert from_recbole.datasets["test"]["target_item"] == from_csv.datasets["test"]["target_item"]
    with pytest.raises(FileNotFoundError, match="No interaction log"):
        prepare_data(tmp_path / "missing.csv")


def test_prepare_data_rejects_features_that_miss_items(simulated):
    with pytest.raises(ValueError, match="have no feature row"):
        prepare_data(simulated.log, features=simulated.item_features[:10], feature_item_ids=simulated.item_ids[:10])
    with pytest.raises(ValueError, match="lacks column"):
        prepare_data(simulated.log.rename(columns={"timestamp": "time"}))


@pytest.mark.slow
def test_short_sft_beats_popularity_on_hr_at_10(simulated, tmp_path):
    prepared = prepare_data(simulated.log, simulated.items, num_levels=2, max_history=5)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(small_qwen2_config(prepared.tokenizer, hidden_size=64))
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        num_train_epochs=6,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    trainer = train_sft(model, prepared.tokenizer, prepared.datasets["train"], args)
    assert (tmp_path / "sft" / "config.json").exists() and (tmp_path / "sft" / "tokenizer.json").exists()
    # the checkpoint's tokenizer reloads as the SID tokenizer (AutoTokenizer would pick Qwen2Tokenizer from the model
    # type and drop the prompt's words)
    reloaded = load_tokenizer(tmp_path / "sft")
    for prompt in prepared.datasets["test"]["prompt"][:5]:
        assert reloaded(prompt)["input_ids"] == prepared.tokenizer(prompt)["input_ids"]
    test = prepared.datasets["test"]
    results = evaluate_recommendations(
        trainer.model, prepared.tokenizer, test, prepared.catalog, ks=(10,), num_beams=10, show_progress=False
    )
    popular = [item for item, _ in Counter(prepared.datasets["train"]["target_item"]).most_common(10)]
    popularity_hr10 = hits_at_k([popular] * len(test), test["target_item"], 10).mean()
    assert results["hr@10"] > popularity_hr10 + 0.03, (results, popularity_hr10)
