"""Inputs from object storage: a real S3-compatible server (moto's server mode, as s3fs's own tests
use) on 127.0.0.1 serves the bundled sample; reading, stats and a whole build from `s3://` must
equal the same from disk, and damage or a missing object must be the same clear errors.

Nothing leaves the machine: the server listens on 127.0.0.1, the endpoint is set explicitly,
proxies are unset and the EC2 metadata lookup is disabled (dummy credentials come from the env)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
s3fs = pytest.importorskip("s3fs", reason="s3fs is in the test extra (and the s3 extra)")

from pipeline.cli.main import main  # noqa: E402
from pipeline.data import sample_dir  # noqa: E402
from pipeline.read import ReadConfig, collect_stats, iter_documents, resolve_inputs  # noqa: E402
from pipeline.read.inputs import input_identity  # noqa: E402
from tests.read.helpers import pile_line, write_zst  # noqa: E402

BUCKET = "pile-test"
SMALL = ["--seq-length", "32", "--global-batch", "4", "--train-iters", "20", "--shard-size", "2000"]
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(filesystem, endpoint): a moto S3 server holding the bundled sample under
    s3://pile-test/sample/, with the environment a user sets for an S3-compatible store."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for k in (*PROXIES, "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(k, raising=False)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        # how a user points s3:// at an S3-compatible store (README: Inputs from object storage)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
        fs.mkdir(BUCKET)
        fs.put(str(sample_dir()), f"{BUCKET}/sample", recursive=True)
        try:
            yield fs, endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def _put(fs, local: Path, key: str) -> str:
    fs.put_file(str(local), f"{BUCKET}/{key}")
    fs.invalidate_cache()
    return f"s3://{BUCKET}/{key}"


def test_a_prefix_resolves_like_the_local_directory(s3):
    local = resolve_inputs([str(sample_dir() / "train")])
    remote = resolve_inputs([f"s3://{BUCKET}/sample/train"])
    assert [(f.index, f.name, f.kind) for f in remote] == [(f.index, f.name, f.kind) for f in local]
    assert [f.path for f in remote] == [
        f"s3://{BUCKET}/sample/train/0{i}.jsonl.zst" for i in range(4)
    ]
    # a trailing slash is the same prefix; a whole tree is named relative to its root, as on disk
    assert [f.path for f in resolve_inputs([f"s3://{BUCKET}/sample/train/"])] == [
        f.path for f in remote
    ]
    tree = resolve_inputs([f"s3://{BUCKET}/sample"])
    assert [f.name for f in tree] == [f.name for f in resolve_inputs([str(sample_dir())])]
    assert "train/00.jsonl.zst" in [f.name for f in tree]
    assert all(not f.name.endswith(".json") for f in tree)  # ground_truth.json is metadata


def test_documents_and_ids_equal_the_local_read(s3):
    local = list(iter_documents([str(sample_dir() / "train")], ReadConfig()))
    remote = list(iter_documents([f"s3://{BUCKET}/sample/train"], ReadConfig()))
    assert len(remote) == len(local) > 0
    assert [(d.doc_id, d.text, d.pile_set_name, d.meta, d.line) for d in remote] == [
        (d.doc_id, d.text, d.pile_set_name, d.meta, d.line) for d in local
    ]
    # `file` is where to find it (messages, inspect): the URL in place of the path
    train = str(sample_dir() / "train")
    assert [d.file for d in remote] == [
        d.file.replace(train, f"s3://{BUCKET}/sample/train") for d in local
    ]


def test_http_urls_read_like_files(s3):
    # moto serves objects at http://HOST/bucket/key without signing: the plain https:// path of
    # fsspec (ranged GETs through aiohttp), file URLs only (http has no listing to expand)
    fs, endpoint = s3
    pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")
    local = [str(p) for p in sorted((sample_dir() / "train").glob("*.jsonl.zst"))]
    for p in local:  # readable without credentials, as a public https:// URL is
        fs.chmod(f"{BUCKET}/sample/train/{Path(p).name}", acl="public-read")
    urls = [f"{endpoint}/{BUCKET}/sample/train/{Path(p).name}" for p in local]
    files = resolve_inputs(urls)
    assert [f.name for f in files] == [f.name for f in resolve_inputs(local)]
    got = [(d.doc_id, d.text, d.meta, d.line) for d in iter_documents(files, ReadConfig())]
    want = [(d.doc_id, d.text, d.meta, d.line) for d in iter_documents(local, ReadConfig())]
    assert got == want and len(got) > 0
    assert input_identity(files[0])[0] == Path(local[0]).stat().st_size


def test_stats_equal_local(s3, capsys):
    assert main(["stats", "--json", str(sample_dir() / "train")]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main(["stats", "--json", f"s3://{BUCKET}/sample/train"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote == local
    assert collect_stats([f"s3://{BUCKET}/sample/train"], ReadConfig()).documents > 0


def test_identity_is_size_and_etag_and_changes_with_the_object(s3, tmp_path):
    fs, _ = s3
    a = tmp_path / "a.jsonl"
    a.write_bytes(b'{"text": "one"}\n')
    url = _put(fs, a, "ident/a.jsonl")
    (f,) = resolve_inputs([url])
    size, tag = input_identity(f)
    assert size == a.stat().st_size and tag.startswith("ETag=")
    a.write_bytes(b'{"text": "two"}\n')  # same size, other content: another ETag
    _put(fs, a, "ident/a.jsonl")
    assert input_identity(f)[0] == size and input_identity(f)[1] != tag


def test_gzip_plain_and_parquet_objects_read_like_files(s3, tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, _ = s3
    lines = [pile_line(f"document {i} " * 50, "ArXiv") for i in range(300)]
    raw = b"".join(lines)
    (tmp_path / "p.jsonl").write_bytes(raw)
    (tmp_path / "g.jsonl.gz").write_bytes(gzip.compress(raw))
    rows = [json.loads(x) for x in lines[:50]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet", row_group_size=7)
    names = ("g.jsonl.gz", "p.jsonl", "t.parquet")
    urls = [_put(fs, tmp_path / n, f"kinds/{n}") for n in names]
    got = [(d.doc_id, d.text, d.line) for d in iter_documents(urls, ReadConfig())]
    want = [
        (d.doc_id, d.text, d.line)
        for d in iter_documents([str(tmp_path / n) for n in names], ReadConfig())
    ]
    assert got == want and len(got) == 650


def _error_of(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_truncated_object_is_the_same_error_as_a_truncated_file(s3, tmp_path, capsys):
    fs, _ = s3
    data = (sample_dir() / "train" / "01.jsonl.zst").read_bytes()
    cut = tmp_path / "cut" / "01.jsonl.zst"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) * 2 // 3])
    url = _put(fs, cut, "cut/01.jsonl.zst")
    code_l, err_l = _error_of(["stats", str(cut)], capsys)
    code_r, err_r = _error_of(["stats", url], capsys)
    assert code_l == code_r == 3
    assert url in err_r and "truncated zstd stream" in err_r
    # the same message, offsets included, with the URL in place of the path
    assert err_r.replace(url, "<input>") == err_l.replace(str(cut), "<input>")
    assert "decompressed bytes" in err_r


def test_corrupt_object_names_url_and_offsets(s3, tmp_path, capsys):
    fs, _ = s3
    data = bytearray((sample_dir() / "train" / "02.jsonl.zst").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    bad = tmp_path / "02.jsonl.zst"
    bad.write_bytes(bytes(data))
    url = _put(fs, bad, "bad/02.jsonl.zst")
    code_l, err_l = _error_of(["stats", str(bad)], capsys)
    code_r, err_r = _error_of(["stats", url], capsys)
    assert code_l == code_r == 3
    assert f"{url}: corrupt zstd data at compressed byte offset" in err_r
    assert err_r.replace(url, "<input>") == err_l.replace(str(bad), "<input>")


@pytest.mark.parametrize(
    "what",
    ["missing object", "missing prefix", "missing bucket"],
)
def test_missing_object_or_bucket_is_exit_3_naming_it(s3, capsys, what):
    url = {
        "missing object": f"s3://{BUCKET}/sample/train/99.jsonl.zst",
        "missing prefix": f"s3://{BUCKET}/nothing-here",
        "missing bucket": "s3://no-such-bucket-pile/train",
    }[what]
    code, err = _error_of(["stats", url], capsys)
    assert code == 3
    assert url in err and "does not exist" in err


def test_unsupported_remote_inputs_are_config_errors(s3, tmp_path, capsys):
    fs, _ = s3
    (tmp_path / "x.txt").write_text("hello\n")
    url = _put(fs, tmp_path / "x.txt", "odd/x.txt")
    code, err = _error_of(["stats", url], capsys)
    assert code == 2 and url in err and "unsupported file type" in err
    (tmp_path / "dataset_dict.json").write_text('{"splits": ["train"]}')
    _put(fs, tmp_path / "dataset_dict.json", "ds/dataset_dict.json")
    code, err = _error_of(["stats", f"s3://{BUCKET}/ds"], capsys)
    assert code == 2 and "save_to_disk" in err


def test_missing_protocol_package_is_exit_2_naming_pip(capsys, monkeypatch):
    import importlib

    registry = importlib.import_module("fsspec.registry")  # `fsspec.registry` is a mapping
    # gcsfs is not installed here; if it is, pretend it is not
    monkeypatch.setitem(
        registry.known_implementations,
        "gs",
        {"class": "gcsfs_not_installed.GCSFileSystem", "err": "Please install gcsfs"},
    )
    monkeypatch.delitem(registry._registry, "gs", raising=False)
    code, err = _error_of(["stats", "gs://bucket/train/00.jsonl.zst"], capsys)
    assert code == 2
    assert "gs://" in err and "pip install 'pile-pipeline[gcs]'" in err


def test_input_names_of_urls():
    from pipeline.read.inputs import input_names

    assert input_names(
        [
            "s3://b/pile/train/00.jsonl.zst",
            "s3://b/pile/train/01.jsonl.zst",
            "s3://b/pile/val.jsonl",
        ]
    ) == ["train/00.jsonl.zst", "train/01.jsonl.zst", "val.jsonl"]
    assert input_names(["s3://a/x.jsonl", "s3://b/y.jsonl"]) == ["a/x.jsonl", "b/y.jsonl"]
    # a mix of protocols (or of URLs and paths) keeps each URL whole
    assert input_names(["s3://a/x.jsonl", "gs://a/x.jsonl"]) == ["s3://a/x.jsonl", "gs://a/x.jsonl"]


def _published(out: Path) -> dict[str, str]:
    """sha256 of every artifact but the run's own records (build.toml names the inputs, _state/
    their identity, logs/ the run)."""
    res = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_file() and rel != "build.toml" and rel != ".lock":
            if not rel.startswith(("_state/", "logs/")):
                res[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return res


def test_build_from_s3_is_byte_identical_to_the_build_from_disk(s3, tmp_path):
    local = tmp_path / "local"
    remote = tmp_path / "remote"
    common = ["--workers", "1", *SMALL]
    assert main(["-q", "build", "--input", str(sample_dir() / "train"), "--out", str(local), *common]) == 0  # fmt: skip
    url = f"s3://{BUCKET}/sample/train"
    assert main(["-q", "build", "--input", url, "--out", str(remote), *common]) == 0
    want = _published(local)
    assert len(want) > 10
    assert _published(remote) == want
    assert url in (remote / "build.toml").read_text()
    assert main(["verify", str(remote)]) == 0
    # resume: the inputs' identity (URL, size, ETag) is unchanged, so nothing is redone
    assert main(["-q", "build", "--input", url, "--out", str(remote), *common]) == 0
    assert _published(remote) == want


def test_build_from_s3_with_two_worker_processes(s3, tmp_path):
    # a separate process, as a user runs it: the workers get the endpoint and credentials from
    # the environment and open the objects themselves
    fs, _ = s3
    corpus = tmp_path / "corpus"
    write_zst(corpus / "a" / "00.jsonl.zst", [pile_line(f"alpha {i} " * 30, "ArXiv") for i in range(40)])  # fmt: skip
    write_zst(corpus / "b" / "01.jsonl.zst", [pile_line(f"beta {i} " * 30, "Github") for i in range(40)])  # fmt: skip
    for rel in ("a/00.jsonl.zst", "b/01.jsonl.zst"):
        _put(fs, corpus / rel, f"two/{rel}")
    # the other documented way to name the endpoint: fsspec's per-protocol config variable
    env = {k: v for k, v in os.environ.items() if k not in (*PROXIES, "AWS_ENDPOINT_URL")}
    env["FSSPEC_S3_ENDPOINT_URL"] = s3[1]
    outs = {}
    for name, src in (("local", str(corpus)), ("remote", f"s3://{BUCKET}/two")):
        outs[name] = tmp_path / name
        r = subprocess.run(
            [sys.executable, "-m", "pipeline.cli.main", "-q", "build", "--input", src, "--out",
             str(outs[name]), "--workers", "2", "--variant", "standard", *SMALL],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
    assert _published(outs["remote"]) == _published(outs["local"])
    shutil.rmtree(outs["local"])


def test_build_output_to_object_storage_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _error_of(["build", "--out", "s3://bucket/out", "--dry-run"], capsys)
    assert code == 2 and "POSIX filesystem" in err
    assert not list(tmp_path.iterdir())  # no local `s3:/bucket/out` made instead


def test_a_large_object_streams_in_constant_memory(s3, tmp_path):
    # an object of ~24 MB compressed (random base64 text barely compresses) read with 1 MiB
    # read-ahead blocks, in a process of its own (the S3 server runs in this one): Python's peak
    # allocation stays a few blocks, far below the object (a full download, or a cache that kept
    # every block, would hold all of it)
    import base64

    import numpy as np

    fs, _ = s3
    rng = np.random.default_rng(3)
    lines = [pile_line(base64.b64encode(rng.bytes(6000)).decode(), "Pile-CC") for _ in range(4000)]
    big = write_zst(tmp_path / "big.jsonl.zst", lines, frames=8)
    assert big.stat().st_size > 20 * 2**20
    url = _put(fs, big, "big/big.jsonl.zst")
    script = f"""
