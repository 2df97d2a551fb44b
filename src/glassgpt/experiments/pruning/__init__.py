"""The layer-pruning story: the benchmark survives, the cross-entropy does not.

A paper on the redundancy of deeper layers (Gromov et al., 2024) dropped about half the
blocks of a large model, chosen by the angular distance between residual streams, and kept
most of its multiple-choice score. Reproductions found what it left out: the pruned model
predicts text worse than a much smaller model trained from scratch, and healing barely
helps. This study measures both on any model trained here:

    angular.py   which blocks to drop (the paper's way, and the last n)
    tasks.py     multiple-choice tasks from held-out text, or a JSON-lines file
    measure.py   cross-entropy and acc / acc_norm (log-likelihood of each choice in context)
    models.py    pruned, healed (the normal trainer) and baseline models
    runner.py    the whole study, resumable, into a report directory
    report.py, plots.py   report.md and the figures

    glassgpt experiment pruning RUN -o DIR --heal-steps 200 --train-baseline
"""
from .angular import angular_distance, angular_distances, naive_blocks, paper_blocks
from .runner import PruningSettings, run_pruning_study
from .tasks import BUILTIN_TASKS, Question, Task, builtin_task, load_task_file

__all__ = ["PruningSettings", "run_pruning_study", "angular_distance", "angular_distances", "paper_blocks",
           "naive_blocks", "Question", "Task", "BUILTIN_TASKS", "builtin_task", "load_task_file"]
