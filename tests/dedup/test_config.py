"""DedupConfig validation, presets and fingerprints."""

from __future__ import annotations

import pytest

from pipeline.dedup import DedupConfig
from pipeline.errors import ConfigError


def test_preset_resolves_bands_and_rows():
    c = DedupConfig.from_preset("pythia-0.87")
    assert (c.threshold, c.num_perm, c.ngram, c.seed) == (0.87, 128, 5, 1)
    assert (c.bands, c.rows) == (14, 9)
    assert c.verify_candidates is True
    assert c.verify_cut == pytest.approx(0.87 - 2 * (0.87 * 0.13 / 128) ** 0.5)


def test_overrides_and_partial_band_layout():
    c = DedupConfig.from_preset("pythia-0.87", bands=16, threshold=None)
    assert (c.bands, c.rows, c.threshold) == (16, 8, 0.87)
    c = DedupConfig(rows=10)
    assert (c.bands, c.rows) == (12, 10)


def test_fingerprint_ignores_scheduling_fields():
    a = DedupConfig(workers=1, partitions=4)
    b = DedupConfig(workers=8, partitions=256, batch_chars=100, keep_intermediate=True)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != DedupConfig(seed=2).fingerprint()
    # the resolved layout is what counts: explicit (14, 9) == optimiser's (14, 9)
    assert DedupConfig(bands=14, rows=9).fingerprint() == a.fingerprint()


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"bands": 20, "rows": 10}, "bands=20 x rows=10 (= 200) does not fit num_perm=128"),
        ({"bands": 200}, "does not fit num_perm=128"),
        (
            {"threshold": 0.0},
            "threshold=0.0 is invalid; allowed: a number strictly between 0 and 1",
        ),
        ({"threshold": 1.0}, "strictly between 0 and 1"),
        ({"threshold": -0.5}, "strictly between 0 and 1"),
        ({"threshold": "0.8"}, "strictly between 0 and 1"),
        ({"ngram": 0}, "ngram=0 is invalid; allowed: an integer >= 1"),
        ({"num_perm": 0}, "num_perm=0 is invalid"),
        ({"bands": 0}, "bands=0 is invalid"),
        ({"partitions": 3}, "partitions=3 is invalid; allowed: a power of two"),
        ({"seed": -1}, "seed=-1 is invalid"),
        ({"verify_sigmas": -1.0}, "verify_sigmas=-1.0 is invalid"),
        ({"fp_weight": 0.0, "fn_weight": 0.0}, "positive sum"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, needle):
    with pytest.raises(ConfigError) as e:
        DedupConfig(**kwargs)
    assert needle in str(e.value)
    assert e.value.exit_code == 2


def test_unknown_preset_and_option():
    with pytest.raises(ConfigError, match="unknown dedup preset 'nope'; allowed: pythia-0.87"):
        DedupConfig.from_preset("nope")
    with pytest.raises(ConfigError, match="unknown dedup option"):
        DedupConfig.from_preset("pythia-0.87", colour="red")
