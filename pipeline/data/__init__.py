"""Files shipped inside the package: the GPT-NeoX-20B tokenizer and the bundled Pile-shaped sample."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
TOKENIZER_PATH = DATA_DIR / "20B_tokenizer.json"
TOKENIZER_SHA256 = "56ac4821e129d2c520fdaba60abd920fa852ada51b45c0dd52bbb6bd8c985ade"
SAMPLE_DIR = DATA_DIR / "sample"


def sample_dir() -> Path:
    """Root of the bundled sample: `train/00.jsonl.zst`..., `val.jsonl.zst`, `test.jsonl.zst`,
    and `ground_truth.json` (planted duplicates)."""
    return SAMPLE_DIR


def sample_train_files() -> list[Path]:
    return sorted((SAMPLE_DIR / "train").glob("*.jsonl.zst"))


def sample_files() -> list[Path]:
    """Every split of the bundled sample in the Pile's order: train/00.., val, test."""
    return sample_train_files() + [SAMPLE_DIR / "val.jsonl.zst", SAMPLE_DIR / "test.jsonl.zst"]
