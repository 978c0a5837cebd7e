"""Encoders shared by the tokenizer tests (loading one costs ~0.5 s, so once per module)."""

from __future__ import annotations

import pytest

from pipeline.tokenize.encoder import load_encoder


@pytest.fixture(scope="module")
def fast():
    return load_encoder(backend="fast")


@pytest.fixture(scope="module")
def hf():
    return load_encoder(backend="hf")
