"""`pile build` on a user's own corpus: --epochs, the default for --input, the whole-plan check
before the stages that depend on it, the repetition warning and the "next" commands."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.errors import ConfigError
from pipeline.job.config import resolve_build_config
from pipeline.job.plan_check import (
    REPEAT_WARNING,
    samples_in_epochs,
    train_iters_for_epochs,
)
from pipeline.order.indexmap import num_epochs_for, num_samples_for
from tests.job.test_build import make_corpus

# the corpus of tests/job/test_build.py: 60 documents, 3,913 tokens (58 / 3,467 deduped)
TOKENS = {"standard": 3913, "deduped": 3467}
SHAPE = ["--seq-length", "32", "--global-batch", "4", "--shard-size", "2000"]


def _state(out: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["status"] for p in (out / "_state").glob("*.json")}


def _fake_free(monkeypatch, free: int) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("pipeline.job.plan_check.shutil.disk_usage", lambda p: usage(0, 0, free))


# -- train_iters from epochs ---------------------------------------------------------------------


def test_train_iters_for_one_epoch_by_hand():
    # 1 epoch of 3,913 tokens at seq 32: (3913 - 1) // 32 = 122 samples of 33 tokens.
    # train_iters 30 -> ceil(30 * 4 * 1.005) = 121 <= 122; 31 -> 125 > 122
    assert samples_in_epochs(3913, 32, 1) == 122
    assert train_iters_for_epochs(3913, 32, 4, 1) == 30
    assert num_epochs_for(3913, 32, num_samples_for(30, 4)) == 1
    # 2 epochs: (7826 - 1) // 32 = 244; ceil(60 * 4.02) = 242 <= 244, ceil(61 * 4.02) = 246
    assert train_iters_for_epochs(3913, 32, 4, 2) == 60


@pytest.mark.parametrize(
    "tokens,seq,gb,epochs",
    [
        (3913, 32, 4, 1),
        (3913, 32, 4, 3),
        (355_000, 2048, 16, 1),
        (10**9, 2048, 1024, 1),
        (211_000_000_000 // 1000, 2048, 1024, 2),
        (99_991, 7, 13, 5),
    ],
)
def test_train_iters_is_the_largest_that_fits_n_epochs(tokens, seq, gb, epochs):
    ti = train_iters_for_epochs(tokens, seq, gb, epochs)
    fit = samples_in_epochs(tokens, seq, epochs)
    assert num_samples_for(ti, gb) <= fit < num_samples_for(ti + 1, gb)
    # the index maps hold exactly the epochs asked for
    assert num_epochs_for(tokens, seq, num_samples_for(ti, gb)) == epochs


def test_data_smaller_than_one_step_trains_one_step():
    # the corpus: 355k tokens hold 173 samples of 2049, a Pythia step needs 1,030
    assert train_iters_for_epochs(355_000, 2048, 1024, 1) == 1
    assert num_epochs_for(355_000, 2048, num_samples_for(1, 1024)) == 6


# -- config: the default for --input, precedence, errors -----------------------------------------


def test_own_input_defaults_to_one_epoch(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    own = str(tmp_path / "a.jsonl")
    assert resolve_build_config(inputs=[own]).order == {"preset": "pythia", "epochs": 1}
    # Pythia's exact run, a fixed train_iters, another epoch count, the bundled sample
    assert "epochs" not in resolve_build_config(inputs=[own], preset="pythia").order
    cfg = resolve_build_config(inputs=[own], overrides={"order": {"train_iters": 5}})
    assert cfg.epochs is None and cfg.order["train_iters"] == 5
    assert resolve_build_config(inputs=[own], overrides={"order": {"epochs": 3}}).epochs == 3
    assert resolve_build_config().epochs is None  # bundled sample: the sample preset


def test_epochs_and_train_iters_precedence(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'input = ["{tmp_path / "a.jsonl"}"]\npreset = "pythia"\n[order]\nepochs = 2\n')
    assert resolve_build_config(config_file=str(cfg)).epochs == 2
    # a flag outranks the file's other way of saying it
    got = resolve_build_config(config_file=str(cfg), overrides={"order": {"train_iters": 7}})
    assert got.epochs is None and got.order["train_iters"] == 7
    cfg.write_text(f'input = ["{tmp_path / "a.jsonl"}"]\n[order]\ntrain_iters = 9\n')
    got = resolve_build_config(config_file=str(cfg), overrides={"order": {"epochs": 1}})
    assert got.epochs == 1 and "train_iters" not in got.order
    assert resolve_build_config(config_file=str(cfg)).order["train_iters"] == 9


@pytest.mark.parametrize(
    "file_order,flags,message",
    [
        ("", {"epochs": 2, "train_iters": 3}, "--epochs 2 and --train-iters 3 both set"),
        ("epochs = 1\ntrain_iters = 5\n", {}, "[order] has both epochs = 1 and train_iters = 5"),
        ("epochs = 0\n", {}, "epochs = 0: must be an integer >= 1"),
        ('epochs = "one"\n', {}, "epochs = 'one': must be an integer >= 1"),
    ],
)
def test_epochs_errors(tmp_path, file_order, flags, message):
    cfg = tmp_path / "b.toml"
    cfg.write_text("[order]\n" + file_order)
    with pytest.raises(ConfigError) as e:
        resolve_build_config(config_file=str(cfg), overrides={"order": flags})
    assert message in str(e.value)


def test_epochs_and_train_iters_flags_exit_2(tmp_path, capsys):
    argv = ["build", "--input", str(tmp_path), "--epochs", "1", "--train-iters", "3", "--dry-run"]
    assert main(argv) == 2
    assert "give one of them" in capsys.readouterr().err


# -- a whole build with --epochs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    root = tmp_path_factory.mktemp("own corpus")  # a space: printed commands must be quoted
    corpus = make_corpus(root)
    out = root / "my out"
    argv = ["build", "--input", str(corpus), "--out", str(out), *SHAPE]
    assert main(["-q", *argv]) == 0  # no --epochs: the default for own data is 1
    return corpus, out, argv


def test_epochs_build_records_train_iters(one_epoch):
    _, out, _ = one_epoch
    assert "epochs = 1" in (out / "build.toml").read_text()
    rep = json.loads((out / "report.json").read_text())
    assert rep["build"]["order"]["epochs"] == 1
    for v, tokens in TOKENS.items():
        ti = train_iters_for_epochs(tokens, 32, 4, 1)
        d = rep["variants"][v]
        assert d["train_iters"] == ti and d["epochs"] == 1 and d["tokens"] == tokens
        ns = num_samples_for(ti, 4)
        maps = next((out / v).glob(f"*_indexmap_{ns}ns_32sl_1234s.manifest.json"))
        assert json.loads(maps.read_text())["config"]["train_iters"] == ti
        rec = json.loads((out / "_state" / f"order-{v}.json").read_text())
        assert rec["info"]["info"]["epochs_requested"] == 1
        assert rec["info"]["info"]["train_iters"] == ti
    assert train_iters_for_epochs(3913, 32, 4, 1) == 30  # the standard variant, by hand above
    assert (
        "1 epoch(s) of each dataset (train_iters standard 30, deduped"
        in (out / "report.html").read_text()
    )


def test_epochs_rerun_and_change(one_epoch, tmp_path, capsys):
    corpus, out, argv = one_epoch
    dst = tmp_path / "copy"
    shutil.copytree(out, dst)
    capsys.readouterr()
    assert main(["build", "--config", str(dst / "build.toml"), "--out", str(dst)]) == 0
    assert capsys.readouterr().err.count("up to date, skipped") == 8
    assert main(["-q", "build", "--config", str(dst / "build.toml"), "--epochs", "2"]) == 0
    text = capsys.readouterr().out
    ti = train_iters_for_epochs(TOKENS["standard"], 32, 4, 2)
    assert f"--epochs 2: train_iters standard {ti:,}" in text
    # the one-epoch maps were removed with the stage's earlier outputs
    tags = {p.name.split("_indexmap_")[1].split("ns_")[0] for p in dst.rglob("*ns_32sl*.npy")}
    two = {str(num_samples_for(train_iters_for_epochs(t, 32, 4, 2), 4)) for t in TOKENS.values()}
    assert tags == two
    assert json.loads((dst / "report.json").read_text())["variants"]["standard"]["epochs"] == 2
    assert main(["verify", str(dst)]) == 0


def test_dry_run_shows_epochs_and_warns_about_repetition(one_epoch, capsys):
    corpus, out, argv = one_epoch
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "standard   order: 1 epoch(s) of 60 documents / 3,913 tokens" in text
    assert "(--epochs 1: train_iters 30)" in text
    assert "WARNING" not in text
    # Pythia's length of run on this corpus: each step is 4 samples, 10,000 steps > 100 epochs
    assert main([*argv, "--train-iters", "10000", "--dry-run"]) == 0
    text = capsys.readouterr().out
    epochs = num_epochs_for(3913, 32, num_samples_for(10000, 4))
    assert epochs > REPEAT_WARNING
    assert f"WARNING: standard: the training order repeats this dataset {epochs:,} times" in text
    assert "For one pass over your data use --epochs 1 (train_iters 30 for this data)." in text


def test_data_smaller_than_one_step_warns_with_the_batch_that_fits(one_epoch, capsys):
    corpus, out, argv = one_epoch
    capsys.readouterr()
    # one step of 200 needs ceil(200 x 1.005) = 201 samples; one epoch holds 122 (108 deduped)
    assert main([*argv, "--global-batch", "200", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "WARNING: standard: the training order repeats this dataset 2 times" in text
    assert "1 epoch(s) of it are fewer samples than one step. For 1 epoch(s) use " in text
    assert "use --global-batch 121." in text  # ceil(121 x 1.005) = 122 <= 122
    assert "use --global-batch 107." in text  # deduped: ceil(107 x 1.005) = 108


# -- the whole plan is checked before the stages that depend on it -------------------------------


def test_refused_before_dedup_when_preshuffle_cannot_fit(tmp_path, monkeypatch, capsys):
    corpus = make_corpus(tmp_path)
    out = tmp_path / "out"
    # 100,000 steps x 4 samples x (33 tokens x 2 bytes + 12 index bytes) = 31.2 MB per variant
    _fake_free(monkeypatch, 10**6)
    argv = ["build", "--input", str(corpus), "--out", str(out), *SHAPE]
    assert main([*argv, "--train-iters", "100000"]) == 2
    err = capsys.readouterr().err
    assert "need 62.40 MB but only 1.00 MB is free" in err
    assert "checked before the first stage" in err
    assert "standard: pre-shuffled 400,000 samples x 33 tokens = 31.20 MB" in err
    toml = shlex.quote(str(out / "build.toml"))
    assert f"`pile build --config {toml} --epochs 1` (train_iters derived from the token" in err
    # 90% of 1 MB / (2 variants x 4 samples x 78 bytes)
    assert f"`pile build --config {toml} --train-iters 1442`" in err
    assert "Traceback" not in err
    assert not (out / "_state").exists() or _state(out) == {}  # no stage ran, not even dedup
    assert not (out / "dedup").exists()
    # the dry run says the same
    assert main([*argv, "--train-iters", "100000", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "will not fit; fix: add `--epochs 1` (train_iters derived" in text
    assert "`--train-iters 1442`" in text


def test_refused_after_tokenize_then_the_printed_fix_works(tmp_path, monkeypatch, capsys):
    corpus = make_corpus(tmp_path)
    out = tmp_path / "out"
    # 1000 epochs: known only once the tokens are counted; 122,000 samples = 8 MB > 1 MB free
    _fake_free(monkeypatch, 10**6)
    argv = ["build", "--input", str(corpus), "--out", str(out), *SHAPE]
    assert main(["-q", *argv, "--epochs", "1000"]) == 2
    err = capsys.readouterr().err
    assert "WARNING" in err and "the training order repeats this dataset 1,000 times" in err
    assert "checked after tokenize, before order" in err
    assert "standard: 1,000 epoch(s) of 3,913 tokens, index maps" in err
    state = _state(out)
    assert state["tokenize-standard"] == state["tokenize-deduped"] == "complete"
    assert "order-standard" not in state and "preshuffle-standard" not in state
    assert not list(out.rglob("*indexmap*"))
    fix = re.search(r"`(pile build --config [^`]+ --epochs 1)` \(train_iters standard 30", err)
    assert fix, err
    capsys.readouterr()
    assert main(shlex.split(fix.group(1))[1:]) == 0  # still 1 MB "free": one epoch fits
    text = capsys.readouterr()
    assert text.err.count("up to date, skipped") == 3  # dedup and both tokenize stages
    assert main(["verify", str(out)]) == 0


# -- the "next" commands ---------------------------------------------------------------------------


def test_next_commands_all_work_when_pasted(one_epoch, capsys):
    corpus, out, argv = one_epoch
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out
    lines = [x.strip() for x in text.split("\nnext:\n", 1)[1].splitlines() if x.strip()]
    assert len(lines) == 4
    ran = 0
    for line in lines:
        words = shlex.split(line, comments=True)  # a shell ignores a `#` line
        if not words:
            assert line.startswith("# the report: ")
            assert Path(shlex.split(line.split(": ", 1)[1])[0]).is_file()
            continue
        if words[0] == "pile":
            assert main(words[1:]) == 0, line
            ran += 1
        else:  # the platform's opener, printed only where it exists
            assert shutil.which(words[0]), line
            assert Path(words[1]) == out / "report.html"
    assert ran == 3
    capsys.readouterr()


def test_next_commands_report_opener(monkeypatch, tmp_path):
    from pipeline.cli.commands import build

    out = tmp_path / "a b"
    data, pre = out / "standard" / "pile_text_document", out / "standard" / "preshuffled"
    monkeypatch.setattr(build.sys, "platform", "linux")
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    lines = build.next_commands(out, data, pre)
    assert lines[-1] == f"# the report: '{out}/report.html' (open it in a browser)"
    assert not any(line.startswith("open ") for line in lines)
    monkeypatch.setattr(build.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert build.next_commands(out, data, pre)[-1] == f"xdg-open '{out}/report.html'"
    monkeypatch.setattr(build.sys, "platform", "darwin")
    assert build.next_commands(out, data, pre)[-1] == f"open '{out}/report.html'"
    assert build.next_commands(out, data, pre)[2] == f"pile verify '{out}'"
