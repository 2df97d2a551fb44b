"""The ICL report: accuracy and p(answer) against k for every example length, gold against
random labels, beside chance and the exact references; for a glassgpt model, the attention
of a few-shot prompt; a place for head-role scores.

Figures are drawn on matplotlib.figure.Figure (no pyplot, no global backend switch).
"""
from __future__ import annotations

from matplotlib.figure import Figure

from ...fileio import atomic_path
from ..report import ReportDir, md_table
from .ginc import Ginc
from .runner import cell

LABEL_STYLE = {"gold": "-", "random": "--"}


def save_figure(fig: Figure, path) -> str:
    """Write a PNG in one step (a crash leaves the previous file), return its name."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path.name


def head_role_scores(model, prompt_texts: list[str]) -> dict | None:
    """Previous-token, duplicate-token and induction scores of every head (`glassgpt.inspect.head_roles`),
    on repeated random sequences of the symbols the few-shot prompts use:
    {"roles": [...], "scores": {role: [[score per head] per layer]}}; None where they cannot be measured."""
    from ...errors import GlassError
    from ...inspect.heads import head_roles

    symbols = sorted({i for text in prompt_texts for i in model.tokenizer.encode(text)})
    try:
        roles = head_roles(model, tokens=symbols, batch=8, seed=0)
    except GlassError:
        return None                                   # too few symbols or too short a context
    return {"roles": list(roles.scores), "scores": {role: s.tolist() for role, s in roles.scores.items()},
            "settings": roles.settings}


def render_icl_report(report: ReportDir, results: dict, completer, ginc: Ginc) -> dict:
    figures = {"accuracy": plot_accuracy(results, report.figure_path("accuracy_vs_k.png")),
               "lengths": plot_lengths(results, report.figure_path("accuracy_by_length.png"))}
    model = getattr(completer, "model", None) if completer is not None else None
    results["head_roles"] = None
    if model is not None:
        results["pretraining_fit"] = pretraining_fit(model, ginc)
    if model is not None and results.get("example_prompt"):
        figures["attention"] = attention_picture(model, results["example_prompt"], report)
        results["head_roles"] = head_role_scores(model, [results["example_prompt"]])
    results["figures"] = {k: v for k, v in figures.items() if v}
    report.write_results(results)
    report.write_report(render_markdown(results))
    return results


def _k_axis(ax, ks: list[int]) -> None:
    """k on a symmetric-log axis: 0 shows, and 1, 2, 4 ... 32 are evenly spaced."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlim(min(ks) - 0.15, max(ks) * 1.1 + 0.15)
    ax.set_xlabel("examples in the prompt (k)")


