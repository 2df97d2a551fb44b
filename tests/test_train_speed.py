"""Speed choices at the start of a run: compile when it pays, precision by measurement,
batches gathered ahead; none of them changes what is trained."""
from __future__ import annotations

import itertools
import signal

import numpy as np
import pytest
import torch

from glassgpt.model import GPTConfig
from glassgpt.train import TrainConfig, train
from helpers import prepared_chars
from glassgpt.train import loop as loop_module
from glassgpt.train import speed
from glassgpt.train.data import PrefetchedBatches, RandomBatches
from glassgpt.train.state import load_train_state, read_log

TEXT = "".join(f"{a} {b} {c}.\n" for a, b, c in itertools.product(
    ("one", "two", "three"), ("red", "green", "blue", "white"), ("cat", "dog", "fox", "owl", "bee")))
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepared_chars(tmp_path_factory.mktemp("data"), TEXT * 3)


def tiny() -> GPTConfig:
    return GPTConfig(vocab_size=len(set(TEXT)), context_length=16, d_model=32, n_layer=1, n_head=2)


def settings(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(batch_size=4, max_iters=6, eval_interval=3, eval_iters=2, log_interval=1,
                                 warmup_iters=1, lr=3e-3, seed=3, device="cpu", precision="fp32"), **overrides})


def losses(run) -> list[float]:
    return [r["train_loss"] for r in read_log(run) if "train_loss" in r]


# -- compile when it pays -------------------------------------------------------------------------
def test_compile_pays_when_the_budget_saves_more_than_compiling_costs():
    assert speed.compile_pays(budget_seconds=600, compile_seconds=40, speedup=1.45)      # saves ~186 s
    assert not speed.compile_pays(budget_seconds=60, compile_seconds=40, speedup=1.45)   # saves ~19 s
    assert not speed.compile_pays(budget_seconds=10**6, compile_seconds=1, speedup=0.9)  # slower compiled


def test_auto_compiles_a_long_run_and_not_a_short_one_with_the_decision_inputs_stubbed():
    known = {"compile_seconds": 30.0, "speedup": 1.5}
    assert speed.decide_compile("auto", 3600, known, "cpu").compile
    assert not speed.decide_compile("auto", 20, known, "cpu").compile
    assert not speed.decide_compile("auto", 3600, known, "mps").compile
    assert not speed.decide_compile("auto", None, known, "cpu").compile
    first = speed.decide_compile("auto", 100, None, "cpu")                     # no history: the guess
    assert first.compile_seconds == speed.GUESS_COMPILE_SECONDS["cpu"] and "guessed" in first.reason
    assert speed.decide_compile("on", 1, None, "cpu").compile
    assert not speed.decide_compile("off", 10**6, known, "cpu").compile


@pytest.mark.parametrize("max_iters, expected", [(10**7, True), (3, False)])
def test_a_trainer_decides_from_its_budget(data_dir, tmp_path, monkeypatch, max_iters, expected):
    decided = []
    monkeypatch.setattr(loop_module, "known_compile", lambda key: {"compile_seconds": 5.0, "speedup": 1.5})
    monkeypatch.setattr(loop_module.Trainer, "wrap", lambda self, model: decided.append(self.compiled) or model)
    monkeypatch.setattr(loop_module.Trainer, "run", lambda self: None)
    train(data_dir, tmp_path / "run", tiny(), settings(max_iters=max_iters, compile="auto"), progress=False)
    assert decided == [expected]


def test_compile_history_is_kept_per_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path))
    key = speed.shape_key(tiny(), 4, "fp32", "cpu")
    assert speed.known_compile(key) is None
    speed.remember_compile(key, 12.5, 1.4)
    assert speed.known_compile(key) == {"compile_seconds": 12.5, "speedup": 1.4}
    assert speed.shape_key(tiny().replace(d_model=64), 4, "fp32", "cpu") != key


def test_old_runs_true_and_false_compile_settings_still_load():
    assert TrainConfig(compile=True).compile == "on" and TrainConfig(compile=False).compile == "off"
    with pytest.raises(Exception, match="compile must be one of"):
        TrainConfig(compile="sometimes")


# -- precision by measurement ---------------------------------------------------------------------
def test_auto_precision_takes_bf16_only_when_measured_clearly_faster(monkeypatch):
    model = torch.nn.Linear(2, 2)
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: True)
    for timings, expected in (({"fp32": 1.0, "bf16": 0.5}, "bf16"), ({"fp32": 1.0, "bf16": 0.95}, "fp32"),
                              ({"fp32": 0.5, "bf16": 1.0}, "fp32")):
        monkeypatch.setattr(speed, "time_precisions", lambda *a, t=timings: dict(t))
        choice = speed.choose_precision(model, None, CPU, "auto", "bf16")
        assert choice.precision == expected and "measured" in choice.reason
    assert speed.choose_precision(model, None, CPU, "fp32", "bf16").precision == "fp32"
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: False)
    assert speed.choose_precision(model, None, CPU, "auto", "fp32").precision == "fp32"


