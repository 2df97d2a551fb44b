"""The prompt: a short instruction, n finished example sequences, then the first frame(s) of
a held-out picture, left open so the model writes the remaining frames.

The training corpus uses the same layout (instruction, then sequences), so a model trained
on it meets prompts in the form it learned.
"""
from __future__ import annotations

from ...errors import GlassError
from .builder import Frame, format_sequence

INSTRUCTION = "# Each picture is drawn in steps: the canvas grows and the noise falls to 0.\n"


def build_prompt(examples: list[list[Frame]], target: list[Frame], given: int = 1) -> str:
    """Instruction + complete example sequences + the first `given` frames of `target`."""
    if not 1 <= given < len(target):
        raise GlassError(f"--given must be between 1 and {len(target) - 1} (the frames shown of the "
                         f"held-out picture), got {given}")
    return INSTRUCTION + "".join(format_sequence(e) for e in examples) + format_sequence(target[:given], closed=False)


def open_sequence(prompt: str) -> str:
    """The held-out part of a prompt: from its last <picture> on (what the scorer reads with
    the continuation)."""
    return prompt[prompt.rindex("<picture>"):]
