"""Command-line options shared by `pile order`, `pile preshuffle` and `pile inspect`."""

from __future__ import annotations

import argparse
import logging
import os

from pipeline.order.indexmap import OrderConfig
from pipeline.presets import preset_names

log = logging.getLogger(__name__)

FALLBACK_PRESET = "pythia"
RECORDED_DEFAULT = f"the config recorded with the data, else {FALLBACK_PRESET}"
ORDER_FLAGS = ("seq_length", "global_batch", "train_iters", "seed")


def add_data_form_arguments(group) -> None:
    """--form and --maps-dir: how a DATA argument is read (inspect, exposure, find,
    contamination)."""
    group.add_argument(
        "--form", choices=("auto", "document", "preshuffled"), default="auto", help="data form"
    )
    group.add_argument(
        "--maps-dir", default=None, help="directory of the index maps (default: next to DATA)"
    )


def add_order_arguments(
    p: argparse.ArgumentParser, default_preset: str = FALLBACK_PRESET, *, recorded: bool = False
) -> None:
    """--preset/--seq-length/--global-batch/--train-iters/--seed.

    With `recorded` (commands that read existing data: inspect, preshuffle) nothing is defaulted
    here: when none of these flags is given, `resolve_order_config` uses the config recorded with
    the data (falling back to the `pythia` preset), and --help says so."""
    presets = ", ".join(preset_names("order"))
    if recorded:
        g = p.add_argument_group(
            "training order (gpt-neox)",
            # RawDescriptionHelpFormatter keeps these line breaks
            "With none of these flags: the config recorded with the data (the pre-shuffled\n"
            "manifest, or the manifest of the only index maps), else the pythia preset.\n"
            "With any of them: --preset (else pythia) with the given flags on top.",
        )
        # SUPPRESS: no attribute unless given (so "not given" is visible) and no "(default: None)"
        # appended by the help formatter; the help states the real default instead.
        g.add_argument(
            "--preset",
            default=argparse.SUPPRESS,
            help=f"[order.NAME] preset of manifests/presets.toml ({presets}) "
            f"(default: {RECORDED_DEFAULT})",
        )
        dflt = " (default: the preset's; with no order flag at all, the recorded config's)"
        kw: dict = {"default": argparse.SUPPRESS}
    else:
        g = p.add_argument_group("training order (gpt-neox); flags override the preset")
        g.add_argument(
            "--preset",
            default=default_preset,
            help=f"[order.NAME] preset of manifests/presets.toml ({presets})",
        )
        dflt = " (default: the preset's)"
        kw = {"default": None}
    g.add_argument("--seq-length", type=int, help="tokens per sample minus 1" + dflt, **kw)
    g.add_argument("--global-batch", type=int, help="samples per training step" + dflt, **kw)
    g.add_argument("--train-iters", type=int, help="training steps" + dflt, **kw)
    g.add_argument("--seed", type=int, help="numpy RandomState seed" + dflt, **kw)


def explicit_order_args(args: argparse.Namespace) -> bool:
    """True when --preset or any of --seq-length/--global-batch/--train-iters/--seed was given."""
    return getattr(args, "preset", None) is not None or any(
        getattr(args, k, None) is not None for k in ORDER_FLAGS
    )


def order_config_from_args(args: argparse.Namespace) -> OrderConfig:
    """The --preset (default pythia) with the given flags on top."""
    return OrderConfig.from_preset(
        getattr(args, "preset", None) or FALLBACK_PRESET,
        **{k: getattr(args, k, None) for k in ORDER_FLAGS},
    )


def resolve_order_config(
    args: argparse.Namespace,
    data: str | os.PathLike,
    *,
    form: str = "document",
    maps_dir: str | os.PathLike | None = None,
    level: int = logging.INFO,
) -> OrderConfig:
    """The order config for a command reading existing DATA.

    Explicit --preset / order flags win. Otherwise the config recorded with DATA
    (pipeline.order.recorded: the pre-shuffled manifest, or the only index-map manifest; several
    raise ConfigError) and, when nothing is recorded (EleutherAI's data, maps built by gpt-neox),
    the `pythia` preset. Logs at `level` (INFO) which one is used.
    """
    config, why = order_config_and_origin(args, data, form=form, maps_dir=maps_dir)
    log.log(level, "%s", why)
    return config


def order_config_and_origin(
    args: argparse.Namespace,
    data: str | os.PathLike,
    *,
    form: str = "document",
    maps_dir: str | os.PathLike | None = None,
) -> tuple[OrderConfig, str]:
    """`resolve_order_config` without logging: (config, a sentence saying where it came from)."""
    from pipeline.order.recorded import config_flags, recorded_config

    if explicit_order_args(args):
        config = order_config_from_args(args)
        given = [f"--{k.replace('_', '-')} {getattr(args, k)}" for k in ORDER_FLAGS
                 if getattr(args, k, None) is not None]  # fmt: skip
        preset = getattr(args, "preset", None) or FALLBACK_PRESET
        with_given = f" with {' '.join(given)}" if given else ""
        return config, f"order config: preset {preset}{with_given} -> {config_flags(config)}"
    rec = recorded_config(data, maps_dir=maps_dir, form=form)
    if rec is not None:
        return rec.config, (
            f"order config recorded in {rec.manifest}: {config_flags(rec.config)} "
            "(override with --preset or these flags)"
        )
    config = OrderConfig.from_preset(FALLBACK_PRESET)
    return config, (
        f"no order config recorded with {data}; using preset {FALLBACK_PRESET}: "
        f"{config_flags(config)}"
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
