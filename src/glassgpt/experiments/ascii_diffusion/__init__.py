"""ASCII-art diffusion: can a model continue a process shown in context, in which the canvas
grows and the noise falls until a finished picture appears?

    pictures   what to draw (built-in kinds, images, text art) -> Art
    builder    Art + Schedule + seed -> frames
    prompt     examples + the first frame(s) of a held-out picture -> prompt text
    runner     prompt -> completer at several temperatures/seeds -> report directory
    scorer     a continuation -> parsed frames and scores
    render     frames side by side as a PNG
    corpus     many sequences of training kinds, to train a small model on the task
"""
from .builder import Frame, Schedule, build_frames, format_sequence
from .corpus import build_corpus, write_corpus
from .pictures import HELD_OUT_KINDS, KINDS, TRAIN_KINDS, Art, draw, load_art
from .prompt import build_prompt
from .render import render_sequences
from .runner import DiffusionSettings, run_ascii_diffusion
from .scorer import parse_frames, score_sequence

__all__ = ["Art", "DiffusionSettings", "Frame", "HELD_OUT_KINDS", "KINDS", "Schedule", "TRAIN_KINDS",
           "build_corpus", "build_frames", "build_prompt", "draw", "format_sequence", "load_art",
           "parse_frames", "render_sequences", "run_ascii_diffusion", "score_sequence", "write_corpus"]
