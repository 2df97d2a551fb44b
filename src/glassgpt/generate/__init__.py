"""Generation: from logits to text, fast and in the open.

    generate(model, prompt, temperature=0.8, top_p=0.95, logprobs=5)  -> [Generation]
    stream(model, prompt, ...)                                        -> TokenEvent per token
    generate_batch(model, [prompt, ...], ...)                         -> one forward per step for all
    generate(..., prompt_cache=PromptCache())                         reuse shared prompt prefixes
    generate(..., draft=small_model, draft_tokens=4)                  speculative decoding
    Session(model)                                                    append / generate / rewind / substitute
    generate(..., constraint=Regex(r"[0-9]+"))                        Choice, Regex, Integer, JSONSchema, Grammar
    query(model, "A: [X]", where={"X": Integer()})                    templates with holes
    Scheduler(model, max_batch=8)                                     continuous batching: jobs join and leave

The sampler chain and its order are in `samplers`.
"""
from .constraints import Choice, Constraint, Grammar, Integer, JSONSchema, Regex, constraint_from_fields
from .decode import generate, generate_batch, stream
from .outputs import Alternative, Generation, GenerationStats, TokenEvent, TokenLogprob
from .prompt_cache import PromptCache
from .query import Distribution, QueryResult, Text, query
from .samplers import SamplerChain, SamplingParams
from .scheduler import Scheduler
from .session import Session

__all__ = ["generate", "generate_batch", "stream", "Generation", "GenerationStats", "TokenEvent",
           "TokenLogprob", "Alternative", "PromptCache", "SamplerChain", "SamplingParams", "Session",
           "Constraint", "Choice", "Regex", "Integer", "JSONSchema", "Grammar", "constraint_from_fields",
           "query", "QueryResult", "Text", "Distribution",
           "Scheduler"]
