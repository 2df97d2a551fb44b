"""The model: config, the GPT pipeline, attention, probes, KV cache, checkpoints."""
from .checkpoint import load, save
from .config import PRESETS, GPTConfig
from .gpt import GPT, GPTOutput
from .kv_cache import KVCache
from .probes import Probes

__all__ = ["GPT", "GPTConfig", "GPTOutput", "KVCache", "Probes", "PRESETS", "load", "save"]
