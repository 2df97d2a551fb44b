"""Nothing lost, ever: faults injected at every stage of a save, and the run still resumes.

Each scenario returns a row of the durability table (fault, times injected, runs resumed,
steps lost at most); the tests assert on the rows, and

    PYTHONPATH=src python tests/test_durability.py

prints the table. A kill -9 is simulated by copying the run directory at a fault point
(`glassgpt.fileio.FAULT_HOOK`): the copy is exactly what the disk holds if the process
died there, and each copy must resume. Real processes (forked from this one, so torch is
not imported again) take a real kill -9, a real SIGTERM, and two trainings started at once;
the rest runs in this process, on a one-layer, 16-wide, char-level model. Steps lost are
the steps since the last published checkpoint (here eval_interval = 2).
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from glassgpt import fileio
from glassgpt.errors import CheckpointError, ConfigError, DivergedError, FileError, GlassError, LockedError
from glassgpt.locks import DirectoryLock
from glassgpt.model import GPTConfig, load, save
from glassgpt.train import TrainConfig, prepare, train
from glassgpt.train.prepare import TOKENIZER, check_data, read_meta
from glassgpt.train.state import current_checkpoint, load_train_state, read_pointer

SRC = Path(__file__).resolve().parents[1] / "src"
TEXT = "".join(f"{w} the {v} of the {n}.\n" for w, v, n in itertools.product(
    ("Shall I compare", "Now is", "To be is"), ("winter", "summer", "season"), ("day", "night", "king", "sea")))
STEPS, FIRST_SAVE = 4, 2


def model_config() -> GPTConfig:
    return GPTConfig(vocab_size=64, context_length=8, d_model=16, n_layer=1, n_head=2)


def settings(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(batch_size=2, max_iters=STEPS, eval_interval=FIRST_SAVE, eval_iters=1,
                                 log_interval=1, warmup_iters=1, lr=3e-3, seed=7, device="cpu",
                                 checkpoint_seconds=None), **overrides})


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way handles it."""


@contextlib.contextmanager
def fast_saves():
    """Two costs these tests do not need: fsync (against power cuts; a killed process loses
    nothing the page cache holds, the order of writes and renames is what counts) and drawing
    loss.png (still written, through the same atomic writer, but as a stub)."""
    from glassgpt.train import loop
    fileio.DURABLE, draw = False, loop.plot_losses
    loop.plot_losses = lambda records, path, title="": fileio.atomic_write_bytes(path, b"stub")
    try:
        yield
    finally:
        fileio.DURABLE, loop.plot_losses = True, draw


@pytest.fixture(autouse=True, scope="module")
def quick_saves():
    with fast_saves():
        yield


def hooked(hook):
    """Run with fileio.FAULT_HOOK set to `hook`."""
    class Scope:
        def __enter__(self):
            fileio.FAULT_HOOK = hook

        def __exit__(self, *exc):
            fileio.FAULT_HOOK = None
    return Scope()


def weights(run) -> dict:
    return load(run).state_dict()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Bench:
    """Prepared data, the uninterrupted run, and a run stopped just after its step-2 save."""

    def __init__(self, root: Path):
        self.root = root
        (root / "corpus.txt").write_text(TEXT * 2)
        self.data = root / "data"
        prepare([root / "corpus.txt"], self.data, tokenizer="char", progress=False)
        self.whole = train(self.data, root / "whole", model_config(), settings(), progress=False)
        self.reference = weights(root / "whole")

        def stop_after_first_save(stage, path):
            if stage == "published":
                raise Crash
        with hooked(stop_after_first_save), pytest.raises(Crash):
            train(self.data, root / "base", model_config(), settings(), progress=False)
        assert read_pointer(root / "base")["step"] == FIRST_SAVE
        self.n = 0

    def copy_of_base(self) -> Path:
        self.n += 1
        run = self.root / f"run{self.n}"
        shutil.copytree(self.root / "base", run)
        return run

    def resume_and_check(self, run: Path, killed_at: int) -> int:
        """Resume `run` to the end; it must match the uninterrupted run bit for bit, and
        leave no temporary file or unpublished set behind. Returns the steps lost."""
        pointer = read_pointer(run)
        resumed_from = pointer["step"] if pointer else 0
        result = train(None, run, train_config=settings(), resume=True, progress=False)
        assert result.step == STEPS
        assert same_weights(weights(run), self.reference), run
        assert not [p for p in run.rglob("*") if fileio.is_temporary(p)]
        assert [p.name for p in (run / "checkpoints").iterdir()] == [current_checkpoint(run).name]
        return killed_at - resumed_from