def test_an_auto_precision_is_measured_once_per_shape_and_then_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path))
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: True)
    measured = []
    monkeypatch.setattr(speed, "time_precisions", lambda *a: measured.append(1) or {"fp32": 1.0, "bf16": 0.5})
    key = speed.shape_key(tiny(), 4, "auto", "cpu")
    first = speed.choose_precision(torch.nn.Linear(2, 2), None, CPU, "auto", "bf16", key=key)
    monkeypatch.setattr(speed, "time_precisions", lambda *a: measured.append(1) or {"fp32": 0.5, "bf16": 1.0})
    again = speed.choose_precision(torch.nn.Linear(2, 2), None, CPU, "auto", "bf16", key=key)
    other = speed.choose_precision(torch.nn.Linear(2, 2), None, CPU, "auto", "bf16", key="another shape")
    assert (first.precision, again.precision, other.precision) == ("bf16", "bf16", "fp32")
    assert len(measured) == 2 and "measured before" in again.reason


def test_timing_precisions_leaves_gradients_and_random_state_alone():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))

    class Out:
        def __init__(self, loss):
            self.loss = loss
    wrapped = lambda x, y: Out((model(x) - y).square().mean())
    wrapped.zero_grad = model.zero_grad
    batch = (torch.randn(3, 4), torch.randn(3, 4))
    state = torch.get_rng_state()
    timings = speed.time_precisions(wrapped, batch, CPU, ("fp32",), 2)
    assert timings["fp32"] > 0 and model[0].weight.grad is None
    assert torch.equal(torch.get_rng_state(), state)



def test_timing_precisions_times_a_slice_of_a_large_batch_and_scales_it_to_the_batch(monkeypatch):
    seen = []

    class Out:
        def __init__(self, loss):
            self.loss = loss

    def wrapped(x, y):
        seen.append(tuple(x.shape))
        return Out(torch.zeros((), requires_grad=True).sum())
    wrapped.zero_grad = lambda set_to_none=True: None
    clock = iter(range(100))                                   # each forward + backward "takes" 1 s
    monkeypatch.setattr(speed.time, "perf_counter", lambda: next(clock))
    batch = (torch.zeros(64, 256, dtype=torch.long), torch.zeros(64, 256, dtype=torch.long))
    timings = speed.time_precisions(wrapped, batch, CPU, ("fp32",), 2, tokens=4096)
    assert set(seen) == {(16, 256)}                            # 16 rows x 256 = 4,096 tokens
    assert timings["fp32"] == 4.0                              # 1 s for a quarter of the batch
    seen.clear()
    small = (torch.zeros(12, 64, dtype=torch.long), torch.zeros(12, 64, dtype=torch.long))
    speed.time_precisions(wrapped, small, CPU, ("fp32",), 1, tokens=4096)
    assert set(seen) == {(12, 64)}                             # a small batch is timed whole

# -- batches gathered ahead -----------------------------------------------------------------------
def test_prefetched_batches_are_exactly_the_plain_ones_and_resume_exactly():
    tokens = np.arange(1000, dtype=np.uint16)
    plain = RandomBatches(tokens, 3, 8, CPU, seed=5)
    ahead = PrefetchedBatches(RandomBatches(tokens, 3, 8, CPU, seed=5))
    for _ in range(7):
        (x1, y1), (x2, y2) = plain.next(), ahead.next()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    saved = ahead.state()                                  # before the next batch handed out, not the drawn ones
    assert torch.equal(saved, plain.state())
    expected = [plain.next() for _ in range(3)]
    again = PrefetchedBatches(RandomBatches(tokens, 3, 8, CPU, seed=99))
    again.set_state(saved)
    for x, _ in expected:
        assert torch.equal(again.next()[0], x)
    ahead.close(), again.close()


def test_a_run_with_prefetching_trains_exactly_as_one_without(data_dir, tmp_path):
    train(data_dir, tmp_path / "plain", tiny(), settings(prefetch=False), progress=False)
    train(data_dir, tmp_path / "ahead", tiny(), settings(prefetch=True), progress=False)
    assert losses(tmp_path / "plain") == losses(tmp_path / "ahead")


# -- compiled -------------------------------------------------------------------------------------
def test_compiled_training_matches_eager_and_resumes_exactly(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    eager = train(data_dir, tmp_path / "eager", tiny(), settings(compile="off"), progress=False)
    whole = train(data_dir, tmp_path / "whole", tiny(), settings(compile="on"), progress=False)
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "whole")[:3]),
                               torch.tensor(losses(tmp_path / "eager")[:3]), atol=1e-4, rtol=0)
    assert abs(whole.val_loss - eager.val_loss) < 1e-3
    gathered, real_gather = [], RandomBatches.gather

    def gather_then_ctrl_c(self, starts):                 # prefetching: runs on the background thread
        gathered.append(1)
        if len(gathered) == 5:
            signal.raise_signal(signal.SIGINT)
        return real_gather(self, starts)
    monkeypatch.setattr(RandomBatches, "gather", gather_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, tmp_path / "cut", tiny(), settings(compile="on"), progress=False)
    monkeypatch.setattr(RandomBatches, "gather", real_gather)
    assert 0 < load_train_state(tmp_path / "cut")["step"] < 6
    resumed = train(None, tmp_path / "cut", resume=True, progress=False)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert speed.known_compile(speed.shape_key(whole.model.config, 4, "fp32", "cpu")) is not None
