"""64-bit hashing primitives shared by the dedup modules (all vectorised numpy, uint64 wraparound).

- `fmix64`: the MurmurHash3 64-bit finaliser (xor-shift 33, multiply, xor-shift 33, multiply,
  xor-shift 33). A bijection on 64-bit words with full avalanche; used to finish shingle hashes and
  to chain the rows of an LSH band into one bucket key.
- `splitmix64_stream(seed, n)`: the SplitMix64 generator (Steele et al. 2014) in pure Python. It
  derives every random parameter (MinHash permutations) from the explicit config seed, so the
  parameters are the same on every platform and NumPy version (NumPy's `Generator` streams carry no
  such promise) and never touch global random state.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


def fmix64(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """MurmurHash3 fmix64 of a uint64 array (in place when `out is x`)."""
    if out is None:
        out = np.array(x, dtype=np.uint64, copy=True)
    elif out is not x:
        np.copyto(out, x)
    with np.errstate(over="ignore"):
        out ^= out >> _S33
        out *= _M1
        out ^= out >> _S33
        out *= _M2
        out ^= out >> _S33
    return out


def fmix64_int(x: int) -> int:
    """Scalar `fmix64` (Python ints), for constants."""
    x &= MASK64
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK64
    x ^= x >> 33
    return x


def splitmix64_stream(seed: int, n: int) -> list[int]:
    """`n` SplitMix64 outputs for `seed` (Python ints in [0, 2**64))."""
    state = seed & MASK64
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append(z ^ (z >> 31))
    return out
