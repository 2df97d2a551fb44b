"""`glassgpt generate RUN`: sample text from a checkpoint, streamed as it is produced."""
from __future__ import annotations

import sys

from ..errors import GlassError

EOT = "<|endoftext|>"


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="sample text from a trained run",
                              description="Sample a continuation of a prompt; the tokens are printed as "
                                          "they are produced. Sampler order: penalties -> top-k -> top-p "
                                          "-> min-p -> temperature -> draw.")
    p.add_argument("run", help="checkpoint directory (from `glassgpt train`)")
    add_sampling_arguments(p)
    p.add_argument("--prompt", default="", help="text to continue (default: start from <|endoftext|>)")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N")
    p.add_argument("--num-samples", type=int, default=1, metavar="N")
    p.add_argument("--stop", nargs="+", action="extend", metavar="STR", help="stop when this text appears")
    p.add_argument("--logprobs", type=int, metavar="N",
                   help="after each sample, a table of every token's probability and N alternatives")
    p.add_argument("--draft", metavar="RUN", help="speculative decoding with this small model (same tokenizer) "
                   "proposing tokens; the output distribution stays the run's own")
    p.add_argument("--draft-tokens", type=int, default=4, metavar="K", help="tokens the draft proposes at a time")
    add_model_arguments(p)
    p.set_defaults(func=run)


def add_model_arguments(p) -> None:
    """Where the model runs and which weights decoding reads (shared with `glassgpt play`)."""
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--decode-weights", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="read half-precision copies of the weights per new token: faster where memory "
                        "bandwidth limits decoding (a CPU), about 3 significant digits (default float32)")
    p.add_argument("--no-weight-copies", action="store_true",
                   help="keep no faster-laid-out copies of the weights: decoding is slower but needs no "
                        "memory beyond the weights (the copies take about 2x the weights)")


def add_sampling_arguments(p) -> None:
    """The sampler chain's settings (shared with `glassgpt play`)."""
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="0 = greedy (default 1)")
    p.add_argument("--top-k", type=int, metavar="K")
    p.add_argument("--top-p", type=float, metavar="P")
    p.add_argument("--min-p", type=float, metavar="P")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R")
    p.add_argument("--frequency-penalty", type=float, default=0.0, metavar="F")
    p.add_argument("--presence-penalty", type=float, default=0.0, metavar="P")
    p.add_argument("--seed", type=int, metavar="S")


def sampling_options(args) -> dict:
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repetition_penalty=args.repetition_penalty, frequency_penalty=args.frequency_penalty,
                presence_penalty=args.presence_penalty, seed=args.seed)


def load_with_tokenizer(args):
    from ..model import load
    from ..runtime import pick_device

    model = load(args.run, device=pick_device(args.device)).set_decode_dtype(args.decode_weights)
    model.set_weight_copies(not args.no_weight_copies)
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
    from ..generate import generate, stream
    from ..generate.display import logprob_table

    model = load_with_tokenizer(args)
    prompt = start_prompt(args.prompt, model.tokenizer)
    options = dict(sampling_options(args), max_new_tokens=args.max_new_tokens, stop=args.stop,
                   logprobs=args.logprobs)
    if args.draft:
        from ..model import load

        options.update(draft=load(args.draft, device=model.device, tokenizer=False), draft_tokens=args.draft_tokens)
    out = sys.stdout
    if args.num_samples == 1:
        events = stream(model, prompt, **options)           # settings checked before anything is printed
        out.write(args.prompt)
        out.flush()
        records, finish, n = [], None, 0
        for event in events:
            out.write(event.text)
            out.flush()
            records.append(event.logprob)
            finish, n = event.finish_reason, n + (event.finish_reason != "eot")
        out.write("\n")
        if args.logprobs is not None:
            out.write(logprob_table([r for r in records[:n] if r is not None]) + "\n")
        print(f"[{n} tokens, stopped: {finish or 'length'}]", file=sys.stderr)
        return 0
    for i, g in enumerate(generate(model, prompt, num_samples=args.num_samples, **options)):
        out.write(f"--- sample {i + 1} ({g.finish_reason}) ---\n{args.prompt}{g.text}\n")
        if args.logprobs is not None:
            out.write(logprob_table(g.logprobs) + "\n")
    stats = g.stats
    print(f"[{stats.new_tokens} tokens in {stats.seconds:.2f}s, {stats.tokens_per_second:.1f} tokens/s]",
          file=sys.stderr)
    return 0
