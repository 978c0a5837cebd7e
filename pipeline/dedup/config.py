"""`DedupConfig`: the frozen, fingerprinted configuration of the dedup stage.

Fields that change output bytes are fingerprinted: threshold, num_perm, bands, rows (resolved:
`bands=None, rows=None` is replaced by the optimiser's choice in `__post_init__`, so an explicit
(b, r) equal to the optimiser's gives the same fingerprint), ngram, seed, verify_candidates,
verify_sigmas, fp_weight, fn_weight. Scheduling knobs are not: workers, partitions, batch_chars,
keep_intermediate (outputs are identical for any value of them).

Band layout: unless bands/rows are given, `optimal_bands_rows(threshold, num_perm, fp_weight,
fn_weight)` picks them (datasketch's objective). The default weights 0.01/0.99 favour recall
(datasketch's own default is 0.5/0.5, which at J=0.87, K=128 gives 7 x 18 and finds a pair at the
threshold only 45% of the time): at 0.87 they give 14 bands x 9 rows, P(candidate | 0.87) = 0.991,
P(candidate | 0.90) = 0.999, and the extra low-similarity candidates are removed by verification.

Verification cut: a candidate pair is kept when its estimated Jaccard (fraction of equal signature
rows over all K) is >= threshold - verify_sigmas * sqrt(threshold * (1 - threshold) / K), i.e.
0.8105 for the preset (t = 0.87, K = 128, 2 sigma). Exactly at the threshold a true pair passes
with probability ~0.98, at J = 0.90 with ~1.0, at J = 0.70 with < 0.001, so candidates that only
met in one band by chance are dropped while no pair at or above the threshold is lost. Measured on
the labelled generated set of tools/bench_dedup.py (pairs spread uniformly over J = 0.5..1):
2 sigma (default) keeps recall at 1.000, equal to datasketch's MinHashLSH and datatrove at the same
bands (which do not verify), with 1.7x their precision (0.632 vs 0.36) and a higher ARI; 1 sigma
gives precision 0.768 but recall 0.985 (94% of the pairs in [0.87, 0.90)); 0 sigma loses a third
of the pairs just above the threshold. Cost: one K-wide comparison and two signature reads
(2 x 512 bytes) per distinct candidate pair.

What is removed (`verify`, see `criterion()` for the rule in words and numbers):
  - "exact" (the default): a document is removed only when the exact Jaccard of its shingle set
    with the document kept in its place is >= the threshold (the same normalisation, n-grams and
    64-bit shingle hashes the signatures are built from; the sets are built in a second streaming
    read of the candidate documents only). Candidate pairs are first screened by their estimate
    at a looser cut, threshold - max(verify_sigmas, 3) sigma (0.7808 at the preset: a pair at the
    threshold is screened out with probability ~0.1%), so only plausible pairs are checked.
  - "estimate" (recall first): the MinHash estimate with the kept document is >= the estimate
    cut; documents whose true Jaccard is a little below the threshold (down to ~0.79 at the
    preset) are removed too. Measured on the novels in 4 KB documents: precision 0.28 at J >= 0.87.
  - "none" (Pythia-like): every LSH candidate pair is joined unchecked and whole connected
    components collapse to one document, as Pythia's datasketch MinHashLSH at 0.87 did; pairs far
    below the threshold are removed.
Cluster rule ("center", for "exact" and "estimate"): candidate pairs that pass the check are
joined into connected components; in each component the smallest doc_id is kept and every other
member is removed only if it passes the same check against that kept document. Members that fail
stay and the rule is applied again to them (the smallest of them is kept, the rest are checked
against it), until every member is either kept or removed against its own kept document. So a chain
A~B~C never removes C against A unless J(A, C) passes too. The split depends only on the ids
(never on worker count or chunking). "none" uses the plain components ("component").
`verify_candidates=False` is the older spelling of verify="none".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from pipeline.config import StageConfig, check_keys, opt, toml_keys
from pipeline.dedup.lsh import optimal_bands_rows
from pipeline.errors import ConfigError
from pipeline.presets import load_preset

MAX_NUM_PERM = 4096
VERIFY_MODES = ("exact", "estimate", "none")
CLUSTER_RULES = ("center", "component")
EXACT_SCREEN_SIGMAS = 3.0


@dataclass(frozen=True)
class DedupConfig(StageConfig):
    """MinHash/LSH near-duplicate detection (see pipeline.dedup for the algorithm)."""

    threshold: float = opt(
        0.87,
        help="Jaccard threshold the LSH bands are tuned for, 0 < J < 1 (pairs are removed down to "
        "the estimate cut unless --verify exact)",
        contexts={"build": {"metavar": "J", "help": "dedup Jaccard threshold"}},
    )
    num_perm: int = opt(
        128,
        help="MinHash permutations K",
        contexts={"build": {"metavar": "N", "help": "dedup MinHash permutations"}},
    )
    bands: int | None = opt(None, help="LSH bands b (b * r <= K); chosen if unset")
    rows: int | None = opt(None, help="rows per band r; chosen if unset")
    ngram: int = opt(5, help="words per shingle")
    seed: int = opt(1, help="seed of the MinHash permutations")
    verify_candidates: bool = opt(
        True, flag="--no-verify", action="store_false", help="the same as --verify none"
    )
    verify_sigmas: float = opt(
        2.0,
        help="estimate check: keep a candidate pair when its MinHash-estimated Jaccard is >= "
        "threshold - this many standard errors",
    )
    verify: str = opt(
        "exact",
        choices=VERIFY_MODES,
        help="what a removed document must show against the document kept in its place: 'exact' "
        "(the default): exact shingle Jaccard >= threshold (precision 1.000 on the novels); "
        "'estimate': MinHash estimate >= threshold - verify_sigmas sigma (precision 0.475); "
        "'none': unchecked LSH components, Pythia-like (precision 0.207)",
    )
    cluster_rule: str = opt(
        "center",
        choices=CLUSTER_RULES,
        help="'center' (the default): each removed document passes the check against its "
        "cluster's kept document (clusters split by id until it holds); 'component': chains of "
        "passing pairs remove whole components",
    )
    fp_weight: float = opt(
        0.01, help="weight of false positives in choosing bands x rows", cli=False
    )
    fn_weight: float = opt(
        0.99, help="weight of false negatives in choosing bands x rows", cli=False
    )
    partitions: int = opt(64, help="hash partitions of the bucket step (power of two; memory)")
    batch_chars: int = opt(1 << 22, help="characters per signature batch", cli=False)
    keep_intermediate: bool = opt(
        False, action="store_true", help="keep buckets/ and edges/ for inspection"
    )
    # one signature task per work unit (pipeline.read.units); any value gives the same bytes
    unit_bytes: int | None = opt(
        None,
        help="bytes of text per work unit (unset: input bytes / (2 x workers))",
        cli=False,
        toml=False,
    )
    unit_cache: str | None = opt(
        None,
        help="directory for re-chunked single-frame .jsonl.zst/.gz inputs (unset: one unit)",
        cli=False,
        toml=False,
    )
    # the commands' shared --workers (add_workers_argument); `pile build` has a top-level one
    workers: int = opt(1, help="worker processes (0 = one per core)", cli=False, toml=False)

    _not_fingerprinted = (
        "workers",
        "partitions",
        "batch_chars",
        "keep_intermediate",
        "unit_bytes",
        "unit_cache",
    )

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, allowed: str, fix: str) -> ConfigError:
            return ConfigError(f"dedup {name}={value!r} is invalid; allowed: {allowed}. {fix}")

        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.0 < t < 1.0):
            raise bad(
                "threshold", t, "a number strictly between 0 and 1", "Use e.g. --threshold 0.87."
            )
        for name in ("num_perm", "ngram", "partitions", "batch_chars", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(name, v, "an integer", f"Pass an integer --{name.replace('_', '-')}.")
        if not 1 <= self.num_perm <= MAX_NUM_PERM:
            raise bad("num_perm", self.num_perm, f"1..{MAX_NUM_PERM}", "128 is the usual choice.")
        if self.ngram < 1:
            raise bad("ngram", self.ngram, "an integer >= 1 (words per shingle)", "Use --ngram 5.")
        if not 0 <= self.seed < 1 << 64:
            raise bad("seed", self.seed, "0 <= seed < 2**64", "Use a small non-negative integer.")
        p = self.partitions
        if p < 1 or p > 1 << 16 or p & (p - 1):
            raise bad("partitions", p, "a power of two in 1..65536", "Use e.g. 64.")
        if self.batch_chars < 1:
            raise bad("batch_chars", self.batch_chars, "an integer >= 1", "Use the default.")
        ub = self.unit_bytes
        if ub is not None and (isinstance(ub, bool) or not isinstance(ub, int) or ub < 1):
            raise bad("unit_bytes", ub, "a positive integer or unset", "Leave it unset.")
        if not isinstance(self.verify_candidates, bool):
            raise bad("verify_candidates", self.verify_candidates, "true or false", "")
        if self.verify not in VERIFY_MODES:
            raise bad(
                "verify", self.verify, ", ".join(VERIFY_MODES), "Use --verify exact (the default)."
            )
        # one switch: verify_candidates=False is the older spelling of verify="none"
        if not self.verify_candidates:
            object.__setattr__(self, "verify", "none")
        object.__setattr__(self, "verify_candidates", self.verify != "none")
        if self.cluster_rule not in CLUSTER_RULES:
            raise bad(
                "cluster_rule",
                self.cluster_rule,
                ", ".join(CLUSTER_RULES),
                "Use --cluster-rule center (each removed document checked against its kept one).",
            )
        if self.verify == "none":  # nothing to check a member against: whole components
            object.__setattr__(self, "cluster_rule", "component")
        vs = self.verify_sigmas
        if isinstance(vs, bool) or not isinstance(vs, (int, float)) or not (0 <= vs <= 10):
            raise bad("verify_sigmas", vs, "a number in 0..10", "Use 2.")
        for name in ("fp_weight", "fn_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise bad(name, v, "a number >= 0", "Use 0.5.")
        if self.fp_weight + self.fn_weight <= 0:
            raise bad("fp_weight+fn_weight", 0, "a positive sum", "Use 0.5 and 0.5.")
        b, r = self.bands, self.rows
        for name, v in (("bands", b), ("rows", r)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise bad(name, v, "an integer >= 1 or unset (chosen for the threshold)", "")
        if b is None and r is None:
            b, r = optimal_bands_rows(
                float(t), self.num_perm, float(self.fp_weight), float(self.fn_weight)
            )
        elif b is None:
            b = self.num_perm // r
        elif r is None:
            r = self.num_perm // b
        if b < 1 or r < 1 or b * r > self.num_perm:
            raise ConfigError(
                f"dedup bands={b} x rows={r} (= {b * r}) does not fit num_perm={self.num_perm}; "
                "allowed: bands >= 1, rows >= 1, bands * rows <= num_perm. Lower --bands/--rows, "
                "raise --num-perm, or leave both unset to choose them for the threshold."
            )
        object.__setattr__(self, "bands", int(b))
        object.__setattr__(self, "rows", int(r))
        object.__setattr__(self, "threshold", float(t))
        object.__setattr__(self, "verify_sigmas", float(vs))
        object.__setattr__(self, "fp_weight", float(self.fp_weight))
        object.__setattr__(self, "fn_weight", float(self.fn_weight))

    @property
    def verify_cut(self) -> float:
        """Minimum estimated Jaccard of a verified candidate pair."""
        t = self.threshold
        return t - self.verify_sigmas * math.sqrt(t * (1.0 - t) / self.num_perm)

    @property
    def screen_cut(self) -> float:
        """The estimate a candidate pair needs before any further check: the estimate cut, or for
        verify="exact" the looser threshold - max(verify_sigmas, 3) sigma (0.7807 at the preset),
        so the screen loses ~0.1% of the pairs at the threshold instead of ~2%."""
        if self.verify != "exact":
            return self.verify_cut
        t = self.threshold
        sigmas = max(self.verify_sigmas, EXACT_SCREEN_SIGMAS)
        return t - sigmas * math.sqrt(t * (1.0 - t) / self.num_perm)

    @property
    def jaccard_cut(self) -> float | None:
        """The similarity a candidate pair must reach to be joined: the estimate cut, the
        threshold itself (exact check), or None (no check: every LSH candidate is joined)."""
        if not self.verify_candidates:
            return None
        if self.verify == "exact":
            return self.threshold
        return round(self.verify_cut, 6)

    def rule(self) -> str:
        """The rule a removed document met, as recorded per document in removed.parquet."""
        if self.verify == "none":
            return "lsh-component"
        via = "" if self.cluster_rule == "center" else " (chain)"
        if self.verify == "exact":
            return f"jaccard>={self.threshold:g}{via}"
        return f"estimate>={self.verify_cut:.4f}{via}"

    def criterion(self) -> dict[str, Any]:
        """What a removed document really satisfied, as numbers and one sentence (`summary`)."""
        t = f"{self.threshold:g}"
        cut = f"{self.verify_cut:.4f}"
        screen = f"{self.screen_cut:.4f}"
        if self.cluster_rule == "center":
            with_ = "with the document kept in its place (clusters split by id until this holds)"
        else:
            with_ = "with a neighbour in its cluster (chains allowed)"
        if self.verify == "none":
            check = "none"
            summary = (
                f"LSH candidates at Jaccard {t} ({self.bands} bands x {self.rows} rows), all "
                f"joined unchecked into components (pairs well below {t} can be removed)"
            )
        elif self.verify == "exact":
            check = "exact"
            summary = f"exact Jaccard >= {t} {with_}; candidates: LSH at {t}, MinHash estimate >= {screen}"
        else:
            check = "minhash-estimate"
            summary = (
                f"MinHash estimate >= {cut} ({t} - {self.verify_sigmas:g} sigma) {with_}; "
                f"candidates: LSH at {t}"
            )
        return {
            "lsh_threshold": self.threshold,
            "check": check,
            "cluster_rule": self.cluster_rule,
            "rule": self.rule(),
            "estimate_cut": round(self.screen_cut, 6) if self.verify_candidates else None,
            "jaccard_cut": self.jaccard_cut,
            "summary": summary,
        }

    @classmethod
    def from_preset(cls, name: str | None, **overrides: Any) -> DedupConfig:
        """Preset values (manifests/presets.toml, section `dedup`) overridden by non-None kwargs."""
        values: dict[str, Any] = dict(load_preset("dedup", name)) if name else {}
        known = set(toml_keys(cls))
        check_keys(values, known, f"dedup preset {name!r}", "Fix manifests/presets.toml.")
        names = {f.name for f in fields(cls)}
        bad = sorted(k for k in overrides if k not in names)
        if bad:
            raise ConfigError(f"unknown dedup option(s) {bad}; allowed: {sorted(names)}.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if ("bands" in overrides and overrides["bands"] is not None) or (
            "rows" in overrides and overrides["rows"] is not None
        ):
            # an explicit band layout replaces the preset's
            for k in ("bands", "rows"):
                if overrides.get(k) is None:
                    values.pop(k, None)
        return cls(**values)
