"""LMM-APA: fine-tune audio-language models for automatic pronunciation assessment (APA) and
mispronunciation detection and diagnosis (MDD). Pipeline, data flowing one way:
data -> prompts -> models -> train -> infer -> evaluate -> serve; ``cli`` on top."""

__version__ = "0.1.0"
