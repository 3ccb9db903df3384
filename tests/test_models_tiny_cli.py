"""`lmm-apa tiny-model OUT --arch ...` writes a folder load_backbone loads."""

import json

from typer.testing import CliRunner

from lmm_apa.cli import app
from lmm_apa.models.backbones import load_backbone


def test_tiny_model_command(tmp_path):
    out = tmp_path / "tiny"
    result = CliRunner().invoke(app, ["tiny-model", str(out), "--arch", "qwen2-audio", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    marker = json.loads((out / "lmm_apa_tiny.json").read_text())
    assert marker["arch"] == "qwen2-audio" and marker["seed"] == 3 and marker["random_weights"] is True
    b = load_backbone(out)
    assert b.arch == "qwen2-audio" and type(b.model).__name__ == "Qwen2AudioForConditionalGeneration"


def test_tiny_model_command_rejects_unknown_arch(tmp_path):
    result = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "x"), "--arch", "llama"])
    assert result.exit_code == 2
    assert "unknown backbone arch 'llama'" in result.output
