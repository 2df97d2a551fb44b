"""The training loop: every variant learns, runs reproduce and resume exactly, checkpoints survive crashes."""
from __future__ import annotations

import itertools
import signal

import pytest
import torch
from PIL import Image

from glassgpt.errors import CheckpointError, GlassError
from glassgpt.model import GPT, GPTConfig, load, save
from glassgpt.train import TrainConfig, train
from helpers import prepared_chars
from glassgpt.train import data as data_module
from glassgpt.train import state as state_module
from glassgpt.train.loop import make_optimizer
from glassgpt.train.state import current_checkpoint, load_train_state, read_log

TEXT = "".join(f"{w} the {v} of the {n}.\n" for w, v, n in itertools.product(
    ("Shall I compare", "Now is", "To be is"), ("winter", "summer", "season", "question"),
    ("day", "night", "king", "sea", "crown")))
VOCAB = len(set(TEXT)) + 1
CPU = torch.device("cpu")


def tiny(**overrides) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=VOCAB, context_length=16, d_model=32, n_layer=1, n_head=2), **overrides})


def quick(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(batch_size=4, max_iters=12, eval_interval=4, eval_iters=2, log_interval=1,
                                 warmup_iters=2, lr=3e-3, seed=7, device="cpu", precision="fp32"), **overrides})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepared_chars(tmp_path_factory.mktemp("data"), TEXT * 2)


def losses(run_dir) -> list[tuple]:
    """What must repeat exactly: per-step train losses, learning rates, validation losses."""
    return [(r["step"], r.get("train_loss"), r.get("lr"), r.get("val_loss")) for r in read_log(run_dir)]


def fixed_batch(config: GPTConfig, batch: int = 4):
    ids = torch.tensor([ord(c) % config.vocab_size for c in TEXT[: batch * (config.context_length + 1)]])
    block = ids.view(batch, config.context_length + 1)
    return block[:, :-1], block[:, 1:]


# -- learning -----------------------------------------------------------------------------------
@pytest.mark.parametrize("positional, norm, activation, bias, tie", list(itertools.product(
    ("learned", "sinusoidal", "rope", "none"), ("pre", "post"), ("gelu", "gelu_exact", "relu"),
    (True, False), (True, False))))
