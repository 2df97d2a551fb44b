"""The built-in demo, end to end on the offline corpus with a tiny time budget."""
import pytest

from glassgpt.demo import run_demo
from glassgpt.errors import GlassError
from glassgpt.model import load


def test_demo_trains_samples_tabulates_and_inspects(tmp_path, capsys):
    out = run_demo(tmp_path / "demo", seconds=3, corpus="python-docs", sample_tokens=8)
    shown = capsys.readouterr().out
    for t in ("0.2", "0.8", "1.2"):
        assert f"--- temperature {t} ---" in shown
    assert "p(T=0.5)" in shown and "p(T=2.0)" in shown and "(top-10 mass)" in shown
    assert "perplexity" in shown and "surprisal bits" in shown
    model = load(out)
    assert model.tokenizer is not None and (out / "loss.png").is_file() and (out / "log.jsonl").is_file()

    # running it again replaces its own run ...
    run_demo(out, seconds=1, corpus="python-docs", sample_tokens=2)
    # ... but never a directory that is not a demo run
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(GlassError, match="not a demo run"):
        run_demo(other, seconds=1, corpus="python-docs")
    assert (other / "notes.txt").read_text() == "keep me"
