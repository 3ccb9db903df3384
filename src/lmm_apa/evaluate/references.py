"""Published SO762-test figures printed beside a run (Wang et al. 2025 Tables 1-3, Ahn & Nam 2025 Tables
3-4). Values are (PCC, SCC); SCC is None where the paper gives PCC only. Nothing here is computed.
"""

from __future__ import annotations

# columns of Wang et al. 2025's Table 1 ("level.aspect"), plus phone RMSE on the 0-2 scale
SCORE_COLUMNS = ("phone.accuracy", "word.accuracy", "word.stress", "word.total", "sentence.accuracy",
                 "sentence.fluency", "sentence.prosodic", "sentence.completeness", "sentence.total")


def _row(system: str, source: str, phone_rmse=None, **cols) -> dict:
    values = {k.replace("__", "."): (v if isinstance(v, tuple) else (v, None)) for k, v in cols.items()}
    return {"system": system, "source": source, "phone_rmse": phone_rmse, "values": values}


SCORE_ROWS = [
    _row("GOPT", "Wang et al. 2025 Table 1", 0.29, phone__accuracy=0.61, word__accuracy=0.53, word__stress=0.29,
         word__total=0.55, sentence__accuracy=0.71, sentence__fluency=0.75, sentence__prosodic=0.76,
         sentence__completeness=0.16, sentence__total=0.74),
    _row("HMamba", "Wang et al. 2025 Table 1", 0.25, phone__accuracy=0.74, word__accuracy=0.71, word__stress=0.37,
         word__total=0.72, sentence__accuracy=0.81, sentence__fluency=0.85, sentence__prosodic=0.84,
         sentence__completeness=0.28, sentence__total=0.83),
    _row("Azure PA", "Wang et al. 2025 Table 1", None, word__accuracy=(0.62, 0.47), sentence__accuracy=(0.70, 0.68),
         sentence__fluency=(0.72, 0.62), sentence__prosodic=(0.84, 0.78), sentence__completeness=(0.26, 0.14),
         sentence__total=(0.78, 0.75)),
    _row("Wang et al. 2025 FT (multi)", "Wang et al. 2025 Table 1", 0.39, phone__accuracy=(0.38, 0.34), word__accuracy=(0.51, 0.46),
         word__stress=(0.11, 0.11), word__total=(0.52, 0.46), sentence__accuracy=(0.69, 0.63),
         sentence__fluency=(0.74, 0.70), sentence__prosodic=(0.73, 0.67), sentence__total=(0.72, 0.67)),
    _row("Wang et al. 2025 SimPO (multi)", "Wang et al. 2025 Table 1", 0.39, phone__accuracy=(0.38, 0.34), word__accuracy=(0.52, 0.47),
         word__stress=(0.08, 0.08), word__total=(0.53, 0.47), sentence__accuracy=(0.68, 0.62),
         sentence__fluency=(0.73, 0.69), sentence__prosodic=(0.73, 0.68), sentence__total=(0.72, 0.66)),
    _row("Wang et al. 2025 FT (word + sentence)", "Wang et al. 2025 Table 2", None, word__accuracy=0.57, word__stress=-0.01,
         word__total=0.58, sentence__accuracy=0.69, sentence__fluency=0.74, sentence__prosodic=0.78,
         sentence__total=0.72),
    _row("Wang et al. 2025 FT + Private (word + sentence)", "Wang et al. 2025 Table 2", None, word__accuracy=0.63, word__stress=0.15,
         word__total=0.64, sentence__accuracy=0.76, sentence__fluency=0.80, sentence__prosodic=0.78,
         sentence__total=0.78),
    _row("Wang et al. 2025 FT (single task)", "Wang et al. 2025 Table 3", None, word__accuracy=(0.62, 0.57),
         sentence__accuracy=(0.74, 0.69), sentence__fluency=(0.79, 0.78), sentence__prosodic=(0.77, 0.76),
         sentence__total=(0.77, 0.71)),
    _row("Wang et al. 2025 DPO (single task)", "Wang et al. 2025 Table 3", None, word__accuracy=(0.60, 0.55),
         sentence__accuracy=(0.76, 0.70), sentence__fluency=(0.79, 0.78), sentence__prosodic=(0.78, 0.76),
         sentence__total=(0.76, 0.71)),
    _row("Ahn & Nam 2025 LoRA 3 ep", "Ahn & Nam 2025 Table 3", None, sentence__accuracy=0.656, sentence__fluency=0.727,
         sentence__prosodic=0.711, sentence__total=0.675),
    _row("Ahn & Nam 2025 LoRA 4 ep", "Ahn & Nam 2025 Table 4", None, sentence__accuracy=0.645, sentence__fluency=0.733,
         sentence__prosodic=0.714, sentence__total=0.668),
    _row("Ahn & Nam 2025 Unfreeze 4 ep", "Ahn & Nam 2025 Table 4", None, sentence__accuracy=0.743, sentence__fluency=0.717,
         sentence__prosodic=0.704, sentence__total=0.666),
]

MDD_COLUMNS = ("wer", "per", "precision", "recall", "f1")
MDD_ROWS = [
    {"system": "Ahn & Nam 2025 no training", "source": "Ahn & Nam 2025 Table 3",
     "values": {"wer": 0.97, "per": 0.792, "precision": 0.154, "recall": 0.134, "f1": 0.143}},
    {"system": "Ahn & Nam 2025 LoRA 3 ep", "source": "Ahn & Nam 2025 Table 3",
     "values": {"wer": 0.14, "per": 0.114, "precision": 0.728, "recall": 0.721, "f1": 0.724}},
    {"system": "Ahn & Nam 2025 LoRA 4 ep", "source": "Ahn & Nam 2025 Table 3",
     "values": {"wer": 0.148, "per": 0.121, "precision": 0.723, "recall": 0.72, "f1": 0.721}},
    {"system": "Ahn & Nam 2025 Unfreeze 4 ep", "source": "Ahn & Nam 2025 Table 3",
     "values": {"wer": 0.142, "per": 0.142, "precision": 0.671, "recall": 0.663, "f1": 0.667}},
    {"system": "Joint-CAPT-L1", "source": "Ahn & Nam 2025 Table 4", "values": {"per": 0.099}},
]

# Ahn & Nam 2025 figure 5: PCC between utterance PER and sentence accuracy
PER_VS_ACCURACY = {"human": -0.4463, "predicted": -0.3543}
