"""Stage config contract: frozen dataclasses with a canonical JSON form and a fingerprint.

A fingerprint is the sha256 of the canonical JSON of the config (sorted keys, no whitespace), with
the config's class name and a schema version. Outputs and completion records store it, so an
artifact built with another config is detected instead of being silently reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class StageConfig:
    """Mixin for frozen config dataclasses: `to_dict()` and `fingerprint()`.

    Fields that do not change output bytes (worker counts, progress flags) are listed in the class
    attribute `_not_fingerprinted` and left out of the fingerprint.
    """

    _schema_version: int = 1
    _not_fingerprinted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(self)

    def fingerprint(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in self._not_fingerprinted}
        payload = canonical_json(
            {"class": type(self).__name__, "schema": self._schema_version, "config": d}
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def combine_fingerprints(*parts: str) -> str:
    """Fingerprint of a stage that depends on upstream fingerprints plus its own."""
    # parts may hold input names (any Unicode; surrogate escapes for undecodable path bytes):
    # UTF-8 with surrogatepass is the same bytes as ASCII for ASCII parts, so fingerprints stay
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
