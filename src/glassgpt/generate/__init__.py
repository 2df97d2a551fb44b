"""Generation: from logits to text, fast and in the open.

    generate(model, prompt, temperature=0.8, top_p=0.95, logprobs=5)  -> [Generation]
    stream(model, prompt, ...)                                        -> TokenEvent per token
    generate_batch(model, [prompt, ...], ...)                         -> one forward per step for all
    generate(..., prompt_cache=PromptCache())                         reuse shared prompt prefixes
    generate(..., draft=small_model, draft_tokens=4)                  speculative decoding
    Session(model)                                                    append / generate / rewind / substitute
    Scheduler(model, max_batch=8)                                     continuous batching: jobs join and leave

The sampler chain and its order are in `samplers`.
"""
from .decode import generate, generate_batch, stream
from .outputs import Alternative, Generation, GenerationStats, TokenEvent, TokenLogprob
from .prompt_cache import PromptCache
from .samplers import SamplerChain, SamplingParams
from .scheduler import Scheduler
from .session import Session

__all__ = ["generate", "generate_batch", "stream", "Generation", "GenerationStats", "TokenEvent",
           "TokenLogprob", "Alternative", "PromptCache", "SamplerChain", "SamplingParams", "Session",
           "Scheduler"]
