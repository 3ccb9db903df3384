"""The papers' tables as data: columns, rows, the published numbers, and what produces each of ours.

Why data: the runner (``reproduce.runner``) and the renderer (``reproduce.render``) are the same for
every table; a table only says which training runs (``Train``) and which evaluated models (``Eval``)
feed which cells, and what the paper printed there. The published numbers are copied from the
papers' tables as printed (a "-" in the paper is ``None``; "0.61 / -" is ``(0.61, None)``):

- Wang et al. 2025 (arXiv 2509.15701), Tables 1-3: Qwen2-Audio-7B-Instruct, Speechocean762 test;
- Ahn & Nam 2025 (arXiv 2509.02915), Table 3: Phi-4-multimodal-instruct, Speechocean762 test.

Rows the papers quote from other work (GOPT, HMamba, Azure PA) are ``Row(reference=True)``: shown
with their published numbers, never run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

QWEN = "Qwen/Qwen2-Audio-7B-Instruct"
PHI4 = "microsoft/Phi-4-multimodal-instruct"

Published = Union[None, float, tuple[Optional[float], Optional[float]]]


@dataclass(frozen=True)
class Column:
    """One column: ``metric`` is the path into ``metrics.json`` (``("sentence", "accuracy")`` or
    ``("mdd", "wer")``), ``figure`` what is shown: ``pcc/scc``, ``pcc``, ``rmse`` or ``value``."""

    key: str
    header: str
    metric: tuple[str, ...]
    figure: str = "pcc/scc"


@dataclass(frozen=True)
class Train:
    """One training run: a shipped config, optionally continuing another run's adapter."""

    name: str
    config: str
    init_from: Optional[str] = None  # name of the Train whose adapter is this run's init_adapter
    needs_private: bool = False  # Wang et al. 2025's private corpus (--private)


@dataclass(frozen=True)
class Eval:
    """One evaluated model = one ``metrics.json``: the test split predicted for ``tasks`` with the
    base model (``train`` None: zero-shot / no training) or a run's adapter (``adapter``: the final
    ``adapter`` or an ``adapter-epoch{N}``)."""

    name: str
    tasks: tuple[str, ...]
    train: Optional[str] = None
    adapter: str = "adapter"
    control_tokens: bool = True  # False: Ahn & Nam 2025's "no training" baseline prompts


@dataclass(frozen=True)
class Row:
    label: str
    published: dict[str, Published]
    sources: dict[str, str] = field(default_factory=dict)  # column key -> Eval name
    reference: bool = False  # quoted from other work: published numbers only
    note: str = ""
    extra: str = ""  # the text of the table's extra column (Ahn & Nam 2025: the epoch)


@dataclass(frozen=True)
class Table:
    name: str
    paper: str
    title: str
    model: str  # the backbone the paper used (the default of --model)
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    trains: tuple[Train, ...]
    evals: tuple[Eval, ...]
    marks_p: bool = False  # the paper marks PCCs with p >= 0.05 (Ahn & Nam 2025: underlined)
    first_header: str = "Model"
    extra_header: Optional[str] = None  # a text column after the first (Ahn & Nam 2025: epoch)

    def train(self, name: str) -> Train:
        return next(t for t in self.trains if t.name == name)

    def eval(self, name: str) -> Eval:
        return next(e for e in self.evals if e.name == name)


def _all(evaluated: str, columns) -> dict[str, str]:
    return {c.key: evaluated for c in columns}


def _row(label, columns, values, **kw) -> Row:
    """A row from its published values in column order."""
    return Row(label, dict(zip((c.key for c in columns), values)), **kw)


# --------------------------------------------------------------------------- Wang et al. 2025 Table 1
_T1_COLUMNS = (
    Column("phone.rmse", "Phone RMSE", ("phone", "accuracy"), "rmse"),
    Column("phone.accuracy", "Phone PCC/SCC", ("phone", "accuracy")),
    Column("word.accuracy", "Word Acc", ("word", "accuracy")),
    Column("word.stress", "Word Str", ("word", "stress")),
    Column("word.total", "Word Tot", ("word", "total")),
    Column("sentence.accuracy", "Utt Acc", ("sentence", "accuracy")),
    Column("sentence.fluency", "Utt Flu", ("sentence", "fluency")),
    Column("sentence.prosodic", "Utt Pro", ("sentence", "prosodic")),
    Column("sentence.completeness", "Utt Com", ("sentence", "completeness")),
    Column("sentence.total", "Utt Tot", ("sentence", "total")),
)
WANG2025_TABLE1 = Table(
    name="wang2025-table1", paper="Wang et al. 2025",
    title="Table 1: PCC and SCC results for multi-granularity and multi-aspect APA on the SO762 dataset",
    model=QWEN, columns=_T1_COLUMNS,
    rows=(
        _row("GOPT", _T1_COLUMNS, [0.29, (0.61, None), (0.53, None), (0.29, None), (0.55, None), (0.71, None),
                                   (0.75, None), (0.76, None), (0.16, None), (0.74, None)], reference=True),
        _row("HMamba", _T1_COLUMNS, [0.25, (0.74, None), (0.71, None), (0.37, None), (0.72, None), (0.81, None),
                                     (0.85, None), (0.84, None), (0.28, None), (0.83, None)], reference=True),
        _row("Azure PA", _T1_COLUMNS, [None, None, (0.62, 0.47), None, None, (0.70, 0.68), (0.72, 0.62),
                                       (0.84, 0.78), (0.26, 0.14), (0.78, 0.75)], reference=True),
        _row("FT", _T1_COLUMNS, [0.39, (0.38, 0.34), (0.51, 0.46), (0.11, 0.11), (0.52, 0.46), (0.69, 0.63),
                                 (0.74, 0.70), (0.73, 0.67), None, (0.72, 0.67)],
             sources=_all("ft", _T1_COLUMNS)),
        _row("SimPO", _T1_COLUMNS, [0.39, (0.38, 0.34), (0.52, 0.47), (0.08, 0.08), (0.53, 0.47), (0.68, 0.62),
                                    (0.73, 0.69), (0.73, 0.68), None, (0.72, 0.66)],
             sources=_all("simpo", _T1_COLUMNS)),
    ),
    trains=(Train("ft", "wang2025_ft"), Train("simpo", "wang2025_simpo", init_from="ft")),
    evals=(Eval("ft", ("full",), "ft"), Eval("simpo", ("full",), "simpo")),
)

