"""Write ``constraints.txt``: the exact versions of this virtual environment, which ``make setup``
installs with (``pip install -c constraints.txt ...``), so a fresh install gets the versions the test
suite passed with instead of whatever the registry resolves that day.

Run it (``make constraints``) after the suite passed in the environment being recorded.

Left out, so that ``make setup`` never replaces a user's torch (a CUDA build, say): torch, its
companion wheels (torchvision, torchaudio, triton, nvidia-*) and every package torch itself requires,
with their own requirements (sympy, networkx, filelock, ...). A pin on one of those could make pip
pick another torch to satisfy it. Also left out: this project itself (installed editable).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "lmm-apa"
TORCH_FAMILY = ("torch", "torchvision", "torchaudio", "triton")
HEADER = """\
# Versions the test suite passed with; `make setup` installs with `pip install -c constraints.txt`.
# Written by scripts/freeze_constraints.py (`make constraints`) from the project's .venv: regenerate
# it after upgrading a dependency and re-running the suite. torch and what torch requires are left
# out on purpose (see the script): a user's torch build is never replaced.
"""


def _requirements_of(name: str) -> list[str]:
    """Names ``name`` requires unconditionally (extras' requirements skipped)."""
    try:
        lines = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return []
    return [Requirement(line).name for line in lines if "extra ==" not in line]


def torch_closure() -> set[str]:
    """The torch family and everything torch requires, transitively (canonical names)."""
    seen: set[str] = set()
    todo = list(TORCH_FAMILY)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_requirements_of(name))
    return seen


def pinned_distributions() -> dict[str, str]:
    """{project name: version} of every installed distribution but the torch closure and this project."""
    skip = torch_closure() | {canonicalize_name(n) for n in (PROJECT, "pip", "wheel")}
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        canonical = canonicalize_name(name)
        if canonical in skip or canonical.startswith("nvidia-") or re.search(r"\+", dist.version or ""):
            continue
        pins[name] = dist.version
    return dict(sorted(pins.items(), key=lambda kv: canonicalize_name(kv[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="constraints.txt")
    args = parser.parse_args()
    pins = pinned_distributions()
    Path(args.out).write_text(HEADER + "".join(f"{name}=={version}\n" for name, version in pins.items()))
    print(f"{args.out}: {len(pins)} pinned distributions")


if __name__ == "__main__":
    main()