# -- the scenarios: each a row of the table --------------------------------------------------------
def kill_at_every_stage_of_a_save(bench: Bench) -> dict:
    """Copy the run directory at every fault point of the step-4 save (best/, the set, the
    pointer, the links, the plot): each copy is what a kill -9 there leaves. Each resumes."""
    run = bench.copy_of_base()
    snapshots, saving = [], []

    def snapshot(stage, path):
        saving.append(saving or path.parent.name in ("best", "checkpoints") or path.parent.parent.name == "checkpoints")
        if saving[-1] and stage != "synced":             # on disk, "synced" is "written" again
            copy = bench.root / f"{run.name}-kill{len(snapshots)}"
            shutil.copytree(run, copy)
            snapshots.append(copy)
    with hooked(snapshot):
        train(None, run, resume=True, progress=False)
    lost = [bench.resume_and_check(copy, killed_at=STEPS) for copy in snapshots]
    return row("kill -9 at each step of a save (simulated: the disk as the kill leaves it)",
               len(snapshots), len(lost), max(lost))


def full_disk_at_every_write(bench: Bench) -> dict:
    """ENOSPC from every write of the step-4 save: a one-line error naming the file, and the
    last checkpoint resumes."""
    run = bench.copy_of_base()
    stages = []

    def count(stage, path):
        if stage == "written" and (stages or "best" in path.parts or "checkpoints" in path.parts):
            stages.append(path)
    with hooked(count):
        train(None, run, resume=True, progress=False)
    lost = []
    for k in range(len(stages)):
        run = bench.copy_of_base()
        seen = []

        def disk_full(stage, path, k=k, seen=seen):
            if stage == "written" and (seen or "best" in path.parts or "checkpoints" in path.parts):
                seen.append(path)
                if len(seen) == k + 1:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        with hooked(disk_full), pytest.raises(FileError) as e:
            train(None, run, resume=True, progress=False)
        message = str(e.value)
        assert "No space left on device" in message and str(seen[-1]) in message and "\n" not in message
        lost.append(bench.resume_and_check(run, killed_at=STEPS))
    return row("disk full (ENOSPC) at each file write of a save", len(stages), len(lost), max(lost))


def second_ctrl_c_during_a_save(bench: Bench) -> dict:
    """Ctrl-C, then Ctrl-C again, both while the checkpoint is being written: the save
    completes, the run stops and resumes with nothing lost."""
    run = bench.copy_of_base()
    pressed = []

    def press_twice(stage, path):
        if stage == "written" and path.name == "train_state.pt" and not pressed:
            pressed.append(stage)
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
    with hooked(press_twice), pytest.raises(KeyboardInterrupt):
        train(None, run, resume=True, progress=False)
    assert pressed and read_pointer(run)["step"] == STEPS
    assert same_weights(weights(run), bench.reference)
    load_train_state(run)
    return row("Ctrl-C twice during a save", 1, 1, 0)


def divergence(bench: Bench) -> dict:
    """A run whose loss turns NaN stops with one line; the last good checkpoint and best/ stay."""
    run = bench.copy_of_base()
    best_before = weights(run / "best")
    with pytest.raises(DivergedError, match=f"diverged at step .* is (nan|inf); the last good checkpoint "
                                            f"\\(step {FIRST_SAVE}\\) is kept in {run}: start again with a "
                                            f"lower --lr") as e:
        train(None, run, train_config=settings(lr=1e30, min_lr=0.0), resume=True, progress=False)
    assert "\n" not in str(e.value)
    assert read_pointer(run)["step"] == FIRST_SAVE and same_weights(weights(run / "best"), best_before)
    assert all(torch.isfinite(t).all() for t in weights(run).values())
    diverged_at = int(str(e.value).split("diverged at step ")[1].split(":")[0])
    lost = bench.resume_and_check(run, killed_at=diverged_at)
    return row("training diverges (lr 1e30: NaN loss)", 1, 1, lost)


