"""Fixtures for the synth area and the learning proofs (see conftest.py).

The default synthetic corpus is written once per session for the synth tests; the learning proofs
share the demo's corpus, written once per session too. Each learning recipe
(``lmm_apa.demo.RECIPES``: ``demo``, ``full``, ``phi4-apa``) trains ONCE per session through ``run_demo`` itself -- the demo's own code: training
(``train_from_config``), template-constrained + expected-score decoding of the held-out split
(``predict_corpus``), metrics (``evaluate_predictions``) and the audio control (the same trained
model on its held-out readings with the audio silenced) -- however many tests read its results.

Why the recipes run side by side in subprocesses (one torch thread each, niced), all started at the
session's first test while the tests that read them run last: the tiny models' matrices are too
small for two threads to help much, so single-thread runs side by side finish far sooner than the
same runs one after the other, and the rest of the suite runs while they train (the suite's time
goal). Only the recipes the selected tests need are run (``recipes_needed_by`` over the session's
final test list). Their shared corpus is written by a process of its own, so the test process goes
straight on and the runs import and warm up meanwhile. The seed sweep of the same recipes is
``benchmarks/bench_learning.py``; the suite runs one seed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

SYNTH_N = 300
SYNTH_SEED = 0
LEARN_SEED = 0  # the suite's one seed; benchmarks/bench_learning.py shows the recipes on others
RECIPE_FIXTURES = {"demo_learning": "demo", "full_learning": "full", "phi4_learning": "phi4-apa"}

# One recipe run in its own process: niced first, so it takes the CPU the test process leaves idle
# (timing-sensitive tests, e.g. the service's deadlines, keep their margins while the recipes train).
# It imports what training needs and warms the lexicon and the tiny tokenizer's training text while
# the corpus writer (below) is still at work, then waits for the corpus' ``ready`` marker; it gives up
# on a ``failed`` marker, or when the test process that started it is gone (killed, say).
_WORKER = """
import os
if hasattr(os, "nice"):
    os.nice(10)
import json, sys, time, torch
from pathlib import Path
torch.set_num_threads(1)
recipe, out, corpus, seed, ready = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
parent = os.getppid()
from lmm_apa.demo import run_demo
import lmm_apa.train.run, lmm_apa.infer.predict, lmm_apa.models.tiny, lmm_apa.data.synth
from lmm_apa.models.tiny_tokenizer import training_corpus
lmm_apa.data.synth.lexicon(), training_corpus(seed=seed)  # the tiny model's tokenizer is trained with the run's seed
failed = ready.with_name("failed")
while not ready.exists():
    if failed.exists():
        sys.exit("the learning corpus was not written: " + failed.read_text())
    if os.getppid() != parent:
        sys.exit("the test process that started this run is gone")
    time.sleep(0.2)
result = run_demo(out, seed=seed, corpus=corpus, recipe=recipe)
print("RESULT " + json.dumps(result))
"""

# The recipes' shared corpus, written in its own process (niced, like the runs) so that the test
# process goes straight on to the other tests; ``ready`` (or ``failed``, with the error) marks the end.
# Each marker is written under another name and then renamed, so a reader never sees half of one.
_CORPUS_WRITER = """
import os, sys, traceback
from pathlib import Path
if hasattr(os, "nice"):
    os.nice(10)
out, n, seed, test_fraction, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5])