import tracemalloc
from pipeline.read import ReadConfig, iter_documents, remote, resolve_inputs
remote.REMOTE_BLOCK_SIZE = 1 << 20
files = resolve_inputs([{url!r}])
tracemalloc.start()
n = sum(1 for _ in iter_documents(files, ReadConfig()))
print(n, tracemalloc.get_traced_memory()[1])
"""
    env = {k: v for k, v in os.environ.items() if k not in PROXIES}
    r = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    n, peak = map(int, r.stdout.split())
    assert n == 4000
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB reading a {big.stat().st_size} B object"


def test_stage_commands_take_urls_and_notice_a_rewritten_object(s3, tmp_path, capsys):
    # pile dedup then pile tokenize --exclude on s3:// inputs; an object rewritten in between
    # (its line numbers, so the dedup set's ids, no longer match) is refused as a local file is
    fs, _ = s3
    texts = [" ".join(f"w{i} w{i + 1} w{i + 2}" for i in range(k, k + 30)) for k in range(4)]
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    b.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:2]))
    _put(fs, a, "stage/a.jsonl")
    _put(fs, b, "stage/b.jsonl")
    url = f"s3://{BUCKET}/stage"
    assert main(["dedup", url, "--out", str(tmp_path / "D")]) == 0
    args = ["tokenize", url, "--out", str(tmp_path / "T"), "--prefix", "t"]
    assert main([*args, "--exclude", str(tmp_path / "D")]) == 0
    b.write_text(json.dumps({"text": "a new unique document"}) + "\n")
    _put(fs, b, "stage/b.jsonl")
    capsys.readouterr()
    assert main([*args, "--exclude", str(tmp_path / "D")]) == 2
    assert f"input {url}/b.jsonl is" in capsys.readouterr().err


def test_an_object_replaced_while_read_is_named(s3, tmp_path):
    from pipeline.errors import InputError
    from pipeline.read.remote import RemoteFile

    fs, _ = s3
    obj = tmp_path / "o.jsonl"
    obj.write_bytes(b"x" * 100_000)
    url = _put(fs, obj, "replaced/o.jsonl")
    f = RemoteFile(url, block_size=1 << 12)
    try:
        assert f.read(10) == b"x" * 10
        obj.write_bytes(b"y" * 100_000)
        _put(fs, obj, "replaced/o.jsonl")
        with pytest.raises(InputError, match="replaced while it was being read"):
            f.read(50_000)
    finally:
        f.close()