def two_trainings_on_one_directory(bench: Bench) -> dict:
    """Two `glassgpt train -o SAME` started together: one trains, the other gets a one-line
    error; while a run is in use, a `--resume` of it or a new run into it is refused."""
    fresh = bench.root / "together"
    args = ("train", bench.data, "-o", fresh, "--n-layer", "1", "--d-model", "16", "--n-head", "2",
            "--context-length", "8", "--batch-size", "2", "--max-iters", "4", "--eval-interval", "2",
            "--eval-iters", "1", "--device", "cpu")
    pids = [child(lambda: cli(*args), bench.root / f"together{i}.err") for i in range(2)]
    statuses = sorted(wait(pid) for pid in pids)
    errors = [(bench.root / f"together{i}.err").read_text() for i in range(2)]
    assert statuses == [0, 2], errors
    refusal = next(e for e in errors if "error: " in e).strip().splitlines()[-1]
    assert "is in use by process" in refusal or "already holds a training run" in refusal, refusal
    assert load_train_state(fresh)["step"] == 4
    run = bench.copy_of_base()
    with DirectoryLock(run, "training run"), DirectoryLock(bench.root / "held", "training run"):
        for attempt in (lambda: train(None, run, resume=True, progress=False),
                        lambda: train(bench.data, bench.root / "held", model_config(), settings(), progress=False)):
            with pytest.raises(LockedError, match=f"in use by process {os.getpid()} on "):
                attempt()
    lost = bench.resume_and_check(run, killed_at=FIRST_SAVE)
    return row("a second training (two at once, a new one or --resume on a run in use)", 3, 3, lost)


def prepare_killed_while_publishing(bench: Bench) -> dict:
    """Re-prepare a data directory with another corpus (another tokenizer) and copy it at
    every fault point: each copy holds the old set, the new set, or no meta.json, never
    token files beside a tokenizer that did not make them."""
    data = bench.root / "reprepared"
    shutil.copytree(bench.data, data)
    (bench.root / "other.txt").write_text("completely different letters: xyzqjk 0123456789\n" * 40)
    snapshots = []

    def snapshot(stage, path):
        if path.parent == data or path.parent.parent == data:
            copy = bench.root / f"reprepared-kill{len(snapshots)}"
            shutil.copytree(data, copy)
            snapshots.append(copy)
    with hooked(snapshot):
        prepare([bench.root / "other.txt"], data, tokenizer="char", progress=False)
    consistent = refused = 0
    from glassgpt.tokenizer import Tokenizer
    for copy in snapshots:
        try:
            meta = read_meta(copy)
            check_data(copy, meta, Tokenizer.load(copy / TOKENIZER))
        except GlassError as e:
            assert "prepare" in str(e)                 # "run glassgpt prepare again"
            refused += 1
        else:
            consistent += 1
    assert consistent + refused == len(snapshots) and consistent >= 2      # the old set and the new set
    return row("kill -9 at each step of a re-prepare (copies: consistent or refused)", len(snapshots),
               consistent + refused, 0)


def child(work, stderr: Path) -> int:
    """Run `work()` in a forked process (a real process, torch already imported); its pid."""
    pid = os.fork()
    if pid == 0:                                       # the child: never returns into pytest
        code = 70
        try:
            sys.stderr = open(stderr, "w", buffering=1)
            code = work()
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait(pid: int) -> int:
    """The exit status, or minus the signal that killed it (like subprocess)."""
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def cli(*args) -> int:
    from glassgpt.cli import main
    return main([str(a) for a in args])


