"""`glassgpt experiment ...`: the experiments, each writing a report directory.

    glassgpt experiment temperature RUN -o DIR
    glassgpt experiment temperature --endpoint http://127.0.0.1:8000/v1 --model NAME -o DIR
    glassgpt experiment ascii-diffusion build --kind ring -o frames.txt --png frames.png
    glassgpt experiment ascii-diffusion corpus -o corpus.txt --documents 2000
    glassgpt experiment ascii-diffusion train -o RUN --minutes 5
    glassgpt experiment ascii-diffusion run RUN -o DIR
    glassgpt experiment icl build|train|run|patterns ...   (in-context learning as inference)
    glassgpt experiment pruning RUN -o DIR [--task TASK] [--heal-steps N] [--baseline RUN | --train-baseline]
"""
from __future__ import annotations

import argparse
import contextlib
import random
import sys

from ..errors import GlassError
from .escapes import unescape


def register(subparsers) -> None:
    parser = subparsers.add_parser("experiment", help="run an experiment and write a report directory",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)

    t = sub.add_parser("temperature", help="the temperature study: T divides the scores; low T repeats")
    add_completer_args(t)
    t.add_argument("--prompts", nargs="+", help="prompts to continue (default: a few generic ones)")
    t.add_argument("--temperatures", nargs="+", type=float, help="sampling temperatures (default 0.1 ... 1.3)")
    t.add_argument("--seeds", type=int, default=3, help="seeds per temperature (the spread in the plots)")
    t.add_argument("--samples", type=int, default=2, help="samples per prompt, seed and temperature")
    t.add_argument("--length", type=int, default=120, help="tokens per sample")
    t.add_argument("-o", "--out", required=True, help="report directory (re-running resumes it)")
    t.set_defaults(func=run_temperature)

    a = sub.add_parser("ascii-diffusion", help="ASCII-art diffusion: in-context grow-and-denoise")
    asub = a.add_subparsers(dest="step", metavar="STEP", required=True)

    b = asub.add_parser("build", help="turn one picture into its frames")
    b.add_argument("picture", nargs="?", help="an image or a .txt file of ASCII art (default: --kind)")
    b.add_argument("--kind", default="disc", help="built-in picture kind when no file is given")
    add_schedule_args(b)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--max-art-width", type=int, default=200)
    b.add_argument("-o", "--out", help="write the frames here (default: stdout)")
    b.add_argument("--png", help="also draw the frames side by side into this PNG")
    b.set_defaults(func=run_build)

    c = asub.add_parser("corpus", help="write a training corpus of sequences of the training kinds")
    add_corpus_args(c)
    c.add_argument("-o", "--out", required=True, help="corpus text file")
    c.set_defaults(func=run_corpus)

    tr = asub.add_parser("train", help="build a corpus and train a small char-level model on it")
    add_corpus_args(tr)
    tr.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    tr.add_argument("--max-iters", type=int, default=5000)
    tr.add_argument("--d-model", type=int, default=128)
    tr.add_argument("--layers", type=int, default=4)
    tr.add_argument("--heads", type=int, default=4)
    tr.add_argument("--context", type=int, default=512, help="context length in characters")
    tr.add_argument("--positional", choices=("learned", "sinusoidal", "rope", "none"), default="rope",
                    help="how the model encodes positions")
    tr.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (the cosine ends at lr/10)")
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("-o", "--out", required=True, help="run directory for the trained model")
    tr.set_defaults(func=run_train)

    r = asub.add_parser("run", help="prompt a model with examples and score its continuations")
    add_completer_args(r)
    add_schedule_args(r)
    r.add_argument("--examples", type=int, default=2, help="complete example sequences per prompt")
    r.add_argument("--given", type=int, default=1, help="frames of the held-out picture shown")
    r.add_argument("--example-kinds", nargs="+", help="built-in kinds for the examples")
    r.add_argument("--test-kinds", nargs="+", help="built-in kinds to test on (default: held-out kinds)")
    r.add_argument("--pictures-per-kind", type=int, default=2)
    r.add_argument("--image", nargs="+", default=[], help="test on these images / text art files instead")
    r.add_argument("--max-art-width", type=int, default=200, help="refuse text art wider than this")
    r.add_argument("--temperatures", nargs="+", type=float, help="default 0.2 0.5 0.8 1.0 1.2")
    r.add_argument("--seeds", type=int, default=2)
    r.add_argument("--seed", type=int, default=0, help="seed for pictures, noise and examples")
    r.add_argument("--max-tokens", type=int, help="tokens per continuation (default: from the target length)")
    r.add_argument("-o", "--out", required=True, help="report directory (re-running resumes it)")
    r.set_defaults(func=run_diffusion)

    from .experiment_icl import register_icl
    register_icl(sub, add_completer_args)
    pr = sub.add_parser("pruning", help="layer pruning: the benchmark survives, the cross-entropy does not",
                        description="Drop blocks of a trained model (the paper's angular-distance choice and the "
                                    "last blocks), optionally heal them, and compare cross-entropy and "
                                    "multiple-choice accuracy with smaller models trained from scratch.")
    pr.add_argument("run", help="a trained run directory")
    pr.add_argument("-o", "--out", required=True, help="report directory (re-running resumes it)")
    pr.add_argument("--task", action="append", dest="tasks", metavar="TASK",
                    help="next-line, blank, speaker, or a JSON-lines file of {context, choices, answer} "
                         "(repeat for several; default: the three built-in tasks)")
    pr.add_argument("--questions", type=int, default=200, help="questions per task")
    pr.add_argument("--sizes", type=int, nargs="+", metavar="N", help="block counts to drop (default: 1 .. N-1)")
    pr.add_argument("--focus", type=int, metavar="N",
                    help="the block count that is healed and matched by baselines (default: half the blocks)")
    pr.add_argument("--heal-steps", type=int, default=0, help="fine-tune the pruned models for this many steps")
    pr.add_argument("--heal-lr", type=float, help="peak learning rate for healing (default: the original's / 4)")
    group = pr.add_mutually_exclusive_group()
    group.add_argument("--baseline", action="append", default=[], metavar="RUN",
                       help="a smaller run trained on the same data to compare with (repeatable)")
    group.add_argument("--train-baseline", action="store_true",
                       help="train two from scratch with the original's token budget: the pruned size and half")
    pr.add_argument("--data", help="data directory (default: the one the run was trained on)")
    pr.add_argument("--batches", type=int, default=20, help="validation batches for the cross-entropy")
    pr.add_argument("--batch-size", type=int, default=8)
    pr.add_argument("--context-chars", type=int, default=400, help="text before each built-in question")
    pr.add_argument("--seed", type=int, default=0, help="seed for questions and validation batches")
    pr.set_defaults(func=run_pruning)


