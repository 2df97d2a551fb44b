"""inspect: see what the model computes, and learn what a part does by taking it out.

    trace(model, text)                 every position's whole next-token distribution, entropy,
                                       the actual next token's probability/rank/surprisal,
                                       attention patterns, the residual stream
    logit_lens(model, text_or_trace)   what the model would predict if it stopped after each block
    occlusion(model, text, position)   which earlier tokens a prediction depends on
    ablation_study(model, val_tokens)  validation loss with each part removed in turn
    patch(model, clean, corrupt, metric, over=...)
                                       activation patching: which layer, position, head restores
                                       the clean prediction in the corrupted run
    direct_logit_attribution(model, text, position, token)
                                       each head's, feed-forward's and embedding's direct share of a logit
    head_roles(model)                  previous-token, duplicate-token and induction score of every head

Figures (matplotlib) are in `glassgpt.inspect.plots`; terminal and HTML colouring in `render`.
"""
from .ablation import AblationStudy, ablation_study, load_validation
from .attribution import Attribution, occlusion
from .choices import ChoiceScores, OptionScore, option_logprobs, score_choices
from .dla import LogitAttribution, direct_logit_attribution
from .heads import HeadRoles, head_roles
from .lens import LogitLens, logit_lens
from .patching import PatchResult, logit_diff, patch, probability
from .trace import Trace, trace

__all__ = ["Trace", "trace", "LogitLens", "logit_lens", "Attribution", "occlusion",
           "AblationStudy", "ablation_study", "load_validation", "PatchResult", "patch", "logit_diff",
           "probability", "LogitAttribution", "direct_logit_attribution", "HeadRoles", "head_roles",
           "option_logprobs", "score_choices", "OptionScore", "ChoiceScores"]
