"""Fixtures for the models area (see conftest.py): the tiny random backbones every test uses, built
once per test session with ``lmm_apa.models.tiny.save_tiny_model`` and loaded by path with
``lmm_apa.models.backbones.load_backbone`` (a fresh load per test is cheap: well under a second)."""

import pytest


@pytest.fixture(scope="session")
def tiny_qwen2_audio(tmp_path_factory):
    """Path of a saved tiny Qwen2-Audio-architecture model (processor, tokenizer, chat template)."""
    from lmm_apa.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2-audio", arch="qwen2-audio", seed=0)


@pytest.fixture(scope="session")
def tiny_phi4_mm(tmp_path_factory):
    """Path of a saved tiny Phi-4-multimodal-architecture model (with its random speech-lora/)."""
    from lmm_apa.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-phi4-mm", arch="phi4-mm", seed=0)