def mark(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

try:
    from lmm_apa.data.synth import write_synthetic_corpus
    write_synthetic_corpus(out, n_utterances=n, seed=seed, test_fraction=test_fraction)
    mark(ready, "ok")
except BaseException:
    mark(ready.with_name("failed"), traceback.format_exc())
    raise
"""


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """The default synthetic corpus (300 utterances, seed 0: 240 train / 60 test), with the writer's
    summary (incl. its wall time) in ``summary.json`` next to it."""
    from lmm_apa.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp("synth") / "corpus"
    t0 = time.perf_counter()
    summary = write_synthetic_corpus(out, n_utterances=SYNTH_N, seed=SYNTH_SEED)
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    (out.parent / "summary.json").write_text(json.dumps(summary, indent=2))
    return out


def recipes_needed_by(item) -> set[str]:
    """The learning recipes a collected test reads (through its fixtures)."""
    names = getattr(item, "fixturenames", ())
    return {recipe for name, recipe in RECIPE_FIXTURES.items() if name in names}


def session_recipes(session) -> set[str]:
    """The recipes the session's selected tests read (after -k / -m / --lf have deselected theirs)."""
    return set().union(*(recipes_needed_by(item) for item in session.items))


class LearningRuns:
    """The session's recipe runs: started together, each awaited when a test first needs it."""

    def __init__(self, root: Path, recipes: set[str]):
        from lmm_apa.demo import DEMO_UTTERANCES, TEST_FRACTION

        self.procs: dict = {}
        self.writer = None
        self.writer_failure: str | None = None
        self.results: dict[str, dict] = {}
        self.corpus, self.ready = root / "corpus", root / "corpus-markers" / "ready"
        self.ready.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.writer = self._start("corpus", _CORPUS_WRITER,
                                      [self.corpus, DEMO_UTTERANCES, LEARN_SEED, TEST_FRACTION, self.ready], root)
            for recipe in sorted(recipes):
                out = root / recipe
                out.mkdir(parents=True, exist_ok=True)
                self.procs[recipe] = self._start(recipe, _WORKER, [recipe, out, self.corpus, LEARN_SEED, self.ready], root)
        except BaseException:
            self.stop()  # no run is left training for a session that could not start them all
            raise

    def get(self, recipe: str) -> dict:
        if recipe not in self.results:
            proc, log = self.procs[recipe]
            self._wait(proc)
            log.close()
            text = Path(log.name).read_text()
            lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                tail = text.splitlines()[-15:]
                pytest.fail(f"learning recipe {recipe} failed (exit {proc.returncode}):\n" + "\n".join(tail))
            result = json.loads(lines[-1][len("RESULT "):])
            result["metrics_json"] = json.loads(Path(result["metrics"]).read_text())
            self.results[recipe] = result
        return self.results[recipe]

    def _wait(self, proc) -> None:
        """Wait for one run. A corpus writer that died without leaving a marker (killed, say) would
        leave the runs polling for ever: then they are all stopped, and this and every later ``get``
        fails with the writer's log (the cause, not the runs' exit)."""
        writer, writer_log = self.writer
        while self.writer_failure is None and proc.poll() is None:
            if writer.poll() not in (None, 0) and not self.ready.exists():
                tail = Path(writer_log.name).read_text().splitlines()[-15:]
                self.writer_failure = (f"the learning recipes' corpus writer failed (exit {writer.returncode}):\n"
                                       + "\n".join(tail))
                self.stop()
            else:
                time.sleep(0.5)
        if self.writer_failure is not None:
            pytest.fail(self.writer_failure)

    @staticmethod
    def _start(name: str, script: str, args: list, root: Path):
        """One process running ``script``; its stdout and stderr go to ``root/name.log`` (a pipe could fill)."""
        log = open(root / f"{name}.log", "w")
        try:
            proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                                    stdout=log, stderr=subprocess.STDOUT, text=True)
        except BaseException:
            log.close()
            raise
        return proc, log

    def stop(self) -> None:
        for proc, log in [*([self.writer] if self.writer else []), *self.procs.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


@pytest.fixture(scope="session")
def learning_runs(request, tmp_path_factory):
    """The runs of the recipes the session's selected tests read (``session_recipes``), on the demo's
    corpus (``DEMO_UTTERANCES`` readings, seed ``LEARN_SEED``), which all of them share."""
    runs = LearningRuns(tmp_path_factory.mktemp("learning"), session_recipes(request.session))
    yield runs
    runs.stop()


@pytest.fixture(scope="session", autouse=True)
def start_learning_runs_early(request):
    """Start the needed recipes' training at the session's first test, not at the first learning
    test (which runs last, see conftest.py): the other tests run meanwhile. The runs are niced, so
    they take the CPU the other tests leave idle rather than slowing them down. A failure to start
    is left to the learning tests, which meet it when they ask for ``learning_runs``: every other
    test goes on."""
    if not session_recipes(request.session):
        return
    try:
        request.getfixturevalue("learning_runs")
    except Exception:  # noqa: BLE001 - the learning tests report it (pytest caches a fixture's error)
        pass


def show(name: str, run: dict) -> str:
    """One line of figures for the test log (pytest -s)."""
    acc, sil = run["accuracy_pcc"], run["silenced_accuracy_pcc"] or {}
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"\n{name}: held-out accuracy PCC (expected score) sentence {fmt(acc['sentence'])}, word "
            f"{fmt(acc['word'])}, phone {fmt(acc['phone'])}; argmax sentence "
            f"{fmt(run['sentence_accuracy_pcc']['argmax'])}; audio silenced: sentence {fmt(sil.get('sentence'))}, "
            f"phone {fmt(sil.get('phone'))}; {run['steps']} steps, {run['timings']['wall_s']} s")


@pytest.fixture(scope="session")
def demo_learning(learning_runs) -> dict:
    """The demo's recipe: tiny Qwen2-Audio, ``tiny_demo``, sentence-accuracy task."""
    return learning_runs.get("demo")


@pytest.fixture(scope="session")
def full_learning(learning_runs) -> dict:
    """Tiny Qwen2-Audio on Wang et al. 2025's `full` task (sentence, word and phone scores)."""
    return learning_runs.get("full")


@pytest.fixture(scope="session")
def phi4_learning(learning_runs) -> dict:
    """Tiny Phi-4-multimodal on Ahn & Nam 2025's `apa` task."""
    return learning_runs.get("phi4-apa")
