"""LSH banding: choice of (bands, rows), the S-curve, and band keys.

Two documents whose signatures agree on all r rows of at least one of b bands become a candidate
pair. If each row agrees independently with probability J (the Jaccard similarity),
    P(candidate | J) = 1 - (1 - J**r)**b            (the S-curve)

Choosing b and r (when not given): the pair minimising
    w_fp * integral_0^t P(candidate | J) dJ  +  w_fn * integral_t^1 (1 - P(candidate | J)) dJ
over b * r <= K, i.e. datasketch's `_optimal_param` objective (weights 0.5/0.5), integrated here
with the trapezoid rule on 2001 points instead of scipy.quad; ties go to the smaller b, then the
smaller r, as in datasketch's loop. Only the first b*r signature rows are used.

Band key: a 64-bit hash of the band's r uint32 rows and the band index j:
    h = fmix64(SALT + j); for each row v: h = fmix64(h XOR v)
Each step is a bijection of h for a fixed v, so the chain acts like a random function of the
sequence; keys of different bands never meet (j is in the start value). Two different bands
collide with probability ~2**-64 per pair (and the optional verification drops such pairs).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.dedup.hashing import fmix64, fmix64_int

BAND_SALT = 0x5DEECE66D2B7E151
S_CURVE_POINTS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 .. 0.95


def candidate_probability(j, bands: int, rows: int):
    """P(candidate | J) = 1 - (1 - J**r)**b (scalar or array)."""
    j = np.asarray(j, dtype=np.float64)
    p = 1.0 - (1.0 - j**rows) ** bands
    return float(p) if p.ndim == 0 else p


def optimal_bands_rows(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """(b, r) minimising the weighted false-positive + false-negative areas (see module doc)."""
    grid = np.linspace(0.0, 1.0, 2001)
    lo = grid[grid <= threshold]
    hi = grid[grid >= threshold]
    if lo[-1] != threshold:
        lo = np.append(lo, threshold)
    if hi[0] != threshold:
        hi = np.insert(hi, 0, threshold)
    best = (math.inf, 0, 0)
    for b in range(1, num_perm + 1):
        rs = np.arange(1, num_perm // b + 1, dtype=np.float64)[:, None]
        fp = np.trapezoid(1.0 - (1.0 - lo[None, :] ** rs) ** b, lo, axis=1)
        fn = np.trapezoid((1.0 - hi[None, :] ** rs) ** b, hi, axis=1)
        err = fp_weight * fp + fn_weight * fn
        i = int(np.argmin(err))
        if err[i] < best[0]:
            best = (float(err[i]), b, i + 1)
    return best[1], best[2]


def s_curve(bands: int, rows: int, points=S_CURVE_POINTS) -> list[list[float]]:
    """[[J, P(candidate | J)], ...] for J = 0.50, 0.55, ..., 0.95."""
    return [[float(j), round(float(candidate_probability(j, bands, rows)), 6)] for j in points]


def verification_pass_probability(j: float, num_perm: int, cut: float) -> float:
    """P(fraction of equal rows >= cut) for a pair of true Jaccard j: Binomial(K, j) tail."""
    need = math.ceil(cut * num_perm - 1e-9)
    return float(
        sum(
            math.comb(num_perm, m) * j**m * (1 - j) ** (num_perm - m)
            for m in range(need, num_perm + 1)
        )
    )


def expected_recall(
    threshold: float, bands: int, rows: int, num_perm: int | None = None, cut: float | None = None
) -> dict[str, float]:
    """Recall of LSH alone at J = threshold and averaged over J uniform in [threshold, 1]; with
    `num_perm` and `cut`, also including the verification step (at the threshold and J = t + 0.03)."""
    js = np.linspace(threshold, 1.0, 1001)
    mean = float(np.trapezoid(candidate_probability(js, bands, rows), js) / (1.0 - threshold))
    out = {
        "at_threshold": round(float(candidate_probability(threshold, bands, rows)), 6),
        "mean_above_threshold": round(mean, 6),
    }
    if num_perm is not None and cut is not None:
        for key, j in (
            ("with_verification_at_threshold", threshold),
            ("with_verification_at_t_plus_0.03", min(threshold + 0.03, 1.0)),
        ):
            p = candidate_probability(j, bands, rows) * verification_pass_probability(
                j, num_perm, cut
            )
            out[key] = round(float(p), 6)
    return out


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64[n, bands] bucket keys of uint32 signatures [n, K >= bands*rows]."""
    n = sig.shape[0]
    x = sig[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    init = np.array([fmix64_int(BAND_SALT + j) for j in range(bands)], dtype=np.uint64)
    h = np.empty((n, bands), dtype=np.uint64)
    h[:] = init
    for i in range(rows):
        h ^= x[:, :, i]
        fmix64(h, out=h)
    return h