def add_completer_args(p) -> None:
    p.add_argument("run", nargs="?", help="a run directory (glassgpt model); or use --endpoint")
    p.add_argument("--endpoint", help="base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", help="model name at the endpoint")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=4, help="retries on timeouts, 429 and 5xx")
    p.add_argument("--device", default="auto")


def add_schedule_args(p) -> None:
    p.add_argument("--sizes", help="canvas sizes, e.g. 4x4,7x5,9x7,12x8 (overrides width/height/frames)")
    p.add_argument("--noise", help="noise per frame, e.g. 0.9,0.6,0.3,0 (default: linear to 0)")
    p.add_argument("--width", type=int, default=12)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--start", type=int, default=4, help="side of the first (square) canvas")
    p.add_argument("--noise-start", type=float, default=0.9)


def add_corpus_args(p) -> None:
    add_schedule_args(p)
    p.add_argument("--documents", type=int, default=3000)
    p.add_argument("--sequences", type=int, default=3, help="sequences per document (examples + 1)")
    p.add_argument("--kinds", nargs="+", help="built-in kinds (default: the training kinds)")
    p.add_argument("--seed", type=int, default=0)


def make_schedule(args):
    from ..experiments.ascii_diffusion import Schedule

    if args.sizes:
        return Schedule.parse(args.sizes, args.noise, args.noise_start)
    if args.noise:
        raise GlassError("--noise needs --sizes (one level per size)")
    return Schedule.linear(args.width, args.height, args.frames, args.start, args.noise_start)


def make_completer(args):
    from ..experiments.completer import GlassCompleter, OpenAICompleter

    if args.endpoint:
        if args.run:
            raise GlassError("give either a run directory or --endpoint, not both")
        if not args.model:
            raise GlassError("--endpoint needs --model NAME (the model to ask at that endpoint)")
        return OpenAICompleter(args.endpoint, args.model, api_key_env=args.api_key_env,
                               timeout=args.timeout, retries=args.retries)
    if not args.run:
        raise GlassError("give a run directory (a trained model) or --endpoint URL --model NAME")
    from ..model import load
    from ..runtime import pick_device

    model = load(args.run, device=pick_device(args.device))
    return GlassCompleter(model, name=args.run)


