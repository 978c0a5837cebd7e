"""Inputs in object storage (`s3://`, `gs://`, `hf://datasets/...`, `https://`) through fsspec.

A URL is read as a stream like a local file: opened with `fsspec` and a read-ahead of a few
`REMOTE_BLOCK_SIZE` blocks (constant memory, never a full download), so the line splitter, the
block-by-block zstd decoder and their error messages are the local ones, naming the URL. A prefix
("directory") expands like a local directory. Inputs are identified by URL, size and the store's
version tag (ETag, generation, blob id; else its modification time) instead of path, size and
mtime.

Endpoints, credentials and other storage options come from the environment, as fsspec and the
storage SDKs read it: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_PROFILE`,
`AWS_ENDPOINT_URL` (or fsspec's `FSSPEC_S3_ENDPOINT_URL`, `FSSPEC_S3_ANON=true`,
`FSSPEC_S3='{"client_kwargs": {...}}'`), `GOOGLE_APPLICATION_CREDENTIALS`, `HF_TOKEN`. Local
paths never come here: they keep the plain `open()` path.
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

from pipeline.errors import ConfigError, InputError

# Read-ahead per open remote file: the next block is fetched in a background thread while the
# current one is decoded (fsspec's "background" block cache, at most 2 blocks kept + 1 in flight:
# constant memory), so the network's latency hides behind decompression and parsing.
REMOTE_BLOCK_SIZE = 4 << 20
MAX_BLOCKS = 2


def _cache_options() -> dict[str, Any]:
    from fsspec.caching import caches

    if "background" in caches:
        return {"cache_type": "background", "cache_options": {"maxblocks": MAX_BLOCKS}}
    return {"cache_type": "readahead"}  # older fsspec: one block, fetched when needed


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

# the package that brings each protocol, for the message when it is missing
_PACKAGES = {
    "s3": ("s3fs", "pip install 'pile-pipeline[s3]'"),
    "s3a": ("s3fs", "pip install 'pile-pipeline[s3]'"),
    "gs": ("gcsfs", "pip install 'pile-pipeline[gcs]'"),
    "gcs": ("gcsfs", "pip install 'pile-pipeline[gcs]'"),
    "hf": ("huggingface_hub", "pip install huggingface_hub"),
    "http": ("aiohttp", "pip install aiohttp"),
    "https": ("aiohttp", "pip install aiohttp"),
}

CREDENTIALS_HINT = (
    "Check the URL and the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE; "
    "GOOGLE_APPLICATION_CREDENTIALS; HF_TOKEN) and, for an S3-compatible store, its endpoint "
    "(AWS_ENDPOINT_URL or FSSPEC_S3_ENDPOINT_URL); see the README, Inputs from object storage"
)

# keys of fsspec's info() that change when an object is rewritten, best first
_VERSION_KEYS = (
    "ETag", "etag", "generation", "md5Hash", "blob_id", "VersionId", "Last-Modified",
    "LastModified", "last_modified", "updated", "mtime", "created",
)  # fmt: skip


def is_url(path: str | os.PathLike) -> bool:
    """`scheme://...`: read through fsspec. Local paths (and the local `hf:DIR` form) are not."""
    return _SCHEME.match(os.fspath(path)) is not None


def protocol(url: str) -> str:
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else ""


def url_path(url: str) -> str:
    """What follows `scheme://` (`bucket/key` for s3): the part names are made of."""
    return url.split("://", 1)[1]


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, its path for `url`). A protocol whose package is not installed is a
    configuration error (exit 2) naming the pip command."""
    import fsspec

    proto = protocol(url)
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        pkg, cmd = _PACKAGES.get(proto, (None, None))
        how = f"{cmd} (it brings {pkg})" if cmd else "install the fsspec implementation for it"
        raise ConfigError(f"input {url}: reading {proto}:// needs a package: {how}. ({e})") from e
    except ValueError as e:  # fsspec: "Protocol not known"
        raise ConfigError(
            f"input {url}: {proto}:// is not a protocol fsspec knows ({e}); supported include "
            "s3://, gs://, hf://datasets/..., https://."
        ) from e