# --------------------------------------------------------------------------- Wang et al. 2025 Table 2
_T2_COLUMNS = (
    Column("word.accuracy", "Word Acc", ("word", "accuracy"), "pcc"),
    Column("word.stress", "Word Str", ("word", "stress"), "pcc"),
    Column("word.total", "Word Tol", ("word", "total"), "pcc"),
    Column("sentence.accuracy", "Sentence Acc", ("sentence", "accuracy"), "pcc"),
    Column("sentence.fluency", "Sentence Flu", ("sentence", "fluency"), "pcc"),
    Column("sentence.prosodic", "Sentence Pro", ("sentence", "prosodic"), "pcc"),
    Column("sentence.total", "Sentence Tol", ("sentence", "total"), "pcc"),
)
WANG2025_TABLE2 = Table(
    name="wang2025-table2", paper="Wang et al. 2025",
    title="Table 2: PCC results for word- and sentence-level scoring on the SO762 test set",
    model=QWEN, columns=_T2_COLUMNS,
    rows=(
        _row("FT", _T2_COLUMNS, [0.57, -0.01, 0.58, 0.69, 0.74, 0.78, 0.72], sources=_all("ft", _T2_COLUMNS)),
        _row("SimPO", _T2_COLUMNS, [0.58, -0.01, 0.60, 0.69, 0.74, 0.73, 0.72], sources=_all("simpo", _T2_COLUMNS)),
        _row("FT + Private", _T2_COLUMNS, [0.63, 0.15, 0.64, 0.76, 0.80, 0.78, 0.78],
             sources=_all("ft-private", _T2_COLUMNS),
             note="needs Wang et al. 2025's private corpus (sentence and word scores): --private MANIFEST"),
    ),
    trains=(Train("ft", "wang2025_word_sentence"), Train("simpo", "wang2025_word_sentence_simpo", init_from="ft"),
            Train("ft-private", "wang2025_ft_private", needs_private=True)),
    evals=(Eval("ft", ("word-sentence",), "ft"), Eval("simpo", ("word-sentence",), "simpo"),
           Eval("ft-private", ("word-sentence",), "ft-private")),
)

# --------------------------------------------------------------------------- Wang et al. 2025 Table 3
SINGLE_TASKS = ("word-accuracy", "sentence-accuracy", "sentence-fluency", "sentence-prosodic", "sentence-total")
_T3_COLUMNS = (
    Column("word.accuracy", "Word Acc", ("word", "accuracy")),
    Column("sentence.accuracy", "Sentence Acc", ("sentence", "accuracy")),
    Column("sentence.fluency", "Sentence Flu", ("sentence", "fluency")),
    Column("sentence.prosodic", "Sentence Pro", ("sentence", "prosodic")),
    Column("sentence.total", "Sentence Tol", ("sentence", "total")),
)


def _per_task(prefix: str) -> dict[str, str]:
    """Table 3's cells come from five models, one per single task: column i <- ``prefix-task_i``."""
    return {c.key: f"{prefix}-{t}" for c, t in zip(_T3_COLUMNS, SINGLE_TASKS)}


def _config_name(task: str) -> str:
    return "wang2025_single_" + task.replace("-", "_")


