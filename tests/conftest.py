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
"""Offline fixtures: a SID tokenizer, tiny Qwen2 policies and toy recommendation datasets, all built in memory."""

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from . import toy  # noqa: E402


@pytest.fixture(scope="module")
def single_thread():
    """A tiny model trains several times faster on one thread than on two contended ones (request it module-wide
    with `pytestmark = pytest.mark.usefixtures("single_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tokenizer():
    return toy.make_tokenizer()


@pytest.fixture
def dataset():
    return toy.make_dataset()
