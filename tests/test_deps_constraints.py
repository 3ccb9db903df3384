"""Pinned, tested dependencies: pyproject.toml bounds every dependency, constraints.txt pins the
versions the suite passed with (what `make setup` installs), and never names torch."""

import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import freeze_constraints  # noqa: E402

INSTALLED_EXTRAS = ("test", "serve")  # what `make setup` installs


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in INSTALLED_EXTRAS:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_declared_dependency_is_pinned_within_its_bounds():
    pins, torch_family = _pins(), freeze_constraints.torch_closure()
    for req in _declared():
        name = canonicalize_name(req.name)
        if name in torch_family:
            continue
        assert name in pins, f"{req.name} is declared in pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (req.name, str(req.specifier), pins[name])


def test_majors_are_bounded():
    unbounded = [str(r) for r in _declared() if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert unbounded in ([], ["packaging>=23"]), unbounded


def test_torch_and_its_requirements_are_never_pinned():
    """A pin on torch, or on something torch requires, could make pip replace a user's CUDA torch."""
    pinned = set(_pins())
    assert "torch" in freeze_constraints.torch_closure() and "sympy" in freeze_constraints.torch_closure()
    assert not pinned & freeze_constraints.torch_closure()
    assert not any(n.startswith("nvidia-") for n in pinned) and "lmm-apa" not in pinned


@pytest.mark.parametrize("req", [r for r in _declared()], ids=lambda r: r.name)
def test_this_environment_runs_the_pinned_versions(req):
    """The suite runs on what constraints.txt says (else the file is stale: `make constraints`)."""
    pins = _pins()
    name = canonicalize_name(req.name)
    if name not in pins:
        pytest.skip(f"{req.name} is not pinned (torch family)")
    assert metadata.version(req.name) == pins[name], f"{req.name}: installed {metadata.version(req.name)}, constraints.txt {pins[name]}"

