"""report.md for the pruning study: the table, the figures and the measured findings."""
from __future__ import annotations

import math

from ..report import md_table


def _pm(value: float, se: float) -> str:
    return f"{value:.3f} ± {se:.3f}" if not math.isnan(se) else f"{value:.3f}"


def model_table(results: dict) -> str:
    tasks = [t["name"] for t in results["tasks"]]
    headers = ["model", "kind", "blocks dropped", "params", "cross-entropy", "Δ vs original"]
    headers += [f"{t} acc" for t in tasks] + [f"{t} acc_norm" for t in tasks]
    if len(tasks) > 1:
        headers += ["mean acc", "mean acc_norm"]
    rows = []
    for m in results["models"]:
        dropped = ",".join(map(str, m["blocks_dropped"])) or "-"
        if m.get("same_as"):
            dropped += f" (= {m['same_as']})"
        row = [m["model"], m["kind"], dropped, f"{m['params'] / 1e6:.2f}M",
               _pm(m["cross_entropy"], m["cross_entropy_se"]),
               "-" if m["model"] == "original" else f"{m['cross_entropy_increase']:+.3f}"]
        row += [_pm(m["tasks"][t]["acc"], m["tasks"][t]["acc_se"]) for t in tasks]
        row += [_pm(m["tasks"][t]["acc_norm"], m["tasks"][t]["acc_norm_se"]) for t in tasks]
        if len(tasks) > 1:
            row += [f"{m['mean_acc']:.3f}", f"{m['mean_acc_norm']:.3f}"]
        rows.append(row)
    chance = ["chance", "", "", "", "", ""] + [f"{results['chance'][t]:.3f}" for t in tasks] * 2
    if len(tasks) > 1:
        chance += [f"{results['mean_chance']:.3f}"] * 2
    return md_table(headers, rows + [chance])


def findings_text(results: dict) -> list[str]:
    f = results["findings"]
    focus = results["focus"]
    lines = []

    def describe(b: dict) -> str:
        kept = ("" if math.isnan(b["kept"]) else
                f", keeping {100 * b['kept']:.0f}% of the original's accuracy above chance")
        return (f"`{b['model']}` ({b['params'] / 1e6:.2f}M parameters): cross-entropy {b['cross_entropy']:.3f}, "
                f"mean acc_norm {b['mean_acc_norm']:.3f}{kept}")
    o = f["original"]
    lines.append(f"- The original ({o['params'] / 1e6:.2f}M parameters): cross-entropy {o['cross_entropy']:.3f}, "
                 f"mean acc_norm {o['mean_acc_norm']:.3f} (chance {results['mean_chance']:.3f}).")
    for key, what in (("pruned", f"Dropping {focus} blocks the paper's way"), ("naive", f"Dropping the last {focus}"),
                      ("healed", "After healing (paper's choice)"), ("naive_healed", "After healing (naive choice)")):
        if key in f:
            lines.append(f"- {what}: {describe(f[key])}.")
    for b in f["baselines"]:
        lines.append(f"- Trained from scratch: {describe(b)}.")
    reference = f.get("healed") or f.get("pruned")
    for b in f["baselines"]:
        if reference and b["params"] <= reference["params"]:
            verdict = "higher" if reference["cross_entropy"] > b["cross_entropy"] else "lower"
            lines.append(f"- The cross-entropy of `{reference['model']}` is {verdict} than that of `{b['model']}` "
                         f"({reference['cross_entropy']:.3f} vs {b['cross_entropy']:.3f}), {_size(reference, b)}; "
                         f"its mean acc_norm is {reference['mean_acc_norm']:.3f} vs {b['mean_acc_norm']:.3f}.")
    better_ce = [p for p in f["paper_vs_naive"] if p["paper_ce"] < p["naive_ce"]]
    same = [p for p in f["paper_vs_naive"] if p["paper_ce"] == p["naive_ce"]]
    lines.append(f"- The paper's choice gives a lower cross-entropy than dropping the last blocks for "
                 f"{len(better_ce)} of {len(f['paper_vs_naive'])} sizes"
                 + (f" (the same blocks for n = {', '.join(str(p['n']) for p in same)})" if same else "") + ".")
    return lines


def _size(model: dict, other: dict) -> str:
    ratio = model["params"] / other["params"]
    return "a model of the same size" if ratio < 1.05 else f"a model {ratio:.1f}x smaller"


def render_report(results: dict) -> str:
    n_layer = results["n_layer"]
    lines = [f"# Layer pruning: {results['run']}", "",
             f"The original has {n_layer} blocks. For each count n, the paper's choice drops the n consecutive "
             f"blocks whose input and output residual streams are closest in angle (averaged over every position "
             f"of the validation batches); the naive choice drops the last n. Every model is measured by "
             f"cross-entropy on the same held-out batches and by multiple-choice accuracy (each choice's "
             f"log-likelihood in context: `acc` picks the highest sum, `acc_norm` the highest per character). "
             f"± is one standard error (over batches for cross-entropy, binomial for accuracy). All numbers are "
             f"in `results.json`, every measurement in `samples.jsonl`, the questions in `tasks/`.", "",
             "## Models", "", model_table(results), "", "## Findings", ""]
    lines += findings_text(results)
    lines += ["", "![accuracy against cross-entropy](accuracy_vs_cross_entropy.png)", "",
              "![cross-entropy against parameters](cross_entropy_vs_parameters.png)", "",
              "## Which blocks", "",
              md_table(["n", "paper's choice", "naive choice"],
                       [[n, ",".join(map(str, c["paper"])), ",".join(map(str, c["naive"]))]
                        for n, c in results["choices"].items()]), "",
              "![angular distance](angular_distance.png)", "", "## Tasks", ""]
    for t in results["tasks"]:
        ex = t["example"]
        lines += [f"- **{t['name']}**: {t['description']}; {t['questions']} questions, chance {t['chance']:.3f}. "
                  f"Example: context ending `{ex['context'][-80:]!r}`, choices "
                  + ", ".join(f"`{c!r}`" for c in ex["choices"]) + f", answer {ex['answer']}."]
    return "\n".join(lines) + "\n"
