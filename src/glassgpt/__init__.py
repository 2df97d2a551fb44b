"""glassgpt: a GPT you can see through.

    from glassgpt import Tokenizer, GPT, GPTConfig, load

The pipeline: text -> Tokenizer -> ids -> GPT (embed, positional encoding, blocks,
final norm, unembed) -> logits -> sampler chain -> next id.
"""
from .errors import GlassError

__version__ = "0.1.0"

_LAZY = {
    "Tokenizer": ("glassgpt.tokenizer", "Tokenizer"),
    "GPT": ("glassgpt.model", "GPT"),
    "GPTConfig": ("glassgpt.model", "GPTConfig"),
    "KVCache": ("glassgpt.model", "KVCache"),
    "load": ("glassgpt.model", "load"),
    "save": ("glassgpt.model", "save"),
    # constrained and templated generation
    "Choice": ("glassgpt.generate.constraints", "Choice"),
    "Regex": ("glassgpt.generate.constraints", "Regex"),
    "Integer": ("glassgpt.generate.constraints", "Integer"),
    "JSONSchema": ("glassgpt.generate.constraints", "JSONSchema"),
    "Grammar": ("glassgpt.generate.constraints", "Grammar"),
    "score_choices": ("glassgpt.inspect.choices", "score_choices"),
    "query": ("glassgpt.generate.query", "query"),
}

__all__ = ["GlassError", *_LAZY]


def __getattr__(name):
    # Lazy so that `import glassgpt` (and the CLI's --help) does not import torch.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'glassgpt' has no attribute {name!r}")