def real_kill_9_during_a_save(bench: Bench) -> dict:
    """A real SIGKILL of a training process, just after the weights of the step-4 set are written."""
    run = bench.copy_of_base()

    def work():
        def hook(stage, path):
            if stage == "renamed" and path.name == "model.safetensors" and "checkpoints" in path.parts:
                os.kill(os.getpid(), signal.SIGKILL)
        fileio.FAULT_HOOK = hook
        return cli("train", "--resume", run)
    status = wait(child(work, bench.root / "kill9.err"))
    assert status == -signal.SIGKILL, (bench.root / "kill9.err").read_text()
    leftovers = list((run / "checkpoints").iterdir())
    assert len(leftovers) == 2                    # the published step-2 set and the unfinished step-4 one
    lost = bench.resume_and_check(run, killed_at=STEPS)
    return row("real kill -9 of `glassgpt train` inside a save", 1, 1, lost)


def real_sigterm(bench: Bench) -> dict:
    """SIGTERM (timeout, a scheduler, docker stop) to a training subprocess: it saves and exits;
    the run resumes and ends exactly as the uninterrupted one."""
    run = bench.copy_of_base()
    config = json.loads((run / "train_config.json").read_text())
    config["max_iters"] = 10**6                   # long enough to be stopped; the end is put back below
    (run / "train_config.json").write_text(json.dumps(config))
    pid = child(lambda: cli("train", "--resume", run), bench.root / "sigterm.err")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        log = (run / "log.jsonl").read_text() if (run / "log.jsonl").exists() else ""
        if '"step": 3,' in log:
            break
        time.sleep(0.01)
    os.kill(pid, signal.SIGTERM)
    status, stderr = wait(pid), (bench.root / "sigterm.err").read_text()
    assert status == 130 and "terminated at step" in stderr, stderr
    killed_at = read_pointer(run)["step"]
    assert killed_at >= 3 and load_train_state(run)["step"] == killed_at
    result = train(None, run, train_config=settings(max_iters=killed_at + 1), resume=True, progress=False)
    assert result.step == killed_at + 1
    return row("SIGTERM to `glassgpt train` (saves, then stops)", 1, 1, 0)


def row(fault: str, injected: int, resumed: int, lost: int) -> dict:
    return {"fault": fault, "injected": injected, "resumed": resumed, "steps lost at most": lost}


SCENARIOS = [kill_at_every_stage_of_a_save, full_disk_at_every_write, second_ctrl_c_during_a_save, divergence,
             two_trainings_on_one_directory, prepare_killed_while_publishing, real_kill_9_during_a_save,
             real_sigterm]


# -- the tests -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return Bench(tmp_path_factory.mktemp("durability"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_every_fault_leaves_a_resumable_run(bench, scenario):
    result = scenario(bench)
    assert result["injected"] >= 1 and result["resumed"] == result["injected"]
    assert result["steps lost at most"] <= STEPS - FIRST_SAVE


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(bench, capsys):
    run = bench.copy_of_base()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "then"}))
    train(None, run, resume=True, progress=True)
    assert f"took over the lock on {run} left by process {dead.pid}" in capsys.readouterr().err
    assert not (run / ".lock").exists()


def test_an_early_run_is_checkpointed_by_the_clock(bench):
    run = bench.root / "clock"
    train(bench.data, run, model_config(), settings(eval_interval=1000, checkpoint_seconds=1e-9, max_iters=3),
          progress=False)
    assert read_pointer(run)["step"] == 3 and len(list((run / "checkpoints").iterdir())) == 1
    assert "val_loss" not in "".join((run / "log.jsonl").read_text().splitlines()[:-1])   # no evaluation needed


def test_init_from_starts_a_new_run_from_any_loadable_weights(bench):
    new = train(bench.data, bench.root / "from-whole", None, settings(max_iters=1, lr=1e-12, min_lr=0.0,
                                                                       weight_decay=0.0),
                init_from=bench.root / "whole", progress=False)
    assert new.step == 1 and read_pointer(new.run_dir)["step"] == 1         # a fresh run: step 0, own optimizer
    for name, tensor in weights(new.run_dir).items():
        assert torch.allclose(tensor, bench.reference[name], atol=1e-9), name
    with pytest.raises(GlassError, match="--resume continues a run and --init-from starts a new one"):
        train(bench.data, bench.root / "x", init_from=bench.root / "whole", resume=True, progress=False)
    other = bench.root / "other-data"
    (bench.root / "other-corpus.txt").write_text("0123456789 xyz\n" * 200)
    prepare([bench.root / "other-corpus.txt"], other, tokenizer="char", progress=False)
    with pytest.raises(GlassError, match="trained with (vocab|another tokenizer).*--tokenizer"):
        train(other, bench.root / "y", init_from=bench.root / "whole", progress=False)


