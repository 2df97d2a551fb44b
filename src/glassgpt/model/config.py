"""GPTConfig: every architectural choice of the model in one frozen, JSON-saveable record.

The switches are the ones a learner wants to compare: how positions are encoded, where
the LayerNorm sits, which activation, biases, tied or separate output projection.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from ..errors import ConfigError

POSITIONAL = ("learned", "sinusoidal", "rope", "none")
NORM_PLACEMENT = ("pre", "post")
ACTIVATIONS = ("gelu", "gelu_exact", "relu")
TRAINING_ONLY = ("dropout",)


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    context_length: int = 1024
    d_model: int = 768
    n_layer: int = 12
    n_head: int = 12
    d_ff: int | None = None          # None -> 4 * d_model
    positional: str = "learned"      # learned | sinusoidal | rope | none
    norm: str = "pre"                # pre (GPT-2) | post (the original Transformer)
    activation: str = "gelu"         # gelu (tanh approximation, GPT-2) | gelu_exact | relu
    bias: bool = True                # biases in attention and feed-forward linears, and LayerNorm
    tie_embeddings: bool = True      # unembed shares the token embedding matrix (no bias)
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    rope_base: float = 10000.0

    def __post_init__(self):
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        self.validate()

    def validate(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "n_layer", "n_head", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("positional", "norm", "activation"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("dropout", "layer_norm_eps", "rope_base"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if self.layer_norm_eps <= 0 or self.rope_base <= 0:
            raise ConfigError(f"layer_norm_eps and rope_base must be positive, got {self.layer_norm_eps} "
                              f"and {self.rope_base}")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"n_head ({self.n_head}) must divide d_model ({self.d_model}): pick e.g. n_head="
                f"{max(h for h in range(1, self.n_head + 1) if self.d_model % h == 0)}")
        if self.positional not in POSITIONAL:
            raise ConfigError(f"positional must be one of {', '.join(POSITIONAL)}, got {self.positional!r}")
        if self.positional == "rope" and self.head_dim % 2:
            raise ConfigError(f"rope needs an even head dimension, got d_model/n_head = {self.head_dim}")
        if self.norm not in NORM_PLACEMENT:
            raise ConfigError(f"norm must be 'pre' or 'post', got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    # -- presets ---------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        """A named starting point; keyword arguments override any field."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
        fields = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(**fields)

    def replace(self, **changes) -> "GPTConfig":
        return dataclasses.replace(self, **changes)

    # -- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def architecture(self) -> dict:
        """The fields that decide what the weights mean: all but dropout (a training setting)."""
        return {k: v for k, v in self.to_dict().items() if k not in TRAINING_ONLY}

    def fingerprint(self) -> str:
        """A hash of the architecture, stored in the weights' metadata: a config.json edited
        after training (say a changed n_head, same shapes, another model) is caught at load."""
        return hashlib.sha256(json.dumps(self.architecture(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict) -> "GPTConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"expected a JSON object of config fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"config has unknown field(s) {', '.join(sorted(unknown))}: "
                              f"was it written by a newer glassgpt?")
        return cls(**data)


PRESETS: dict[str, dict] = {
    # GPT-2 small exactly: learned positions, pre-LN, tanh-GELU, biases, tied unembedding.
    "gpt2": dict(vocab_size=50257, context_length=1024, d_model=768, n_layer=12, n_head=12),
    # The original Transformer's decoder choices, as in the classic walkthroughs.
    "classic": dict(vocab_size=50257, context_length=512, d_model=512, n_layer=6, n_head=8,
                    positional="sinusoidal", norm="post", activation="relu", tie_embeddings=False),
    # Small models that train in minutes on a laptop CPU.
    "tiny": dict(vocab_size=512, context_length=64, d_model=64, n_layer=2, n_head=4),
    "small": dict(vocab_size=4096, context_length=128, d_model=128, n_layer=4, n_head=4),
    "medium": dict(vocab_size=4096, context_length=256, d_model=384, n_layer=6, n_head=6),
}
