"""Sequence completion of procedurally made patterns, plain and with every symbol remapped
(after Mirchandani et al., 2023: models continue such patterns even in random tokens).

    repetition    a unit of 2-4 symbols repeated:            abcabcab -> cabcab
    alternation   runs of two symbols, each r long:          aabbaabbaa -> bbaabb
    counting      runs growing by one, each ended by |:      a|aa|aaa| -> aaaa|
    brackets      Dyck-2 words (a small context-free grammar: S -> (S)S | [S]S | empty) separated
                  by ';', then an open prefix of a new word; the target closes it: ([()][ -> ]);

The remapped version replaces each symbol of an instance by a distinct random symbol of the
alphabet (a new map per instance), so only the structure is left. A completion scores
`exact` when it starts with the whole target, and `symbols` is the share of target positions
it gets right. Greedy decoding (temperature 0).
"""
from __future__ import annotations

import string
from dataclasses import asdict, dataclass, field

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from ...errors import GlassError
from ..completer import Completer
from ..report import ReportDir, md_table
from .report import save_figure

TASKS = ("repetition", "alternation", "counting", "brackets")
VARIANTS = ("plain", "remapped")
DEFAULT_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Instance:
    task: str
    prompt: list[str]      # symbols
    target: list[str]


def repetition(rng: np.random.Generator) -> Instance:
    unit = list("abcd"[: int(rng.integers(2, 5))])
    rng.shuffle(unit)
    seq = unit * 8
    cut = int(rng.integers(2 * len(unit) + 1, 4 * len(unit)))
    return Instance("repetition", seq[:cut], seq[cut:cut + 6])


def alternation(rng: np.random.Generator) -> Instance:
    r = int(rng.integers(1, 4))
    seq = (["a"] * r + ["b"] * r) * 8
    cut = int(rng.integers(4 * r + 1, 6 * r + 1))
    return Instance("alternation", seq[:cut], seq[cut:cut + 6])


def counting(rng: np.random.Generator) -> Instance:
    n = int(rng.integers(3, 6))
    items = [["a"] * i + ["|"] for i in range(1, n + 2)]
    return Instance("counting", [s for item in items[:-1] for s in item], items[-1])


def dyck_word(rng: np.random.Generator, pairs: int) -> list[str]:
    """A uniformly shaped random Dyck-2 word with `pairs` bracket pairs."""
    if pairs == 0:
        return []
    inside = int(rng.integers(0, pairs))
    o, c = ("(", ")") if rng.random() < 0.5 else ("[", "]")
    return [o] + dyck_word(rng, inside) + [c] + dyck_word(rng, pairs - 1 - inside)


def brackets(rng: np.random.Generator) -> Instance:
    shown = [s for _ in range(3) for s in dyck_word(rng, int(rng.integers(2, 5))) + [";"]]
    word = dyck_word(rng, int(rng.integers(3, 6)))
    depth, open_at = [], []
    for i, s in enumerate(word):                 # positions after which some bracket is still open
        depth = depth + [s] if s in "([" else depth[:-1]
        if depth:
            open_at.append((i + 1, list(depth)))
    cut, stack = open_at[int(rng.integers(len(open_at)))]
    closers = [")" if s == "(" else "]" for s in reversed(stack)]
    return Instance("brackets", shown + word[:cut], closers + [";"])


MAKERS = {"repetition": repetition, "alternation": alternation, "counting": counting, "brackets": brackets}


def remap(instance: Instance, alphabet: str, rng: np.random.Generator) -> Instance:
    symbols = sorted(set(instance.prompt) | set(instance.target))
    if len(symbols) > len(alphabet):
        raise GlassError(f"the alphabet has {len(alphabet)} symbols, {instance.task} needs {len(symbols)}: "
                         f"give a longer --alphabet")
    new = rng.choice(list(alphabet), size=len(symbols), replace=False)
    table = dict(zip(symbols, new))
    return Instance(instance.task, [table[s] for s in instance.prompt], [table[s] for s in instance.target])