def test_every_config_variant_trains_and_its_loss_falls(positional, norm, activation, bias, tie):
    torch.manual_seed(0)
    config = tiny(positional=positional, norm=norm, activation=activation, bias=bias, tie_embeddings=tie,
                  d_model=16, context_length=8)
    model = GPT(config)
    optimizer = make_optimizer(model, quick(lr=1e-2), CPU)
    x, y = fixed_batch(config)
    history = []
    for _ in range(8):
        loss = model(x, y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(loss.item())
    assert history[-1] < 0.8 * history[0], history


def test_a_tiny_model_overfits_a_tiny_batch():
    torch.manual_seed(0)
    config = tiny()
    model = GPT(config)
    optimizer = make_optimizer(model, quick(lr=1e-2, weight_decay=0.0), CPU)
    x, y = fixed_batch(config, batch=2)
    for _ in range(150):
        loss = model(x, y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert loss.item() < 0.1


def test_only_matrices_get_weight_decay():
    model = GPT(tiny())
    decayed, plain = make_optimizer(model, quick(), CPU).param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


# -- runs ---------------------------------------------------------------------------------------
def test_a_run_is_a_loadable_checkpoint_with_log_plot_and_best(data_dir, tmp_path):
    result = train(data_dir, tmp_path / "run", tiny(), quick(), progress=False)
    run = tmp_path / "run"
    assert result.step == 12 and result.val_loss is not None and result.best_val_loss <= result.val_loss
    for name in ("config.json", "model.safetensors", "tokenizer.json", "checkpoint.json", "train_config.json",
                 "log.jsonl", "loss.png", "best/model.safetensors", "best/config.json", "best/tokenizer.json"):
        assert (run / name).is_file(), name
    checkpoint = current_checkpoint(run)                   # the one resumable set, and nothing else
    assert [p.name for p in (run / "checkpoints").iterdir()] == [checkpoint.name]
    assert {p.name for p in checkpoint.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                                      "train_state.pt"}
    assert (run / "model.safetensors").stat().st_ino == (checkpoint / "model.safetensors").stat().st_ino
    assert Image.open(run / "loss.png").size[0] > 300
    records = read_log(run)
    assert [r["step"] for r in records if "train_loss" in r] == list(range(1, 13))
    assert [r["step"] for r in records if "val_loss" in r] == [4, 8, 12]
    assert records[-1]["val_loss"] < [r for r in records if "val_loss" in r][0]["val_loss"] + 1e-9
    loaded = load(run)                                     # the last weights, tokenizer included
    ids = torch.tensor([loaded.tokenizer.encode("Now is the")])
    assert torch.equal(loaded(ids).logits, result.model(ids).logits)
    assert load(run / "best").config == loaded.config
    assert loaded.config.vocab_size == loaded.tokenizer.vocab_size        # taken from the data


def test_same_seed_same_losses_other_seed_other_losses(data_dir, tmp_path):
    config = tiny(dropout=0.1)
    train(data_dir, tmp_path / "a", config, quick(max_iters=6), progress=False)
    train(data_dir, tmp_path / "b", config, quick(max_iters=6), progress=False)
    train(data_dir, tmp_path / "c", config, quick(max_iters=6, seed=8), progress=False)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


def test_ctrl_c_saves_and_resume_matches_an_uninterrupted_run_bit_for_bit(data_dir, tmp_path, monkeypatch):
    config, settings = tiny(dropout=0.1), quick(grad_accum=2, prefetch=False)   # draws counted below
    whole = train(data_dir, tmp_path / "whole", config, settings, progress=False)

    draws = {"n": 0}
    real_next = data_module.RandomBatches.next

    def next_then_ctrl_c(self):
        draws["n"] += 1
        if draws["n"] == 13:                              # during step 7 (two micro-batches per step)
            signal.raise_signal(signal.SIGINT)
        return real_next(self)
    monkeypatch.setattr(data_module.RandomBatches, "next", next_then_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, tmp_path / "cut", config, settings, progress=False)
    monkeypatch.setattr(data_module.RandomBatches, "next", real_next)
    assert load_train_state(tmp_path / "cut")["step"] == 7      # the step in progress was finished and saved
    assert signal.getsignal(signal.SIGINT) is handler                 # Ctrl-C behaves as before again

    resumed = train(None, tmp_path / "cut", resume=True, progress=False)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_can_extend_a_finished_run(data_dir, tmp_path):
    train(data_dir, tmp_path / "run", tiny(), quick(max_iters=4), progress=False)
    result = train(None, tmp_path / "run", train_config=quick(max_iters=8), resume=True, progress=False)
    assert result.step == 8 and [r["step"] for r in read_log(tmp_path / "run") if "val_loss" in r] == [4, 8]


def test_a_time_budget_ends_the_run(data_dir, tmp_path):
    result = train(data_dir, tmp_path / "run", tiny(), quick(max_iters=None, max_seconds=0.5, eval_interval=10**6),
                   progress=False)
    assert result.step >= 1 and result.elapsed >= 0.5 and load_train_state(tmp_path / "run")["step"] == result.step


# -- crashes and bad input ------------------------------------------------------------------------
def test_a_crash_while_saving_leaves_the_previous_checkpoint_loadable(data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    result = train(data_dir, run, tiny(), quick(max_iters=4), progress=False)
    before = (run / "model.safetensors").read_bytes()

    def crash_midway(model, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr("glassgpt.model.checkpoint.save_model", crash_midway)
    with torch.no_grad():
        result.model.embed.weight.add_(1.0)
    with pytest.raises(OSError):
        state_module.save_checkpoint(run, result.model, {"step": 5})
    assert (run / "model.safetensors").read_bytes() == before
    assert load_train_state(run)["step"] == 4 and load(run).config == result.model.config
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert len(list((run / "checkpoints").iterdir())) == 1          # the half-written set is gone


def test_weights_of_one_step_never_meet_the_state_of_another(data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    result = train(data_dir, run, tiny(), quick(max_iters=4), progress=False)

    def crash(*args, **kwargs):
        raise OSError("killed")
    monkeypatch.setattr(state_module.torch, "save", crash)     # weights of step 5 written, state not
    with pytest.raises(OSError):
        state_module.save_checkpoint(run, result.model, {"step": 5})
    monkeypatch.undo()
    assert load_train_state(run)["step"] == 4                  # the set of step 4 is still the current one
    checkpoint = current_checkpoint(run)                       # a set whose files disagree is refused
    torch.save({**load_train_state(run), "step": 3}, checkpoint / "train_state.pt")
    with pytest.raises(CheckpointError, match="step 4 but train_state.pt from step 3.*--init-from"):
        train(None, run, resume=True, progress=False)


def in_set(run, name):
    return current_checkpoint(run) / name


@pytest.mark.parametrize("damage, message", [
    (lambda run: in_set(run, "model.safetensors").write_bytes(in_set(run, "model.safetensors").read_bytes()[:100]),
     "corrupt or truncated"),
    (lambda run: in_set(run, "train_state.pt").write_bytes(b"not a checkpoint"), "train_state.pt is corrupt"),
    (lambda run: in_set(run, "train_state.pt").unlink(), "incomplete .no train_state.pt.*--init-from"),
    (lambda run: (run / "checkpoint.json").unlink(), "no resumable checkpoint.*--init-from"),
    (lambda run: (run / "checkpoint.json").write_text("{"), "checkpoint.json is unreadable"),
    (lambda run: (run / "train_config.json").unlink(), "not a training run"),
])
def test_resuming_a_damaged_run_is_a_one_line_error(data_dir, tmp_path, damage, message):
    run = tmp_path / "run"
    train(data_dir, run, tiny(), quick(max_iters=2), progress=False)
    damage(run)
    with pytest.raises(GlassError, match=message) as e:
        train(None, run, resume=True, progress=False)
    assert "\n" not in str(e.value)


def test_bad_training_input_is_a_one_line_error(data_dir, tmp_path):
    with pytest.raises(GlassError, match="not a prepared data directory"):
        train(tmp_path / "nowhere", tmp_path / "run", tiny(), quick(), progress=False)
    with pytest.raises(GlassError, match="validation split has .* tokens but context length 1024 needs"):
        train(data_dir, tmp_path / "run", tiny(context_length=1024), quick(), progress=False)
    train(data_dir, tmp_path / "run", tiny(), quick(max_iters=1), progress=False)
    with pytest.raises(GlassError, match="already holds a training run"):
        train(data_dir, tmp_path / "run", tiny(), quick(), progress=False)
    with pytest.raises(GlassError, match="give max_iters or max_seconds"):
        quick(max_iters=None)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and parallel test workers do not fight over cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- distillation ------------------------------------------------------------------------------
def kl_to(teacher: GPT, student: GPT, config: GPTConfig) -> float:
    """Mean KL(teacher || student) of the next-token distributions on a fixed batch."""
    x, _ = fixed_batch(config, batch=8)
    with torch.no_grad():
        p = torch.log_softmax(teacher(x).logits, -1)
        q = torch.log_softmax(student(x).logits, -1)
    return (p.exp() * (p - q)).sum(-1).mean().item()


def test_a_student_distilled_from_a_teacher_matches_its_distributions_better(data_dir, tmp_path):
    teacher_run = train(data_dir, tmp_path / "teacher", tiny(n_layer=2), quick(max_iters=40), progress=False)
    student, settings = tiny(d_model=16), quick(max_iters=80, eval_interval=80, lr=1e-2)
    plain = train(data_dir, tmp_path / "plain", student, settings, progress=False)
    distilled = train(data_dir, tmp_path / "distilled", student,
                      settings.replace(teacher=str(teacher_run.run_dir)), progress=False)
    teacher = teacher_run.model.eval()
    near, far = kl_to(teacher, distilled.model.eval(), student), kl_to(teacher, plain.model.eval(), student)
    assert near < 0.7 * far
    assert [r["val_loss"] for r in read_log(tmp_path / "distilled") if "val_loss" in r]    # still the plain loss


def test_a_teacher_must_share_the_vocabulary_and_see_the_whole_context(data_dir, tmp_path):
    other = tiny(vocab_size=VOCAB + 5)
    torch.manual_seed(0)
    save(GPT(other), tmp_path / "other")
    with pytest.raises(GlassError, match="same tokenizer"):
        train(data_dir, tmp_path / "a", tiny(), quick(teacher=str(tmp_path / "other")), progress=False)
    short = train(data_dir, tmp_path / "short", tiny(context_length=8), quick(max_iters=1), progress=False)
    with pytest.raises(GlassError, match="--context-length 8 or less"):
        train(data_dir, tmp_path / "b", tiny(), quick(teacher=str(short.run_dir)), progress=False)
    with pytest.raises(GlassError):
        train(data_dir, tmp_path / "c", tiny(), quick(teacher=str(tmp_path / "missing")), progress=False)