def _failure(url: str, e: BaseException) -> InputError:
    if isinstance(e, FileNotFoundError):
        # fsspec's http reports any failed GET (403 included) as not found
        refused = " or the server refused it" if protocol(url) in ("http", "https") else ""
        return InputError(
            f"input {url}: it does not exist (no such object or prefix, or no such bucket)"
            f"{refused}. Check the URL"
        )
    if isinstance(e, PermissionError):
        return InputError(f"input {url}: access denied ({e}). {CREDENTIALS_HINT}")
    return InputError(f"input {url}: cannot be read ({type(e).__name__}: {e}). {CREDENTIALS_HINT}")


def info(url: str) -> dict[str, Any]:
    """fsspec's info() of `url`; a missing object or bucket, or refused access, is an InputError
    naming the URL."""
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache(path)  # the store now, not a listing cached earlier in this process
        return fs.info(path)
    except Exception as e:  # each store raises its own types (botocore, aiohttp, ...)
        raise _failure(url, e) from e


def listing(url: str) -> list[tuple[str, str]]:
    """(relative path, URL) of every object below the prefix `url`, unsorted."""
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache(path)
        found = fs.find(path, withdirs=False)
    except Exception as e:
        raise _failure(url, e) from e
    base = path.rstrip("/") + "/"
    top = url.rstrip("/") + "/"
    out = []
    for p in found:
        if p.startswith(base):
            rel = p[len(base) :]
            out.append((rel, top + rel))
    return out


def read_head(url: str, n: int) -> bytes:
    """The first `n` bytes of an object (one ranged request, no read-ahead block)."""
    fs, path = filesystem(url)
    try:
        return fs.cat_file(path, start=0, end=n)
    except Exception as e:
        raise _failure(url, e) from e


class RemoteStat(NamedTuple):
    """The two fields of `os.stat_result` that identify an input, for a URL: the version tag
    stands in for st_mtime_ns (a string; it changes when the object is rewritten)."""

    st_size: int
    st_mtime_ns: int | str


def version_tag(meta: dict[str, Any]) -> str:
    for key in _VERSION_KEYS:
        v = meta.get(key)
        if v not in (None, ""):
            return f"{key}={v}"
    return ""


def input_stat(path: str) -> os.stat_result | RemoteStat:
    """`os.stat(path)` for a local path; size and version tag of a URL. Raises OSError when it
    cannot be stat'ed, as os.stat does (callers treat that as "changed")."""
    if not is_url(path):
        return os.stat(path)
    try:
        meta = info(path)
    except InputError as e:
        raise OSError(str(e)) from e
    return RemoteStat(int(meta.get("size") or 0), version_tag(meta))


class RemoteFile:
    """A remote object opened for sequential reading; a failing read (network, credentials
    expiring) becomes an InputError naming the URL and the byte offset."""

    mode = "rb"

    def __init__(self, url: str, block_size: int | None = None) -> None:
        self.url = self.name = url
        fs, path = filesystem(url)
        block = block_size or REMOTE_BLOCK_SIZE
        try:
            self._f = fs.open(path, "rb", block_size=block, **_cache_options())
        except Exception as e:
            raise _failure(url, e) from e
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._f.read(n)
        except Exception as e:
            if type(e).__name__ == "FileExpired":  # fsspec: the ETag changed under the reader
                raise InputError(
                    f"{self.url}: the object was replaced while it was being read (at byte "
                    f"offset {self.pos}); rerun, so that every stage reads one version of it"
                ) from e
            raise InputError(
                f"{self.url}: reading at byte offset {self.pos} failed ({type(e).__name__}: "
                f"{e}). {CREDENTIALS_HINT}; a finished stage is kept, so rerunning resumes"
            ) from e
        self.pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def __enter__(self) -> RemoteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(path: str, buffering: int = -1):
    """A binary file object: the builtin `open()` for a local path (today's code path), a
    streaming `RemoteFile` for a URL."""
    if not is_url(path):
        return open(path, "rb", buffering=buffering)  # noqa: SIM115
    return RemoteFile(path)


def parquet_source(path: str):
    """What `pyarrow.parquet.ParquetFile` opens: the path, or for a URL an fsspec file with
    fsspec's default (random-access) cache, as parquet reads its footer first."""
    if not is_url(path):
        return path
    fs, p = filesystem(path)
    try:
        return fs.open(p, "rb")
    except Exception as e:
        raise _failure(path, e) from e
