"""`glassgpt generate RUN`: sample text from a checkpoint, streamed as it is produced."""
from __future__ import annotations

import contextlib
import dataclasses
import sys

from ..errors import GlassError
from ..generate.samplers import SamplingParams
from ..tokenizer.base import EOT

PLAY_SETTINGS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "frequency_penalty",
                 "presence_penalty", "seed")


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="sample text from a trained run",
                              description="Sample a continuation of a prompt; the tokens are printed as "
                                          "they are produced. Sampler order: penalties -> top-k -> top-p "
                                          "-> min-p -> temperature -> draw.")
    p.add_argument("run", help="checkpoint directory (from `glassgpt train`)")
    p.add_argument("--prompt", default="", help="text to continue (default: start from <|endoftext|>)")
    add_sampling_arguments(p)
    p.add_argument("--draft", metavar="RUN", help="speculative decoding with this small model (same tokenizer) "
                   "proposing tokens; the output distribution stays the run's own")
    p.add_argument("--draft-tokens", type=int, default=4, metavar="K", help="tokens the draft proposes at a time")
    add_constraint_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=run)


def add_constraint_arguments(p) -> None:
    """--choice / --regex / --integer / --json-schema / --grammar: what the text must look like."""
    g = p.add_argument_group("constraints (one at a time; each step samples among the tokens it allows, "
                             "--logprobs N shows the probability each step removed)")
    one = g.add_mutually_exclusive_group()
    one.add_argument("--choice", nargs="+", metavar="TEXT", help="the continuation is exactly one of these")
    one.add_argument("--regex", metavar="R", help="the continuation matches this regular expression (Rust syntax)")
    one.add_argument("--integer", action="store_true", help="the continuation is a whole number (--min/--max)")
    one.add_argument("--json-schema", metavar="FILE", help="the continuation is JSON valid against this schema")
    one.add_argument("--grammar", metavar="FILE", help="the continuation is in this Lark or GBNF grammar")
    g.add_argument("--min", type=int, help="with --integer: the smallest number allowed")
    g.add_argument("--max", type=int, help="with --integer: the largest number allowed")


def constraint_from_args(args):
    """The constraint the flags ask for, or None."""
    from pathlib import Path

    from ..generate.constraints import Choice, Grammar, Integer, JSONSchema, Regex

    if (args.min is not None or args.max is not None) and not args.integer:
        raise GlassError("--min and --max go with --integer")

    def read(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise GlassError(f"cannot read {path}: {e.strerror or e}") from None

    if args.choice:
        return Choice(args.choice)
    if args.regex is not None:
        return Regex(args.regex)
    if args.integer:
        return Integer(min=args.min, max=args.max)
    if args.json_schema:
        return JSONSchema(read(args.json_schema))
    if args.grammar:
        return Grammar(read(args.grammar))
    return None


def add_sampling_arguments(p, names=None) -> None:
    """One flag per `SamplingParams` field (or the named ones), with its help text and default."""
    for f in dataclasses.fields(SamplingParams):
        if not f.metadata["cli"] or (names is not None and f.name not in names):
            continue
        kind = {"float": float, "float | None": float, "int": int, "int | None": int}.get(str(f.type), str)
        default = f" (default {f.default})" if f.default not in (None, ()) else ""
        extra = dict(nargs="+", action="extend") if f.name == "stop" else dict(type=kind)
        p.add_argument("--" + f.name.replace("_", "-"), default=None, metavar=f.metadata["metavar"],
                       help=f.metadata["help"] + default, **extra)


def sampling_params(args, names=None) -> SamplingParams:
    """The settings given on the command line (the others keep SamplingParams' defaults)."""
    given = {name: getattr(args, name) for name in SamplingParams.names()
             if (names is None or name in names) and getattr(args, name, None) is not None}
    return SamplingParams.of(**given)


def add_model_arguments(p) -> None:
    """Where the model runs and which weights decoding reads (shared with `glassgpt play`)."""
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--decode-weights", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="read half-precision copies of the weights per new token: faster where memory "
                        "bandwidth limits decoding (a CPU), about 3 significant digits (default float32)")
    p.add_argument("--no-weight-copies", action="store_true",
                   help="keep no faster-laid-out copies of the weights: decoding is slower but needs no "
                        "memory beyond the weights (the copies take about 2x the weights)")


def fast_decoding(model, args) -> contextlib.AbstractContextManager:
    """The decoding engine's scope for the whole command, with the flags' settings."""
    from ..generate.fast import fast_decode
    return fast_decode(model, dtype=args.decode_weights, copies=not args.no_weight_copies)


def load_with_tokenizer(args):
    from ..generate.fast import parse_decode_dtype
    from ..model import load
    from ..runtime import pick_device

    parse_decode_dtype(args.decode_weights)          # a bad setting is reported before loading
    model = load(args.run, device=pick_device(args.device))
    if model.tokenizer is None:
        raise GlassError(f"{args.run} has no tokenizer.json: this command needs one to read and print text")
    return model


def start_prompt(prompt: str, tokenizer) -> str:
    """An empty prompt starts from the end-of-text token, as at a document boundary."""
    if prompt:
        return prompt
    if EOT not in getattr(tokenizer, "special_tokens", {}):
        raise GlassError(f"the tokenizer has no {EOT} token to start from: give --prompt TEXT")
    return EOT


def run(args) -> int:
    model = load_with_tokenizer(args)
    prompt = start_prompt(args.prompt, model.tokenizer)
    params = sampling_params(args)
    options = {}
    constraint = constraint_from_args(args)
    if constraint is not None:
        options["constraint"] = constraint
    if args.draft:
        from ..model import load

        options.update(draft=load(args.draft, device=model.device, tokenizer=False), draft_tokens=args.draft_tokens)
    with fast_decoding(model, args):
        return write_samples(model, prompt, params, options, args)


def write_samples(model, prompt, params: SamplingParams, options: dict, args) -> int:
    from ..generate import generate, stream
    from ..generate.display import constraint_table, logprob_table

    out = sys.stdout
    if params.num_samples == 1:
        events = stream(model, prompt, params, **options)   # settings checked before anything is printed
        out.write(args.prompt)
        out.flush()
        records, finish, n = [], None, 0
        for event in events:
            out.write(event.text)
            out.flush()
            records.append(event.logprob)
            finish, n = event.finish_reason, n + (event.finish_reason != "eot")
        out.write("\n")
        if params.logprobs is not None:
            out.write(logprob_table([r for r in records[:n] if r is not None]) + "\n")
            if options.get("constraint") is not None:
                out.write(constraint_table([r for r in records[:n] if r is not None]) + "\n")
        print(f"[{n} tokens, stopped: {finish or 'length'}]", file=sys.stderr)
        return 0
    for i, g in enumerate(generate(model, prompt, params, **options)):
        out.write(f"--- sample {i + 1} ({g.finish_reason}) ---\n{args.prompt}{g.text}\n")
        if params.logprobs is not None:
            out.write(logprob_table(g.logprobs) + "\n")
            if options.get("constraint") is not None:
                out.write(constraint_table(g.logprobs) + "\n")
    stats = g.stats
    print(f"[{stats.new_tokens} tokens in {stats.seconds:.2f}s, {stats.tokens_per_second:.1f} tokens/s]",
          file=sys.stderr)
    return 0