def plot_accuracy(results: dict, path) -> str:
    """Per example length: model accuracy (gold, random labels) with ± std over seeds, the exact
    references and chance; below it the model's mean p(answer)."""
    s = results["settings"]
    lengths, ks = s["lengths"], s["ks"]
    fig = Figure(figsize=(3.6 * len(lengths), 6.4))
    axes = fig.subplots(2, len(lengths), squeeze=False)
    for j, length in enumerate(lengths):
        top, bottom = axes[0][j], axes[1][j]
        for labels in s["labels"]:
            style = LABEL_STYLE[labels]
            for ax, measure, colour in ((top, "accuracy", "tab:blue"), (bottom, "p_answer", "tab:blue")):
                _curve(ax, results, labels, length, ks, measure, colour, style, f"model, {labels} labels")
            _curve(top, results, labels, length, ks, "bayes", "tab:orange", style,
                   f"Bayes, {'examples' if labels == 'gold' else 'inputs only'}", band=False)
            _curve(bottom, results, labels, length, ks, "bayes_p", "tab:orange", style, None, band=False)
        if "gold" in s["labels"]:
            _curve(top, results, "gold", length, ks, "concept_known", "tab:green", ":", "concept known", band=False)
        for ax in (top, bottom):
            ax.axhline(results["chance"], color="gray", lw=0.8, ls=":", label="chance")
            _k_axis(ax, ks)
            ax.set_ylim(0, 1)
        top.set_title(f"examples of length {length}", fontsize=10)
        if j == 0:
            top.set_ylabel("accuracy of the next symbol")
            bottom.set_ylabel("p(right answer)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{results['completer']}: in-context accuracy (model: mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _curve(ax, results, labels, length, ks, measure, colour, style, label, band: bool = True) -> None:
    cells = [cell(results, labels, length, k) for k in ks]
    points = [(k, c[measure]) for k, c in zip(ks, cells) if c and c.get(measure)]
    if not points:
        return
    x = [k for k, _ in points]
    mean = [v["mean"] for _, v in points]
    ax.plot(x, mean, ls=style, marker="o", ms=3, color=colour, label=label)
    if band:
        std = [v["std"] for _, v in points]
        ax.fill_between(x, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                        color=colour, alpha=0.15)


def plot_lengths(results: dict, path) -> str:
    """The paper's view: accuracy against k, one line per example length (gold labels), and
    zero-shot against the largest k per length."""
    s = results["settings"]
    ks, lengths = s["ks"], s["lengths"]
    labels = "gold" if "gold" in s["labels"] else s["labels"][0]
    fig = Figure(figsize=(9, 3.6))
    left, right = fig.subplots(1, 2)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, length in enumerate(lengths):
        c = colours[i % len(colours)]
        _curve(left, results, labels, length, ks, "accuracy", c, "-", f"length {length}")
    left.axhline(results["chance"], color="gray", lw=0.8, ls=":", label="chance")
    _k_axis(left, ks)
    left.set_ylim(0, 1)
    left.set_ylabel("accuracy")
    left.legend(fontsize=7)
    left.set_title(f"model, {labels} labels", fontsize=10)
    bars = [(min(ks), labels)] + [(max(ks), lab) for lab in s["labels"]]     # k = 0 is the same prompt for both
    width = 0.8 / len(bars)
    for j, (k, lab) in enumerate(bars):
        vals = [(cell(results, lab, n, k) or {}).get("accuracy") for n in lengths]
        xs = [i - 0.4 + (j + 0.5) * width for i in range(len(lengths))]
        right.bar(xs, [v["mean"] if v else 0 for v in vals], width, yerr=[v["std"] if v else 0 for v in vals],
                  alpha=0.85, label=f"k = {k}" + (f", {lab} labels" if k else ""),
                  color=["tab:gray", "tab:blue", "tab:cyan"][j % 3])
    right.axhline(results["chance"], color="gray", lw=0.8, ls=":")
    right.set_xticks(range(len(lengths)), [f"length {n}" for n in lengths])
    right.set_ylim(0, 1)
    right.legend(fontsize=7)
    right.set_title("zero-shot against the most examples", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def pretraining_fit(model, ginc: Ginc, documents: int = 16, seed: int = 12345) -> dict:
    """The model's loss on fresh documents of the mixture (each as long as the context allows),
    beside the exact mixture's and the concept-known loss on the same documents (nats/symbol)."""
    import torch

    from ...inspect.trace import evaluating
    from .ginc import DOCUMENT_SEPARATOR

    docs = ginc.documents(n=documents, length=model.config.context_length - 1, seed=seed)
    total, n = 0.0, 0
    with torch.no_grad(), evaluating(model):
        for _, text in docs:
            ids = model.tokenizer.encode(DOCUMENT_SEPARATOR + text)
            x = torch.tensor([ids[:-1]], device=model.device)
            y = torch.tensor([ids[1:]], device=model.device)
            total += model(x, y).loss.item() * len(ids[1:])
            n += len(ids) - 1
    exact = ginc.document_loss(docs)
    return {"model": total / n, "mixture": exact["mixture"], "concept_known": exact["concept_known"],
            "documents": documents, "symbols": n}


def attention_picture(model, text: str, report: ReportDir) -> dict | None:
    """Every layer and head's attention on one few-shot prompt (glassgpt.inspect's plots), and
    the head whose last position (where the answer is predicted) puts the most weight on the
    examples, drawn with its tokens. "On the examples" counts the symbols and delimiters of the
    earlier examples: not the document separator at position 0 (a resting place for attention)
    nor the delimiter that opens the test input."""
    from ...inspect.plots import attention_grid, attention_heatmap
    from .ginc import DELIMITER

    trace = model.trace(text)
    if trace.attention is None:
        return None
    attention = trace.attention.numpy()                                  # (L, H, T, T)
    grid = report.figure_path("attention_few_shot.png")
    attention_grid(attention, trace.tokens, grid)
    last_delimiter = text.rfind(DELIMITER)                               # chars = tokens for a char model
    if len(trace.tokens) != len(text) or last_delimiter <= 1:
        return {"grid": grid.name}
    on_examples = attention[:, :, -1, 1:last_delimiter].sum(-1)          # (L, H)
    layer, head = (int(i) for i in divmod(int(on_examples.argmax()), on_examples.shape[1]))
    one = report.figure_path("attention_reading_examples.png")
    attention_heatmap(attention[layer, head], trace.tokens, one,
                      title=f"layer {layer} head {head}: {on_examples[layer, head]:.2f} of the last position's "
                            f"attention on the earlier examples")
    return {"grid": grid.name, "head": one.name, "layer": layer, "head_index": head,
            "on_examples": float(on_examples[layer, head]),
            "on_examples_per_head": on_examples.round(3).tolist()}


def render_markdown(results: dict) -> str:
    s, g = results["settings"], results["ginc"]
    ks, lengths = s["ks"], s["lengths"]
    lines = [f"# In-context learning as inference: {results['completer']}", "",
             f"GINC-style mixture: {g['concepts']} concepts (HMMs), {g['entities']} entities x {g['properties']} "
             f"properties (property 0 = the delimiter `/`), {g['vocab']} symbols of which "
             f"{len(results['label_space'])} are shown by some state (the label space; chance = "
             f"{results['chance']:.3f}); permutation sharpness {g['sharpness']:g}, entity stay "
             f"{g['entity_stay']:g}, mixture seed {g['seed']}.", "",
             f"Each prompt: k examples of one concept, `x1 y1/x2 y2/.../x_test`, the model's top next symbol "
             f"scored against y_test. {s['prompts']} test examples per seed and length, {s['seeds']} seeds; the "
             f"examples are nested across k and the inputs shared between gold and random labels. Every answer is "
             f"in `samples.jsonl`, every number in `results.json`.", "",
             "References, computed exactly from the mixture: *concept known* = argmax p(y | x_test, true concept) "
             "(the ceiling); *Bayes* = argmax of the posterior predictive given the examples (with random labels: "
             "given their inputs only, as a learner that reads the format and inputs but ignores the labels).", "",
             "![accuracy against k](accuracy_vs_k.png)", "", "![accuracy by example length](accuracy_by_length.png)",
             "", "## Accuracy against k (model: mean ± std over seeds)", ""]
    for labels in s["labels"]:
        rows = []
        for length in lengths:
            row = [f"{length}"]
            for k in ks:
                c = cell(results, labels, length, k)
                acc = c and c.get("accuracy")
                row.append(f"{acc['mean']:.2f} ± {acc['std']:.2f}" if acc else "n/a")
            rows.append(row)
        lines += [f"### {labels} labels", "", md_table(["length \\ k"] + [str(k) for k in ks], rows), ""]
    lines += ["## References and p(answer) (means over seeds)", ""]
    rows = []
    for labels in s["labels"]:
        for length in lengths:
            for k in (min(ks), max(ks)):
                c = cell(results, labels, length, k) or {}
                measures = ("accuracy", "p_answer", "bayes", "concept_known", "posterior_true")
                rows.append([labels, length, k] + [_mean(c.get(m)) for m in measures])
    lines += [md_table(["labels", "length", "k", "model acc", "model p(answer)", "Bayes acc", "concept-known acc",
                        "Bayes p(true concept)"], rows), "", "## Trends", ""]
    lines += trend_lines(results)
    fit = results.get("pretraining_fit")
    if fit:
        lines += ["", f"Loss on {fit['documents']} fresh pretraining documents ({fit['symbols']} symbols): model "
                  f"{fit['model']:.3f} nats/symbol; the exact mixture (inferring the concept as it reads) "
                  f"{fit['mixture']:.3f}; with the concept known {fit['concept_known']:.3f}."]
    lines += ["", "## Inside the model", ""]
    figs = results.get("figures", {})
    att = figs.get("attention")
    if att:
        lines += ["Attention of every layer (rows) and head (columns) on the few-shot prompt below "
                  "(query positions down, key positions across):", "", f"![attention]({att['grid']})", ""]
    if att and "head" in att:
        lines += ["Share of the last position's attention (where the answer is predicted) on the examples, "
                  "per layer (rows) and head (columns) (the rest goes to the test input, its opening `/` and the "
                  "separator at position 0):", "",
                  md_table(["layer"] + [f"head {h}" for h in range(len(att["on_examples_per_head"][0]))],
                           [[str(i)] + [float(v) for v in row] for i, row in enumerate(att["on_examples_per_head"])]),
                  "", f"![the head reading the examples most]({att['head']})", ""]
    roles = results.get("head_roles")
    if roles:
        lines += ["Head-role scores (`glassgpt.inspect.head_roles`: attention where each role says, on repeated "
                  "random sequences of the prompt's symbols):", ""]
        for role, per_layer in roles["scores"].items():
            lines.append(md_table(["layer"] + [f"head {h}" for h in range(len(per_layer[0]))],
                                  [[str(i)] + list(map(float, r)) for i, r in enumerate(per_layer)]))
            lines += ["", f"({role})", ""]
    else:
        lines += ["Head-role scores: not measured (the prompts use too few symbols for the context).", ""]
    lines += [f"## The prompt of the attention picture (k = {results.get('example_k')})", "",
              "```", results.get("example_prompt", ""), "```"]
    return "\n".join(lines) + "\n"


def _mean(v) -> float:
    return v["mean"] if v else float("nan")


def trend_lines(results: dict) -> list[str]:
    """Measured statements: does accuracy grow with k, with length; do random labels hurt."""
    s = results["settings"]
    ks, lengths = s["ks"], s["lengths"]
    lines = []
    for labels in s["labels"]:
        for length in lengths:
            first, last = cell(results, labels, length, min(ks)), cell(results, labels, length, max(ks))
            if first and last and first["accuracy"] and last["accuracy"]:
                a, b = first["accuracy"], last["accuracy"]
                lines.append(f"- {labels} labels, length {length}: accuracy {a['mean']:.2f} ± {a['sem']:.2f} at "
                             f"k = {min(ks)} -> {b['mean']:.2f} ± {b['sem']:.2f} at k = {max(ks)} (± standard "
                             f"error over seeds).")
    if "gold" in s["labels"] and "random" in s["labels"]:
        for length in lengths:
            diffs = []
            for k in ks:
                g, r = cell(results, "gold", length, k), cell(results, "random", length, k)
                if k and g and r and g["accuracy"] and r["accuracy"]:
                    diffs.append(g["accuracy"]["mean"] - r["accuracy"]["mean"])
            if diffs:
                lines.append(f"- length {length}: gold minus random labels, averaged over k > 0: "
                             f"{sum(diffs) / len(diffs):+.2f}.")
    return lines
