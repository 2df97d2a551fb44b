"""The layer-pruning study, in one call: choose blocks, prune, heal, train baselines, measure.

    DIR/
      settings.json, samples.jsonl     what was run; one record per measurement, as it is made
      results.json, report.md, *.png   the table, the findings, the figures
      tasks/NAME.jsonl                 the multiple-choice questions asked (reusable as --task files)
      runs/                            pruned checkpoints, healing runs, trained baselines

Running the same command again skips every measurement already in samples.jsonl and
resumes unfinished training runs.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import GlassError
from ...inspect.ablation import find_data_dir, fixed_batches, load_validation, without_blocks
from ...model import load, save
from ..report import ReportDir
from .angular import angular_distances, check_drop, naive_blocks, paper_blocks
from .measure import batch_losses, score_task
from .models import (baseline_train_config, count_parameters, heal_train_config, load_baseline, narrower,
                     train_or_resume, training_budget)
from .tasks import BUILTIN_TASKS, held_out_text, make_tasks


@dataclass
class PruningSettings:
    sizes: list[int] | None = None        # block counts to drop (default: 1 .. N - 1)
    focus: int | None = None              # the count that is healed and matched by baselines (default N // 2)
    heal_steps: int = 0                   # fine-tuning steps for the pruned models (0: no healing)
    heal_lr: float | None = None          # default: the original's peak lr / 4
    tasks: list[str] = field(default_factory=lambda: list(BUILTIN_TASKS))
    questions: int = 200                  # per task (a task file keeps its first `questions`)
    context_chars: int = 400              # characters of text before each built-in question
    batches: int = 20                     # fixed validation batches for the cross-entropy
    batch_size: int = 8
    seed: int = 0
    train_baseline: bool = False          # train the two baselines from scratch
    baselines: list[str] = field(default_factory=list)    # baseline runs given

    def validate(self, n_layer: int) -> None:
        for n in self.sizes or []:
            check_drop(n, n_layer)
        if self.focus is not None:
            check_drop(self.focus, n_layer)
        for name in ("questions", "context_chars", "batches", "batch_size"):
            if getattr(self, name) < 1:
                raise GlassError(f"{name.replace('_', '-')} must be at least 1")
        if self.heal_steps < 0:
            raise GlassError("heal-steps must be 0 (no healing) or more")
        if self.heal_lr is not None and not self.heal_lr > 0:
            raise GlassError("heal-lr must be positive")
        if not self.tasks:
            raise GlassError("give at least one task")


def run_pruning_study(run: str | os.PathLike, out_dir: str | os.PathLike, settings: PruningSettings | None = None,
                      data_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Run the whole study on the trained run `run`, writing DIR; returns the results."""
    from .report import render_report
    settings = settings or PruningSettings()
    run = str(Path(run).resolve())
    original = load(run)
    if original.tokenizer is None:
        raise GlassError(f"{run} has no tokenizer.json: the tasks need the run's tokenizer")
    n_layer = original.config.n_layer
    if n_layer < 2:
        raise GlassError(f"{run} has {n_layer} block: pruning needs a model with at least 2")
    settings.validate(n_layer)
    focus = settings.focus if settings.focus is not None else max(1, n_layer // 2)
    sizes = sorted(set(settings.sizes or range(1, n_layer)) | {focus})      # the focus size is always measured
    data = find_data_dir(run, data_dir)
    val_tokens = load_validation(data)
    given = [(str(Path(b).resolve()), load_baseline(b, run)) for b in settings.baselines]
    if settings.train_baseline or settings.heal_steps:
        training_budget(run)                  # fails now, not after an hour, if the run cannot tell its budget

    out = Path(out_dir)
    report = ReportDir(out, {"experiment": "pruning", "run": run, "data": str(Path(data).resolve()),
                             **asdict(settings)})
    tasks = make_tasks(settings.tasks, held_out_text(val_tokens, original.tokenizer), settings.questions,
                       settings.seed, settings.context_chars)
    (out / "tasks").mkdir(exist_ok=True)
    for task in tasks:
        task.write_jsonl(out / "tasks" / f"{task.name}.jsonl")
    seq_len = min([original.config.context_length] + [m.config.context_length for _, m in given])
    batches = fixed_batches(val_tokens, settings.batches, settings.batch_size, seq_len, torch.device("cpu"),
                            settings.seed)

    # 1. which blocks: the angular distance between residual streams
    angular = report.done({"measure": "angular"})
    if angular is None:
        angular = {"measure": "angular", "distances": angular_distances(original, batches).tolist()}
        report.append(angular)
    distances = np.array(angular["distances"], dtype=np.float64)

    # 2. measure every model; the focus size and the baselines first (the comparison that matters)
    study = Study(report, tasks, batches, original.tokenizer, progress)
    study.measure("original", "original", original, [], run=run)

    def prune(n: int) -> None:
        paper, naive = paper_blocks(distances, n), naive_blocks(n_layer, n)
        study.measure(f"paper -{n}", "pruned (paper)", lambda: without_blocks(original, paper), paper)
        study.measure(f"naive -{n}", "pruned (naive)", lambda: without_blocks(original, naive), naive,
                      same_as=f"paper -{n}" if naive == paper else None)
    prune(focus)

    # the comparison the paper left out: smaller models trained from scratch on the same token budget
    runs = out / "runs"
    if settings.train_baseline:
        train_config, steps = training_budget(run)
        same = original.config.replace(n_layer=n_layer - focus)
        half = narrower(same, count_parameters(same) // 2)
        for label, config in (("same size", same), ("half size", half)):
            run_dir = runs / f"baseline-{label.replace(' ', '-')}"

            def trained(config=config, run_dir=run_dir):
                return train_or_resume(data, run_dir, config, baseline_train_config(train_config, steps),
                                       progress=progress)
            study.measure(f"baseline, {label}", "baseline (trained)", trained, [], run=str(run_dir), steps=steps)
    for path, model in given:
        study.measure(f"baseline {Path(path).name}", "baseline (given)", model, [], run=path)

    # healing: the focus size, both choices, fine-tuned by the normal trainer in its own run directory
    if settings.heal_steps:
        train_config, _ = training_budget(run)
        for choice, blocks in (("paper", paper_blocks(distances, focus)), ("naive", naive_blocks(n_layer, focus))):
            name = f"{choice} -{focus} healed"
            if choice == "naive" and blocks == paper_blocks(distances, focus):
                study.measure(name, "pruned + healed", None, blocks, same_as=f"paper -{focus} healed")
                continue

            def healed(blocks=blocks, choice=choice):
                pruned_dir = save(without_blocks(original, blocks), runs / f"pruned-{choice}-{focus}")
                config = heal_train_config(train_config, settings.heal_steps, settings.heal_lr)
                return train_or_resume(data, runs / f"healed-{choice}-{focus}", None, config, pruned_dir, progress)
            study.measure(name, "pruned + healed", healed, blocks, run=str(runs / f"healed-{choice}-{focus}"),
                          heal_steps=settings.heal_steps)

    for n in sizes:
        prune(n)

    results = summarise(report.samples, tasks, distances, sizes, focus, n_layer, run)
    from .plots import plot_accuracy_vs_cross_entropy, plot_angular, plot_cross_entropy_vs_parameters
    plot_angular(results, report.figure_path("angular_distance.png"))
    plot_accuracy_vs_cross_entropy(results, report.figure_path("accuracy_vs_cross_entropy.png"))
    plot_cross_entropy_vs_parameters(results, report.figure_path("cross_entropy_vs_parameters.png"))
    report.write_results(results)
    report.write_report(render_report(results))
    return results


class Study:
    """Measures models one at a time, skipping what samples.jsonl already holds."""

    def __init__(self, report: ReportDir, tasks, batches, tokenizer, progress: bool):
        self.report, self.tasks, self.batches = report, tasks, batches
        self.tokenizer, self.progress = tokenizer, progress

    def measure(self, name: str, kind: str, model, blocks: list[int], same_as: str | None = None, **info) -> None:
        """`model`: a GPT, or a function making one (called only if something is left to measure)."""
        measures = ["cross_entropy"] + [t.name for t in self.tasks]
        if same_as is not None:                      # the same model under another name: copy its records
            for m in ["info"] + measures:
                if self.report.done({"model": name, "measure": m}) is None:
                    source = self.report.done({"model": same_as, "measure": m})
                    self.report.append({**source, "model": name, "kind": kind, "same_as": same_as})
            return
        todo = [m for m in ["info"] + measures if self.report.done({"model": name, "measure": m}) is None]
        if not todo:
            return
        model = model if isinstance(model, torch.nn.Module) else model()
        if "info" in todo:
            self.report.append({"model": name, "measure": "info", "kind": kind, "blocks_dropped": blocks,
                                "params": model.num_parameters(), "n_layer": model.config.n_layer,
                                "d_model": model.config.d_model, **info})
        if "cross_entropy" in todo:
            self.report.append({"model": name, "measure": "cross_entropy", "kind": kind,
                                "losses": batch_losses(model, self.batches)})
        for task in self.tasks:
            if task.name in todo:
                scored = score_task(model, task, self.tokenizer, self.progress, desc=f"{name}: {task.name}")
                self.report.append({"model": name, "measure": task.name, "kind": kind, **scored})


def summarise(samples: list[dict], tasks, distances: np.ndarray, sizes: list[int], focus: int, n_layer: int,
              run: str) -> dict:
    """One row per model (in the order measured) and the findings."""
    names = sorted((r["model"] for r in samples if r.get("measure") == "info"), key=table_order)
    rows = []
    intact = next(r["losses"] for r in samples if r.get("model") == "original" and r["measure"] == "cross_entropy")
    for name in names:
        get = {r["measure"]: r for r in samples if r.get("model") == name}
        info, ce = get["info"], get["cross_entropy"]
        diff = np.subtract(ce["losses"], intact)
        row = {"model": name, "kind": info["kind"], "blocks_dropped": info["blocks_dropped"],
               "params": info["params"], "n_layer": info["n_layer"], "d_model": info["d_model"],
               "same_as": info.get("same_as"), "run": info.get("run"),
               "cross_entropy": float(np.mean(ce["losses"])), "cross_entropy_se": _se(ce["losses"]),
               "cross_entropy_increase": float(diff.mean()), "cross_entropy_increase_se": _se(diff),
               "tasks": {t.name: {k: get[t.name][k] for k in ("acc", "acc_se", "acc_norm", "acc_norm_se")}
                         for t in tasks}}
        row["mean_acc"] = float(np.mean([v["acc"] for v in row["tasks"].values()]))
        row["mean_acc_norm"] = float(np.mean([v["acc_norm"] for v in row["tasks"].values()]))
        rows.append(row)
    chance = {t.name: t.chance for t in tasks}
    task_info = [{"name": t.name, "description": t.description, "questions": len(t.questions), "chance": t.chance,
                  "example": t.questions[0].to_dict()} for t in tasks]
    choices = {n: {"paper": paper_blocks(distances, n), "naive": naive_blocks(n_layer, n)} for n in sizes}
    return {"run": run, "n_layer": n_layer, "focus": focus, "sizes": sizes, "tasks": task_info, "chance": chance,
            "mean_chance": float(np.mean(list(chance.values()))), "angular_distances": distances.tolist(),
            "choices": {str(n): c for n, c in choices.items()}, "models": rows,
            "findings": findings(rows, chance, focus)}


def table_order(name: str) -> tuple:
    """original; pruned by size (paper's choice, then naive); healed; baselines in the order measured."""
    if name == "original":
        return (0,)
    if name.startswith(("paper -", "naive -")):
        n = int(name.split(" ")[1][1:])
        return (2 if name.endswith("healed") else 1, n, name.startswith("naive"))
    return (3,)


def _se(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def findings(rows: list[dict], chance: dict, focus: int) -> dict:
    """The numbers the report's paragraph states, for the focus size."""
    by_name = {r["model"]: r for r in rows}
    mean_chance = float(np.mean(list(chance.values())))
    original = by_name["original"]

    def kept(row) -> float:
        """Share of the original's accuracy above chance that a model keeps (acc_norm, mean over tasks)."""
        above = original["mean_acc_norm"] - mean_chance
        return float((row["mean_acc_norm"] - mean_chance) / above) if above > 0 else float("nan")

    out = {"original": _brief(original, kept)}
    for key, name in (("pruned", f"paper -{focus}"), ("naive", f"naive -{focus}"),
                      ("healed", f"paper -{focus} healed"), ("naive_healed", f"naive -{focus} healed")):
        if name in by_name:
            out[key] = _brief(by_name[name], kept)
    out["baselines"] = [_brief(r, kept) for r in rows if r["kind"].startswith("baseline")]
    out["paper_vs_naive"] = [{"n": int(r["model"].split("-")[1]), "paper_ce": r["cross_entropy"],
                              "naive_ce": by_name[f"naive -{r['model'].split('-')[1]}"]["cross_entropy"],
                              "paper_acc_norm": r["mean_acc_norm"],
                              "naive_acc_norm": by_name[f"naive -{r['model'].split('-')[1]}"]["mean_acc_norm"]}
                             for r in rows if r["kind"] == "pruned (paper)"]
    return out


def _brief(row: dict, kept) -> dict:
    return {"model": row["model"], "params": row["params"], "cross_entropy": row["cross_entropy"],
            "mean_acc": row["mean_acc"], "mean_acc_norm": row["mean_acc_norm"], "kept": kept(row)}