@dataclass
class PatternSettings:
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    instances: int = 20            # per task, variant and seed
    seeds: int = 3
    seed: int = 0
    alphabet: str | None = None    # remapping targets (default: the model's single characters, or letters+digits)
    separator: str = ""            # between symbols (" " suits a BPE model)

    def validate(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS] + [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.tasks or not self.variants:
            raise GlassError(f"unknown task/variant {', '.join(unknown)}: tasks are {', '.join(TASKS)}, "
                             f"variants {', '.join(VARIANTS)}")
        if self.instances < 1 or self.seeds < 1:
            raise GlassError("--instances and --seeds must be >= 1")
        if self.alphabet is not None and len(set(self.alphabet)) < 2:
            raise GlassError("the alphabet is empty: give --alphabet with at least a few distinct symbols")


def encodable(completer, symbols) -> bool:
    """Whether the completer's tokenizer can write these symbols (an endpoint: assume it can)."""
    tokenizer = getattr(completer, "tokenizer", None)
    if tokenizer is None:
        return True
    try:
        return all(tokenizer.encode(s) for s in symbols)
    except GlassError:
        return False


def default_alphabet(completer) -> str:
    """The model's own single visible characters, or letters and digits for an endpoint."""
    tokenizer = getattr(completer, "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "id_to_str"):
        return DEFAULT_ALPHABET
    chars = {tokenizer.id_to_str(i) for i in range(tokenizer.vocab_size)}
    return "".join(sorted(c for c in chars if len(c) == 1 and c.isprintable() and not c.isspace()))


def make_instances(settings: PatternSettings, alphabet: str) -> list[tuple[int, str, int, Instance]]:
    """(seed, variant, index, instance): plain and remapped share the underlying instance."""
    out = []
    for seed in range(settings.seeds):
        for t, task in enumerate(settings.tasks):
            for index in range(settings.instances):
                base = MAKERS[task](np.random.default_rng([settings.seed, seed, t, index]))
                for variant in settings.variants:
                    inst = base if variant == "plain" else remap(
                        base, alphabet, np.random.default_rng([settings.seed, seed, t, index, 1]))
                    out.append((seed, variant, index, inst))
    return out


def run_patterns(completer: Completer, out_dir, settings: PatternSettings | None = None,
                 progress: bool = True) -> dict:
    settings = settings or PatternSettings()
    settings.validate()
    alphabet = settings.alphabet or default_alphabet(completer)
    report = ReportDir(out_dir, {"experiment": "icl-patterns", "completer": completer.name, **asdict(settings),
                                 "alphabet_used": alphabet})
    done = {(r["seed"], r["task"], r["variant"], r["index"]) for r in report.samples}
    jobs = make_instances(settings, alphabet)
    todo = [j for j in jobs if (j[0], j[3].task, j[1], j[2]) not in done]
    sep = settings.separator
    skipped = sorted({inst.task for _, variant, _, inst in todo
                      if variant == "plain" and not encodable(completer, set(inst.prompt) | set(inst.target))})
    bar = tqdm(todo, desc="patterns", unit="completion", disable=not progress, initial=len(jobs) - len(todo),
               total=len(jobs))
    for seed, variant, index, inst in bar:
        if variant == "plain" and inst.task in skipped:
            continue
        target = sep.join(inst.target)
        out = completer.complete(sep.join(inst.prompt) + (sep if sep else ""), max_tokens=len(target) + 1,
                                 temperature=0.0, seed=0)
        text = out.text
        report.append({"seed": seed, "task": inst.task, "variant": variant, "index": index,
                       "prompt": sep.join(inst.prompt), "target": target, "completion": text,
                       "exact": text.startswith(target),
                       "symbols": sum(a == b for a, b in zip(text, target)) / len(target)})
    results = summarise_patterns(report.samples, settings, completer.name)
    results["alphabet"] = alphabet
    results["skipped_plain"] = skipped
    results["figure"] = plot_patterns(results, report.figure_path("patterns.png"))
    report.write_results(results)
    report.write_report(render_patterns(results, report.samples))
    return results


def summarise_patterns(samples: list[dict], settings: PatternSettings, name: str) -> dict:
    rows = []
    for task in settings.tasks:
        for variant in settings.variants:
            entry = {"task": task, "variant": variant}
            for measure in ("exact", "symbols"):
                per_seed = [float(np.mean([r[measure] for r in samples if r["task"] == task
                                           and r["variant"] == variant and r["seed"] == s]))
                            for s in range(settings.seeds)
                            if any(r["task"] == task and r["variant"] == variant and r["seed"] == s for r in samples)]
                entry[measure] = ({"mean": float(np.mean(per_seed)),
                                   "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
                                   "per_seed": per_seed} if per_seed else None)
            rows.append(entry)
    return {"completer": name, "settings": asdict(settings), "rows": rows}


def plot_patterns(results: dict, path) -> str:
    s = results["settings"]
    fig = Figure(figsize=(2.0 + 1.6 * len(s["tasks"]), 3.4))
    ax = fig.subplots()
    width = 0.8 / len(s["variants"])
    for j, variant in enumerate(s["variants"]):
        vals = [next(r for r in results["rows"] if r["task"] == t and r["variant"] == variant)["exact"]
                for t in s["tasks"]]
        xs = [i - 0.4 + (j + 0.5) * width for i in range(len(s["tasks"]))]
        ax.bar(xs, [v["mean"] if v else 0 for v in vals], width, yerr=[v["std"] if v else 0 for v in vals],
               label=variant, color=["tab:blue", "tab:orange"][j % 2])
    ax.set_xticks(range(len(s["tasks"])), s["tasks"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("exact completions")
    ax.legend(fontsize=8)
    ax.set_title(f"{results['completer']}: pattern completion (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def render_patterns(results: dict, samples: list[dict]) -> str:
    s = results["settings"]
    lines = [f"# Pattern completion: {results['completer']}", "",
             f"{s['instances']} instances per task, variant and seed; {s['seeds']} seeds; greedy decoding. "
             f"Remapped symbols are drawn from `{results['alphabet']}`. Every completion is in `samples.jsonl`.", ""]
    if results["skipped_plain"]:
        lines += [f"Plain variants skipped (symbols the model cannot write): {', '.join(results['skipped_plain'])}.",
                  ""]
    rows = [[r["task"], r["variant"]] + [f"{r[m]['mean']:.2f} ± {r[m]['std']:.2f}" if r[m] else "n/a"
                                         for m in ("exact", "symbols")] for r in results["rows"]]
    lines += [md_table(["task", "variant", "exact", "symbols right"], rows), "", f"![patterns]({results['figure']})",
              "", "## One instance of each", ""]
    for task in s["tasks"]:
        for variant in s["variants"]:
            r = next((x for x in samples if x["task"] == task and x["variant"] == variant), None)
            if r:
                lines.append(f"- {task}, {variant}: `{r['prompt']}` -> target `{r['target']}`, "
                             f"model `{r['completion']}`")
    return "\n".join(lines) + "\n"

