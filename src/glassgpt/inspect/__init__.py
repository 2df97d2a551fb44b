"""inspect: see what the model computes, and learn what a part does by taking it out.

    trace(model, text)                 every position's whole next-token distribution, entropy,
                                       the actual next token's probability/rank/surprisal,
                                       attention patterns, the residual stream
    logit_lens(model, text_or_trace)   what the model would predict if it stopped after each block
    occlusion(model, text, position)   which earlier tokens a prediction depends on
    ablation_study(model, val_tokens)  validation loss with each part removed in turn

Figures (matplotlib) are in `glassgpt.inspect.plots`; terminal and HTML colouring in `render`.
"""
from .ablation import AblationStudy, ablation_study, load_validation
from .attribution import Attribution, occlusion
from .choices import ChoiceScores, OptionScore, option_logprobs, score_choices
from .lens import LogitLens, logit_lens
from .trace import Trace, trace

__all__ = ["Trace", "trace", "LogitLens", "logit_lens", "Attribution", "occlusion",
           "AblationStudy", "ablation_study", "load_validation", "option_logprobs", "score_choices",
           "OptionScore", "ChoiceScores"]
