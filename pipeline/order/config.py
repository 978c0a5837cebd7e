"""`pile order`'s config: gpt-neox's training-order settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import StageConfig, check_keys, opt, toml_keys
from pipeline.errors import ConfigError
from pipeline.presets import load_preset

INT32_MAX = int(np.iinfo(np.int32).max)


@dataclass(frozen=True)
class OrderConfig(StageConfig):
    """gpt-neox training-order settings (Pythia: 2048, 1024, 143000, 1234)."""

    seq_length: int = opt(
        2048,
        help="tokens per sample minus 1",
        contexts={"build": {"metavar": "N", "help": "order: tokens per sample - 1"}},
    )
    global_batch: int = opt(
        1024,
        help="samples per training step",
        contexts={"build": {"metavar": "N", "help": "order: samples per step"}},
    )
    train_iters: int = opt(
        143000,
        help="training steps",
        contexts={
            "build": {
                "metavar": "N",
                "help": "order: training steps (default: the preset's; not with --epochs)",
            }
        },
    )
    seed: int = opt(
        1234,
        help="numpy RandomState seed",
        contexts={"build": {"metavar": "N", "help": "order: numpy RandomState seed"}},
    )

    def __post_init__(self) -> None:
        for name in ("seq_length", "global_batch", "train_iters", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"order {name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not 2 <= self.seq_length <= INT32_MAX - 1:
            raise ConfigError(
                f"order seq_length {self.seq_length} is out of range; allowed 2..{INT32_MAX - 1} "
                "(gpt-neox asserts seq_length > 1 and stores it as int32)"
            )
        if self.global_batch < 1:
            raise ConfigError(f"order global_batch {self.global_batch} must be >= 1")
        if self.train_iters < 1:
            raise ConfigError(f"order train_iters {self.train_iters} must be >= 1")
        if not 0 <= self.seed <= 2**32 - 1:
            raise ConfigError(
                f"order seed {self.seed} is out of range; numpy.random.RandomState accepts "
                "0..2**32-1"
            )

    @classmethod
    def from_preset(cls, name: str = "pythia", **overrides: Any) -> OrderConfig:
        """The `[order.<name>]` preset of manifests/presets.toml, with non-None overrides."""
        values = load_preset("order", name)
        check_keys(values, toml_keys(cls), f"order preset {name!r}", "Fix manifests/presets.toml.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def num_samples(self) -> int:
        """Samples gpt-neox requests for train_0 (`get_normalized_weights_and_num_samples`)."""
        return num_samples_for(self.train_iters, self.global_batch)

    @property
    def train_samples(self) -> int:
        """Samples actually consumed by training: train_iters x global_batch."""
        return self.train_iters * self.global_batch

    @property
    def map_tag(self) -> str:
        """`{num_samples}ns_{seq_length}sl_{seed}s`: what the gpt-neox file names encode."""
        return f"{self.num_samples}ns_{self.seq_length}sl_{self.seed}s"


def num_samples_for(train_iters: int, global_batch: int) -> int:
    """`int(math.ceil(num_samples * weight * 1.005))` with weight = 1.0 / 1.0, float order kept."""
    weights = [1.0]
    weight = weights[0] / sum(weights)
    return int(math.ceil((train_iters * global_batch) * weight * 1.005))


@dataclass(frozen=True)
class PreshuffleOptions:
    """How `pile preshuffle` lays out the pre-shuffled data (build.toml's [preshuffle]); the
    stage takes them as arguments. shard_size None = Pythia's 30e9 bytes."""

    shard_size: int | None = opt(
        None,
        help="bytes per .bin shard (Pythia's published data: 30e9)",
        contexts={"build": {"metavar": "BYTES", "help": "preshuffled shard bytes"}},
    )
