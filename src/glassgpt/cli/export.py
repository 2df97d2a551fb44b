"""`glassgpt export RUN --to hf|gguf -o PATH`: a run in a format other tools load.

    glassgpt export run --to hf -o run-hf            # transformers: AutoModelForCausalLM.from_pretrained("run-hf")
    glassgpt export run --to gguf -o run.gguf        # llama.cpp: llama-cli -m run.gguf
    glassgpt export run --to gguf -o run-f16.gguf --dtype f16
"""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a run as a Hugging Face GPT-2 directory or a GGUF file",
                              description="Write a trained run in another tool's format: a Hugging Face GPT-2 "
                                          "directory (config.json, model.safetensors, tokenizer.json) or a GGUF "
                                          "file for llama.cpp. Architectures GPT-2 cannot express are refused.")
    p.add_argument("run", help="checkpoint directory (from `glassgpt train`)")
    p.add_argument("--to", required=True, choices=("hf", "gguf"), help="hf: a directory; gguf: one file")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory (hf) or file (gguf) to write")
    p.add_argument("--dtype", default="f32", choices=("f32", "f16"),
                   help="f32 keeps the weights exactly (default); f16 halves the size")
    p.add_argument("--force", action="store_true", help="replace an earlier export at the output path")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..interop import export

    path = export(args.run, args.to, args.output, dtype=args.dtype, force=args.force)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    print(f"wrote {path} ({args.to}, {args.dtype}, {size / 1e6:.1f} MB)")