# -- output directories hold one kind of thing -----------------------------------------------------
def test_commands_refuse_directories_that_hold_something_else(bench):
    whole = bench.root / "whole"
    before = (whole / "tokenizer.json").read_bytes()
    with pytest.raises(GlassError, match="holds a training run: prepare the data into a directory of its own"):
        prepare([bench.root / "corpus.txt"], whole, tokenizer="char", progress=False)
    assert (whole / "tokenizer.json").read_bytes() == before
    best = (whole / "best" / "model.safetensors").read_bytes()
    with pytest.raises(GlassError, match="holds a saved model, not a training run"):
        train(bench.data, whole / "best", model_config(), settings(), progress=False)
    assert (whole / "best" / "model.safetensors").read_bytes() == best
    with pytest.raises(GlassError, match="holds prepared data"):
        train(bench.data, bench.data, model_config(), settings(), progress=False)
    with pytest.raises(GlassError, match="already holds a training run.*--resume.*--init-from"):
        train(bench.data, whole, model_config(), settings(), progress=False)
    with pytest.raises(GlassError, match="corpus.txt is a file"):
        train(bench.data, bench.root / "corpus.txt", model_config(), settings(), progress=False)
    (bench.root / "stuff").mkdir()
    (bench.root / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(GlassError, match="holds other files.*--force"):
        train(bench.data, bench.root / "stuff", model_config(), settings(max_iters=1), progress=False)
    train(bench.data, bench.root / "stuff", model_config(), settings(max_iters=1), progress=False, force=True)
    assert (bench.root / "stuff" / "notes.txt").read_text() == "mine"


def test_a_run_stopped_before_its_first_checkpoint_can_simply_start_again(bench):
    run = bench.root / "unsaved"

    def disk_full(stage, path):
        if "checkpoints" in path.parts:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with hooked(disk_full), pytest.raises(FileError):
        train(bench.data, run, model_config(), settings(), progress=False)
    with pytest.raises(CheckpointError, match="not a resumable run .* start a new one with `glassgpt train DATA_DIR"):
        train(None, run, resume=True, progress=False)
    assert train(bench.data, run, model_config(), settings(), progress=False).step == STEPS    # no circle


def test_token_files_made_with_another_tokenizer_are_refused(bench):
    data = bench.root / "mixed"
    shutil.copytree(bench.data, data)
    from glassgpt.tokenizer import Tokenizer
    Tokenizer.chars(TEXT[::-1] + "#").save(data / "tokenizer.json")
    with pytest.raises(GlassError, match="made with another tokenizer than its tokenizer.json.*prepare"):
        train(data, bench.root / "mixed-run", model_config(), settings(), progress=False)


@pytest.mark.parametrize("where, message", [
    (lambda root: root / "corpus.txt" / "run", "corpus.txt/run: Not a directory: a file stands where a directory"),
    (lambda root: root / "corpus.txt", "corpus.txt is a file"),
])
def test_unwritable_outputs_are_one_line_errors_before_any_work(bench, where, message, capsys):
    from glassgpt.cli import main
    for argv in (["train", str(bench.data), "-o", str(where(bench.root))],
                 ["prepare", str(bench.root / "corpus.txt"), "-o", str(where(bench.root)), "--tokenizer", "char"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_full_disk_while_writing_any_file_names_the_file_and_what_to_do(tmp_path):
    def disk_full(stage, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    target = tmp_path / "report.json"
    target.write_text("old")
    with hooked(disk_full), pytest.raises(FileError) as e:
        fileio.atomic_write_text(target, "new")
    assert str(e.value) == (f"cannot write {target}: No space left on device: "
                            f"free some disk space and run the command again")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


@pytest.mark.parametrize("code, hint", [(errno.EROFS, "the file system is read-only: choose a location"),
                                        (errno.EACCES, "check its permissions or choose another location"),
                                        (errno.EDQUOT, "your disk quota is used up")])
def test_file_system_errors_of_any_command_are_one_line(bench, code, hint, capsys):
    def refuse(stage, path):
        raise OSError(code, os.strerror(code))
    out = bench.root / f"tok-{code}.json"
    with hooked(refuse):
        assert cli("tokenizer", "train", bench.root / "corpus.txt", "--char", "-o", out) == 2
        assert cli("train", bench.data, "-o", bench.root / f"run-{code}", "--n-layer", "1", "--d-model", "16",
                   "--n-head", "2", "--context-length", "8", "--max-iters", "1", "--device", "cpu") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    for line in errors:
        assert line.startswith("error: cannot write ") and os.strerror(code) in line and hint in line, line
    assert not out.exists()


def test_init_from_on_the_command_line(bench, capsys):
    new = bench.root / "cli-init"
    assert cli("train", bench.data, "-o", new, "--init-from", bench.root / "whole", "--max-iters", "1",
               "--eval-iters", "1", "--batch-size", "2", "--device", "cpu") == 0
    assert load(new).config == load(bench.root / "whole").config
    assert cli("train", bench.data, "-o", bench.root / "x", "--init-from", bench.root / "whole", "--n-layer", "2") == 2
    assert "the model comes from --init-from" in capsys.readouterr().err


def test_the_atomic_writer_keeps_permissions_and_respects_the_umask(tmp_path):
    kept = tmp_path / "kept.txt"
    kept.write_text("x")
    kept.chmod(0o640)
    fileio.atomic_write_text(kept, "y")
    assert kept.read_text() == "y" and (kept.stat().st_mode & 0o777) == 0o640
    old = os.umask(0o027)
    try:
        fileio.atomic_write_text(tmp_path / "new.txt", "z")
    finally:
        os.umask(old)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640


# -- every setting validated -------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, message", [
    ("max_seconds", float("nan"), "max_seconds must be a finite number"),
    ("max_seconds", -1.0, "max_seconds must be more than 0"),
    ("grad_clip", float("nan"), "grad_clip must be a finite number"),
    ("grad_clip", -1.0, "grad_clip must be more than 0"),
    ("threads", -2, "threads must be at least 1"),
    ("max_iters", 2.5, "max_iters must be a whole number"),
    ("batch_size", True, "batch_size must be a whole number"),
    ("lr", float("inf"), "lr must be a finite number"),
    ("weight_decay", -0.1, "weight_decay must be at least 0"),
    ("betas", (0.9, 1.5), "betas must be two numbers in [0, 1)"),
    ("eval_interval", 0, "eval_interval must be at least 1"),
    ("warmup_iters", -1, "warmup_iters must be at least 0"),
    ("checkpoint_seconds", 0.0, "checkpoint_seconds must be more than 0"),
    ("seed", -1, "seed must be at least 0"),
    ("precision", "fp8", "precision must be one of"),
    ("compile", "yes", "compile must be one of auto, on, off"),
    ("teacher", 3, "teacher must be str or None"),
])
def test_each_invalid_training_setting_is_a_one_line_error(field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        settings(**{field: value})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("flag", ["--max-seconds nan", "--grad-clip -1", "--threads -1", "--lr inf"])
def test_invalid_training_flags_are_refused_by_the_cli(bench, flag, capsys):
    from glassgpt.cli import main
    assert main(["train", str(bench.data), "-o", str(bench.root / "never"), *flag.split()]) == 2
    assert capsys.readouterr().err.startswith(f"error: {flag.split()[0][2:].replace('-', '_')} must be")
    assert not (bench.root / "never").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda c: {**c, "n_head": "2"}, "n_head must be a positive integer, got '2'"),
    (lambda c: {**c, "bias": "yes"}, "bias must be true or false"),
    (lambda c: {**c, "dropout": None}, "dropout must be a finite number"),
    (lambda c: {**c, "layer_norm_eps": -1.0}, "layer_norm_eps and rope_base must be positive"),
    (lambda c: {**c, "n_head": 4}, "n_head is 4 but the weights were trained with 2: set it back to 2"),
    (lambda c: {**c, "vocab_size": 10**12}, "vocab_size is 1000000000000 but the weights were trained with 64"),
    (lambda c: [c], "expected a JSON object"),
])
def test_each_bad_config_field_names_config_json_and_the_field(tmp_path, edit, message):
    torch.manual_seed(0)
    from glassgpt.model import GPT
    run = save(GPT(model_config()), tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(edit(config)))
    with pytest.raises(CheckpointError) as e:
        load(run)
    assert str(e.value).startswith(str(run / "config.json")) and message in str(e.value), str(e.value)


