"""In-context learning as inference: GINC-style data, prompts of k examples, patterns.

    ginc       a mixture of HMMs -> pretraining documents; the exact Bayes-optimal predictor
    prompts    k examples of one concept (gold or random labels) -> prompt text and answer
    train      documents -> char-level token files -> a small GPT (the normal trainer)
    runner     prompts -> a completer -> accuracy against k and example length -> report
    patterns   procedurally made sequence-completion tasks, plain and remapped -> report
"""
from .ginc import ALPHABET, DELIMITER, DOCUMENT_SEPARATOR, Ginc, GincSettings

__all__ = ["ALPHABET", "DELIMITER", "DOCUMENT_SEPARATOR", "Ginc", "GincSettings"]