WANG2025_TABLE3 = Table(
    name="wang2025-table3", paper="Wang et al. 2025",
    title="Table 3: PCC and SCC results for single-granularity and single-aspect APA tasks",
    model=QWEN, columns=_T3_COLUMNS,
    rows=(
        _row("GOPT", _T3_COLUMNS, [(0.61, None), (0.71, None), (0.75, None), (0.76, None), (0.74, None)], reference=True),
        _row("Azure PA", _T3_COLUMNS, [(0.62, 0.47), (0.70, 0.68), (0.72, 0.62), (0.84, 0.78), (0.78, 0.75)],
             reference=True),
        _row("Zero-Shot", _T3_COLUMNS, [(-0.03, -0.02), None, None, None, None], sources=_per_task("zero-shot"),
             note="the paper reports zero-shot for word accuracy only; ours covers all five tasks"),
        _row("FT", _T3_COLUMNS, [(0.62, 0.57), (0.74, 0.69), (0.79, 0.78), (0.77, 0.76), (0.77, 0.71)],
             sources=_per_task("ft")),
        _row("DPO", _T3_COLUMNS, [(0.60, 0.55), (0.76, 0.70), (0.79, 0.78), (0.78, 0.76), (0.76, 0.71)],
             sources=_per_task("dpo")),
    ),
    trains=tuple(Train(f"ft-{t}", _config_name(t)) for t in SINGLE_TASKS)
    + tuple(Train(f"dpo-{t}", _config_name(t) + "_dpo", init_from=f"ft-{t}") for t in SINGLE_TASKS),
    evals=tuple(Eval(f"zero-shot-{t}", (t,)) for t in SINGLE_TASKS)
    + tuple(Eval(f"ft-{t}", (t,), f"ft-{t}") for t in SINGLE_TASKS)
    + tuple(Eval(f"dpo-{t}", (t,), f"dpo-{t}") for t in SINGLE_TASKS),
)

# --------------------------------------------------------------------------- Ahn & Nam 2025 Table 3
_A3_COLUMNS = (
    Column("sentence.accuracy", "Accuracy", ("sentence", "accuracy"), "pcc"),
    Column("sentence.fluency", "Fluency", ("sentence", "fluency"), "pcc"),
    Column("sentence.prosodic", "Prosodic", ("sentence", "prosodic"), "pcc"),
    Column("sentence.total", "Total", ("sentence", "total"), "pcc"),
    Column("mdd.wer", "WER", ("mdd", "wer"), "value"),
    Column("mdd.per", "PER", ("mdd", "per"), "value"),
    Column("mdd.f1", "F1-score", ("mdd", "f1"), "value"),
    Column("mdd.precision", "Precision", ("mdd", "precision"), "value"),
    Column("mdd.recall", "Recall", ("mdd", "recall"), "value"),
)
_AHN_PUBLISHED = {
    ("LoRA", 1): [0.547, 0.585, 0.567, 0.544, 0.15, 0.137, 0.686, 0.689, 0.682],
    ("LoRA", 2): [0.637, 0.726, 0.709, 0.662, 0.139, 0.118, 0.722, 0.725, 0.719],
    ("LoRA", 3): [0.656, 0.727, 0.711, 0.675, 0.14, 0.114, 0.724, 0.728, 0.721],
    ("LoRA", 4): [0.645, 0.733, 0.714, 0.668, 0.148, 0.121, 0.721, 0.723, 0.72],
    ("Unfreeze", 1): [0.535, 0.559, 0.564, 0.55, 0.159, 0.199, 0.575, 0.579, 0.57],
    ("Unfreeze", 2): [0.624, 0.668, 0.653, 0.634, 0.145, 0.154, 0.651, 0.651, 0.651],
    ("Unfreeze", 3): [0.621, 0.669, 0.655, 0.637, 0.148, 0.15, 0.663, 0.665, 0.662],
    ("Unfreeze", 4): [0.743, 0.717, 0.704, 0.666, 0.142, 0.142, 0.667, 0.671, 0.663],
}
EPOCHS = (1, 2, 3, 4)
AHN2025_TABLE3 = Table(
    name="ahn2025-table3", paper="Ahn & Nam 2025",
    title="Table 3: Training Results (APA task: PCC; MDD task metrics)",
    model=PHI4, columns=_A3_COLUMNS, marks_p=True, first_header="Training speech layers", extra_header="epoch",
    rows=(
        _row("no training", _A3_COLUMNS, [-0.041, -0.017, -0.0493, -0.104, 0.97, 0.792, 0.143, 0.154, 0.134],
             sources=_all("no-training", _A3_COLUMNS), extra="0",
             note="the base model, prompted without the <|APA|> / <|MDD|> control tokens"),
    ) + tuple(
        _row(method, _A3_COLUMNS, _AHN_PUBLISHED[(method, epoch)],
             sources=_all(f"{method.lower()}-epoch{epoch}", _A3_COLUMNS), extra=str(epoch))
        for method in ("LoRA", "Unfreeze") for epoch in EPOCHS
    ),
    trains=(Train("lora", "ahn2025_lora"), Train("unfreeze", "ahn2025_unfreeze")),
    evals=(Eval("no-training", ("apa", "mdd"), control_tokens=False),)
    + tuple(Eval(f"{m}-epoch{e}", ("apa", "mdd"), m, adapter=f"adapter-epoch{e}")
            for m in ("lora", "unfreeze") for e in EPOCHS),
)

TABLES: dict[str, Table] = {t.name: t for t in (WANG2025_TABLE1, WANG2025_TABLE2, WANG2025_TABLE3, AHN2025_TABLE3)}


def get_table(name: str) -> Table:
    """The table called ``name``; ValueError listing the names otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; the tables are: {', '.join(TABLES)}") from None
