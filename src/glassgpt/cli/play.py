"""`glassgpt play RUN`: an interactive loop over a generation session.

Type text to append it, press Enter on an empty line to generate a chunk, and rewind,
change the temperature or look at the next-token distribution with slash commands.
Works with piped input too: `printf 'Once\\n\\n/top\\n' | glassgpt play RUN`.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import GlassError
from ..generate.samplers import SamplingParams
from .escapes import unescape
from .generate import (PLAY_SETTINGS, add_model_arguments, add_sampling_arguments, fast_decoding,
                       load_with_tokenizer, sampling_params)

HELP = """\
  text       append it to the context (\\n for a newline)
  (empty)    generate a chunk of tokens
  /rewind N  take back the last N tokens
  /temp T    set the temperature (0 = greedy)
  /top [N]   show the N most likely next tokens (default 10)
  /choice A | B | C   constrain the next chunk to one of these (also /regex R,
             /integer [MIN MAX], /json FILE); each token shows the mass it removed
  /free      drop the constraint
  /undo      undo the last change
  /show      print the whole context
  /help      this list
  /quit      leave (so does end of input)"""


def register(subparsers) -> None:
    p = subparsers.add_parser("play", help="interactive session: append, generate, rewind, inspect",
                              description="An interactive session over a model. Commands:\n" + HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="checkpoint directory (from `glassgpt train`)")
    add_sampling_arguments(p, PLAY_SETTINGS)
    p.add_argument("--chunk", type=int, default=32, metavar="N", help="tokens per generation (default 32)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..generate import Session

    model = load_with_tokenizer(args)
    session = Session(model, sampling_params(args, PLAY_SETTINGS))
    with fast_decoding(model, args):                       # one scope for the whole session
        PlayLoop(session, args.chunk, sys.stdin, sys.stdout).run()
    return 0


class PlayLoop:
    """Reads commands line by line and prints what each one did."""

    def __init__(self, session, chunk: int, stdin, stdout):
        self.session, self.chunk, self.stdin, self.out = session, chunk, stdin, stdout
        self.constraint = None
        self.interactive = stdin.isatty()

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> None:
        self.say("glassgpt play: type text to append, Enter to generate, /help for commands")
        while True:
            if self.interactive:
                self.out.write("> ")
                self.out.flush()
            line = self.stdin.readline()
            if not line:
                return
            try:
                if self.handle(line.rstrip("\n")) == "quit":
                    return
            except GlassError as e:
                self.say(f"error: {e}")

    def handle(self, line: str) -> str | None:
        s = self.session
        command, _, argument = line.partition(" ")
        if not line:
            if self.constraint is not None:
                from ..generate.display import constraint_table
                g = s.generate(self.chunk, constraint=self.constraint, logprobs=3)
                self.say(constraint_table(g.logprobs))
            else:
                g = s.generate(self.chunk)
            self.say(f"{g.text}   [{len(g.ids)} tokens, {g.finish_reason}; "
                     f"reused {s.reused} cached positions, computed {s.computed}]")
        elif command in ("/choice", "/regex", "/integer", "/json"):
            self.constraint = parse_constraint(command, argument)
            self.say(f"constraint: {self.constraint!r} (Enter generates under it; /free drops it)")
        elif command == "/free":
            self.constraint = None
            self.say("no constraint")
        elif command == "/quit":
            return "quit"
        elif command == "/help":
            self.say(HELP)
        elif command == "/rewind":
            s.rewind(number(argument, int, "/rewind N"))
            self.say(f"context: ...{tail(s.text)}")
        elif command == "/temp":
            s.params = SamplingParams.of(s.params, temperature=number(argument, float, "/temp T"))
            self.say(f"temperature = {s.params.temperature}")
        elif command == "/top":
            from ..generate.display import distribution_table
            top = number(argument, int, "/top N") if argument else 10
            t = s.params.temperature or 1.0
            self.say(f"next token after ...{tail(s.text, 30)} (T = {t}):")
            self.say(distribution_table(s.distribution(top, temperature=t)))
        elif command == "/undo":
            s.undo()
            self.say(f"context: ...{tail(s.text)}")
        elif command == "/show":
            self.say(s.text)
        elif line.startswith("/"):
            raise GlassError(f"unknown command {command}: type /help")
        else:
            s.append(unescape(line))
            self.say(f"[{len(s)} tokens]")
        return None


def parse_constraint(command: str, argument: str):
    """`/choice A | B`, `/regex R`, `/integer [MIN MAX]`, `/json FILE` -> a constraint."""
    from pathlib import Path

    from ..generate.constraints import Choice, Integer, JSONSchema, Regex

    if command == "/choice":
        options = [unescape(o.strip()) for o in argument.split("|") if o.strip()]
        return Choice(options)
    if command == "/regex":
        if not argument:
            raise GlassError("usage: /regex R")
        return Regex(argument)
    if command == "/integer":
        bounds = argument.split()
        if len(bounds) not in (0, 2):
            raise GlassError("usage: /integer [MIN MAX]")
        return Integer(*(number(b, int, "/integer [MIN MAX]") for b in bounds))
    try:
        return JSONSchema(Path(argument).read_text(encoding="utf-8"))
    except OSError as e:
        raise GlassError(f"cannot read {argument!r}: {e.strerror or e}") from None


def number(text: str, kind, usage: str):
    try:
        return kind(text)
    except ValueError:
        raise GlassError(f"usage: {usage}") from None


def tail(text: str, n: int = 60) -> str:
    return repr(text[-n:])[1:-1]
