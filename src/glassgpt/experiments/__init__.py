"""Experiments: each one command that writes a report directory (report.md, results.json,
samples.jsonl, PNG figures), on a glassgpt model or an OpenAI-compatible endpoint.

    temperature       why low temperature collapses into repetition
    ascii_diffusion   in-context learning of a grow-and-denoise process on ASCII art
    icl               in-context learning as inference: GINC-style HMM mixtures, accuracy against k
"""
from .completer import Completer, Completion, GlassCompleter, OpenAICompleter, TopScores
from .temperature import TemperatureSettings, run_temperature_study

__all__ = ["Completer", "Completion", "GlassCompleter", "OpenAICompleter", "TemperatureSettings", "TopScores",
           "run_temperature_study"]
