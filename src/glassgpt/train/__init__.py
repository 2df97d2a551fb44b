"""The train stage: corpus -> token files -> training loop -> checkpoint directory.

    from glassgpt.train import load_corpus, prepare, train, TrainConfig
    prepare(["shakespeare"], "data", tokenizer="char")
    result = train("data", "run", GPTConfig.preset("small"), TrainConfig(max_seconds=150))

Modules: corpora.py (inputs and built-in corpora), prepare.py (tokenize to .bin files),
data.py (random batches), config.py (TrainConfig), schedule.py (learning rate),
loop.py (the loop), state.py (checkpoints and resume), distributed.py (torchrun/DDP),
plot.py (loss.png).
"""
from .config import TrainConfig
from .corpora import builtin_corpus, load_corpus
from .loop import TrainResult, train
from .prepare import prepare

__all__ = ["prepare", "train", "TrainConfig", "TrainResult", "load_corpus", "builtin_corpus"]
