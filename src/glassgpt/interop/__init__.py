"""Interop: a glassgpt model in other tools' formats, and back.

    hf.py               a Hugging Face GPT-2 directory (transformers loads it), and reading one
    gguf.py             a GGUF file llama.cpp runs (written with the `gguf` package)
    tokenizer_files.py  tokenizers JSON files and tiktoken rank files, both ways
    lens.py             a TransformerLens HookedTransformer through the HF export
    output.py           exports never overwrite by surprise and never land half-written

    from glassgpt.interop import export_hf, export_gguf, load_hf, hooked_transformer
    export_hf("run", "run-hf")                     # AutoModelForCausalLM.from_pretrained("run-hf")
    export_gguf("run", "run.gguf", dtype="f16")    # llama-cli -m run.gguf
    glassgpt.load("run-hf")                        # any local GPT-2 directory, back as a GPT
"""
from .gguf import export_gguf
from .hf import export_hf, gpt2_incompatibilities, load_hf
from .lens import hooked_transformer
from .tokenizer_files import export_tokenizer, import_tokenizer, read_tokenizers_json, write_tokenizers_json

__all__ = ["export", "export_hf", "export_gguf", "load_hf", "gpt2_incompatibilities", "hooked_transformer",
           "export_tokenizer", "import_tokenizer", "read_tokenizers_json", "write_tokenizers_json"]

FORMATS = ("hf", "gguf")


def export(model_or_run, to: str, path, dtype="f32", force: bool = False):
    """Write a GPT or run directory for another tool: to="hf" (a directory) or "gguf" (a file)."""
    from ..errors import GlassError

    if to == "hf":
        return export_hf(model_or_run, path, dtype=dtype, force=force)
    if to == "gguf":
        return export_gguf(model_or_run, path, dtype=dtype, force=force)
    raise GlassError(f"unknown export format {to!r}: choose {' or '.join(FORMATS)}")