def test_weights_without_a_config_copy_are_checked_shape_by_shape_before_building(tmp_path):
    from safetensors.torch import save_model

    from glassgpt.model import GPT
    run = save(GPT(model_config()), tmp_path / "run")
    save_model(GPT(model_config().replace(d_ff=32)), str(run / "model.safetensors"))      # no metadata
    with pytest.raises(CheckpointError, match="config.json: d_ff is 64 but model.safetensors holds a model "
                                              "with d_ff 32"):
        load(run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "vocab_size": 10**12, "d_ff": 32}))
    with pytest.raises(CheckpointError, match="vocab_size is 1000000000000 but model.safetensors holds a model "
                                              "with vocab_size 64"):
        load(run)                                  # refused from the header: nothing the size of 10**12 built


# -- untrusted files stay harmless -------------------------------------------------------------------
class Payload:
    """Unpickling this runs a command: what a planted train_state.pt would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_payload_is_refused_and_never_runs(bench, tmp_path):
    run = bench.copy_of_base()
    marker = tmp_path / "payload-ran"
    state = current_checkpoint(run) / "train_state.pt"
    torch.save({**load_train_state(run), "extra": Payload(marker)}, state)
    with pytest.raises(CheckpointError, match="train_state.pt is corrupt or not plain data.*--init-from") as e:
        train(None, run, resume=True, progress=False)
    assert "\n" not in str(e.value) and not marker.exists()


def hostile_tokenizer(tmp_path: Path, pattern: str) -> Path:
    from glassgpt.tokenizer import Tokenizer
    Tokenizer.train("some text to train on " * 4, vocab_size=260).save(tmp_path / "tok.json")
    data = json.loads((tmp_path / "tok.json").read_text())
    data["pattern"] = pattern
    (tmp_path / "tok.json").write_text(json.dumps(data))
    return tmp_path / "tok.json"


def test_a_hostile_tokenizer_pattern_is_refused_at_load_within_a_second(tmp_path):
    from glassgpt.tokenizer import Tokenizer
    path = hostile_tokenizer(tmp_path, r"(?:a|a)+b")
    started = time.perf_counter()
    with pytest.raises(GlassError, match="backtracks catastrophically"):
        Tokenizer.load(path)
    assert time.perf_counter() - started < 5.0      # 0.2 s per probe; slack for a loaded machine


def test_a_pattern_slow_only_on_some_text_fails_encode_instead_of_hanging(tmp_path):
    from glassgpt.tokenizer import Tokenizer
    tok = Tokenizer.load(hostile_tokenizer(tmp_path, r"(?:q|q)+z|\S+|\s+"))   # passes the probes: no q in them
    assert tok.decode(tok.encode("plain text")) == "plain text"
    started = time.perf_counter()
    with pytest.raises(GlassError, match="took over 0.5s on a 40-character text"):
        tok.encode("q" * 40)
    assert time.perf_counter() - started < 10.0     # 0.5 s limit; slack for a loaded machine


# -- the table -----------------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    head = ["fault", "injected", "resumed", "steps lost at most"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        with fast_saves():
            bench = Bench(Path(root))
            rows = [scenario(bench) for scenario in SCENARIOS]
    print(table(rows))
    print(f"\n{sum(r['injected'] for r in rows)} faults injected in {time.perf_counter() - started:.0f} s. Every "
          f"interrupted run resumed from its last published checkpoint; the runs resumed to step {STEPS} ended "
          f"with the uninterrupted run's weights bit for bit. Steps lost: those since that checkpoint "
          f"(eval_interval = {FIRST_SAVE} here).")
