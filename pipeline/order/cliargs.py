"""Command-line options shared by `pile order`, `pile preshuffle` and `pile inspect`."""

from __future__ import annotations

import argparse

from pipeline.order.indexmap import OrderConfig
from pipeline.presets import preset_names


def add_order_arguments(p: argparse.ArgumentParser, default_preset: str = "pythia") -> None:
    g = p.add_argument_group("training order (gpt-neox); flags override the preset")
    g.add_argument(
        "--preset",
        default=default_preset,
        help=f"[order.NAME] preset of manifests/presets.toml ({', '.join(preset_names('order'))})",
    )
    g.add_argument("--seq-length", type=int, default=None, help="tokens per sample minus 1")
    g.add_argument("--global-batch", type=int, default=None, help="samples per training step")
    g.add_argument("--train-iters", type=int, default=None, help="training steps")
    g.add_argument("--seed", type=int, default=None, help="numpy RandomState seed")


def order_config_from_args(args: argparse.Namespace) -> OrderConfig:
    return OrderConfig.from_preset(
        args.preset,
        seq_length=args.seq_length,
        global_batch=args.global_batch,
        train_iters=args.train_iters,
        seed=args.seed,
    )


def parse_size(s: str) -> int:
    """Bytes from '30e9', '30G', '5GB', '64MiB', '1000'."""
    units = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 1 << 10, "mi": 1 << 20,
             "gi": 1 << 30, "ti": 1 << 40}  # fmt: skip
    t = s.strip().lower()
    if t.endswith("b"):
        t = t[:-1]
    try:
        for u in sorted(units, key=len, reverse=True):
            if t.endswith(u):
                return int(float(t[: -len(u)]) * units[u])
        return int(float(t)) if ("e" in t or "." in t) else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{s!r} is not a size; use bytes like 30000000000, 30e9, 30G or 64MiB"
        ) from None
