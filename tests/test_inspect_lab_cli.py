"""`glassgpt patch`, `glassgpt attribute`, `glassgpt heads` through the real dispatcher
(in-process: the commands are thin shells, the library is tested in test_inspect_lab.py)."""
from __future__ import annotations

import json

import pytest
import torch

from glassgpt import Tokenizer
from glassgpt.cli import main
from glassgpt.model import GPT, GPTConfig, save

CORPUS = "the cat sat on the mat. the dog sat on the log. "


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab_cli")
    tok = Tokenizer.chars(CORPUS)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=32, d_model=32), tokenizer=tok)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    save(model, d / "run")
    return d


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_patch_writes_tables_heatmaps_and_json(run, capsys):
    out = run / "patch"
    code, stdout, err = cli(capsys, "patch", run / "run", "--clean", "the cat sat on the", "--corrupt",
                            "the dog sat on the", "--answer", "m", "--wrong", "l", "--over", "resid_pre",
                            "--over", "head", "-o", out)
    assert code == 0, err
    assert "patching resid_pre: logit('m') - logit('l')" in stdout and "0 = corrupt, 1 = clean" in stdout
    data = json.loads((out / "patch.json").read_text())
    assert set(data) == {"resid_pre", "head"}
    assert len(data["resid_pre"]["values"]) == 2 and len(data["resid_pre"]["values"][0]) == len("the cat sat on the")
    assert data["head"]["axes"] == ["layer", "head"] and data["resid_pre"]["labels"]["position"][4] == "c"
    for png in ("patch_resid_pre.png", "patch_head.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_attribute_writes_table_bars_and_json(run, capsys):
    out = run / "attribute"
    code, stdout, err = cli(capsys, "attribute", run / "run", "the cat sat on the", "--token", "m",
                            "--versus", "l", "--position", "-2", "-o", out)
    assert code == 0, err
    assert "direct logit attribution at position 16" in stdout and "head 1." in stdout
    data = json.loads((out / "attribution.json").read_text())
    assert abs(data["total"] - data["logit"]) < 1e-4 and len(data["heads"]) == 2
    for png in ("attribution.png", "attribution_heads.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_heads_writes_table_heatmap_and_json(run, capsys):
    out = run / "heads"
    code, stdout, err = cli(capsys, "heads", run / "run", "--length", "8", "--batch", "2", "-o", out)
    assert code == 0, err
    assert "induction" in stdout and len([l for l in stdout.splitlines() if l[:1].isdigit()]) == 2 * 4
    data = json.loads((out / "heads.json").read_text())
    assert data["settings"]["length"] == 8 and len(data["induction"]) == 2
    assert (out / "heads.png").read_bytes()[:4] == b"\x89PNG"
    code, stdout, err = cli(capsys, "heads", run / "run", "--alphabet", "cat", "--batch", "2", "-o", out)
    assert code == 0, err
    assert "3 tokens drawn from 3 tokens of the alphabet" in stdout
    drawn = json.loads((out / "heads.json").read_text())["settings"]["drawn_from"]
    assert drawn == sorted(Tokenizer.chars(CORPUS).encode("cat"))


@pytest.mark.parametrize("args, message", [
    (["patch", "--clean", "the cat", "--corrupt", "the cats", "--answer", "m", "--wrong", "l"],
     "clean and corrupt must have the same number of tokens: clean has 7, corrupt has 8"),
    (["patch", "--clean", "the cat", "--corrupt", "the dog", "--answer", "ma", "--wrong", "l"],
     "the answer 'ma' is 2 tokens ('m' 'a'), not one"),
    (["patch", "--clean", "the cat", "--corrupt", "the dog", "--answer", "m", "--wrong", "l", "--over", "mlp"],
     "unknown over='mlp': choose one of resid_pre, attn_out, ff_out, head, head_position"),
    (["attribute", "the cat", "--position", "7", "--token", "m"],
     "position 7 is out of range: the text has 7 tokens"),
    (["attribute", "the cat", "--token", "mat"], "the token 'mat' is 3 tokens"),
    (["heads", "--length", "40"], "length must be 2 .. 16"),
])
def test_bad_input_is_one_line(run, capsys, args, message):
    code, stdout, err = cli(capsys, args[0], run / "run", *args[1:], "-o", run / "bad")
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {message}"), err


def test_post_ln_model_is_refused(run, capsys):
    tok = Tokenizer.chars(CORPUS)
    save(GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=32, d_model=32, norm="post"),
             tokenizer=tok), run / "post")
    code, _, err = cli(capsys, "attribute", run / "post", "the cat", "-o", run / "bad")
    assert code == 2 and "post-LN" in err and len(err.splitlines()) == 1