def run_temperature(args) -> int:
    from ..experiments.temperature import TemperatureSettings, run_temperature_study

    settings = TemperatureSettings(seeds=args.seeds, samples_per_seed=args.samples, length=args.length)
    if args.prompts:
        settings.prompts = [unescape(p) for p in args.prompts]                          # allow \n
    if args.temperatures:
        settings.temperatures = args.temperatures
    completer = make_completer(args)
    with kept_on_error(args.out):
        run_temperature_study(completer, args.out, settings)
    print(f"report: {args.out}/report.md")
    return 0


def run_build(args) -> int:
    from ..experiments.ascii_diffusion import build_frames, draw, format_sequence, load_art, render_sequences

    art = load_art(args.picture, args.max_art_width) if args.picture else draw(args.kind, random.Random(args.seed))
    frames = build_frames(art, make_schedule(args), seed=args.seed)
    text = format_sequence(frames)
    if args.out:
        from ..fileio import atomic_write_text
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    if args.png:
        render_sequences([(art.name, [(f.header()[1:-1], list(f.rows)) for f in frames])], art.charset, args.png)
    return 0


def run_corpus(args) -> int:
    from ..experiments.ascii_diffusion import TRAIN_KINDS, write_corpus

    path = write_corpus(args.out, args.documents, make_schedule(args), args.sequences,
                        tuple(args.kinds or TRAIN_KINDS), args.seed)
    print(f"corpus: {path} ({path.stat().st_size:,} characters)")
    return 0


def run_train(args) -> int:
    from ..experiments.ascii_diffusion import TRAIN_KINDS
    from ..experiments.ascii_diffusion.corpus import train_diffusion_model

    train_diffusion_model(args.out, make_schedule(args), documents=args.documents, sequences=args.sequences,
                          kinds=tuple(args.kinds or TRAIN_KINDS), seed=args.seed, minutes=args.minutes,
                          max_iters=args.max_iters, d_model=args.d_model, n_layer=args.layers,
                          n_head=args.heads, context_length=args.context, batch_size=args.batch_size,
                          positional=args.positional, lr=args.lr)
    print(f"model: {args.out}")
    return 0


def run_diffusion(args) -> int:
    from ..experiments.ascii_diffusion import DiffusionSettings, run_ascii_diffusion

    schedule = make_schedule(args)
    settings = DiffusionSettings(sizes=[list(s) for s in schedule.sizes], noise=list(schedule.noise),
                                 examples=args.examples, given=args.given, pictures_per_kind=args.pictures_per_kind,
                                 test_files=list(args.image), seeds=args.seeds, seed=args.seed,
                                 max_art_width=args.max_art_width)
    for name in ("example_kinds", "test_kinds", "temperatures"):
        if getattr(args, name):
            setattr(settings, name, getattr(args, name))
    completer = make_completer(args)
    with kept_on_error(args.out):
        run_ascii_diffusion(completer, args.out, settings, max_tokens=args.max_tokens)
    print(f"report: {args.out}/report.md")
    return 0


def run_pruning(args) -> int:
    from ..experiments.pruning import PruningSettings, run_pruning_study

    settings = PruningSettings(sizes=args.sizes, focus=args.focus, heal_steps=args.heal_steps, heal_lr=args.heal_lr,
                               questions=args.questions, context_chars=args.context_chars, batches=args.batches,
                               batch_size=args.batch_size, seed=args.seed, train_baseline=args.train_baseline,
                               baselines=list(args.baseline))
    if args.tasks:
        settings.tasks = args.tasks
    with kept_on_error(args.out):
        run_pruning_study(args.run, args.out, settings, data_dir=args.data)
    print(f"report: {args.out}/report.md")
    return 0


@contextlib.contextmanager
def kept_on_error(out: str):
    """Say where the partial results are when a run stops on an error."""
    try:
        yield
    except GlassError as e:
        raise GlassError(f"{e} (samples so far are kept in {out}/samples.jsonl; the same command "
                         f"resumes)") from None
