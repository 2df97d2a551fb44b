"""Moved to `glassgpt.interop.hf` (Hugging Face GPT-2 directories both ways); kept so that
`from glassgpt.model.hf_gpt2 import from_hf_gpt2` goes on working."""
from ..interop.hf import config_from_hf, from_hf_gpt2, from_pretrained

__all__ = ["config_from_hf", "from_hf_gpt2", "from_pretrained"]
