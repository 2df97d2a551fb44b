"""inspect: see what the model computes, and learn what a part does by taking it out.

    trace(model, text)            every position's next-token distribution, entropy,
                                  log-probability of the actual next token, attention, residual stream
    logit_lens(model, text)       what each layer would predict if the model stopped there
    occlusion(model, text, pos)   which earlier tokens a prediction depends on
    ablation_study(model, data)   validation loss with each part removed in turn
"""
from .trace import Trace, trace

__all__ = ["Trace", "trace"]
