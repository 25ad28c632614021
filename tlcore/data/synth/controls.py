"""What the look-alike data were built to hold: the known answer each target is a control for.

The generator (:mod:`tlcore.data.synth`) writes one malignancy signal into the CBIS-DDSM-,
INbreast- and MIAS-like images and a different, independent one into the ultrasound-like
images. So DDSM pre-training should help the two mammogram-like targets without
fine-tuning (**positive controls**) and should not help the ultrasound-like one
(**negative control**), while fine-tuning from random weights learns every target.

This is the generator's own declaration, used only to *check* a study run on look-alike
data against its known answer (``benchmarks/study_demo.py``); the study's method and its
report never read it and decide nothing from a dataset's name.
"""

from __future__ import annotations

from dataclasses import dataclass

POSITIVE = "positive"
NEGATIVE = "negative"

#: target dataset -> the kind of control the look-alike generator built it to be.
CONTROL_ROLES: dict[str, str] = {"inbreast": POSITIVE, "mias": POSITIVE, "ultrasound": NEGATIVE}


@dataclass(frozen=True)
class ControlTargets:
    """The thresholds a demo study must meet to show it detects the controls (issue 10)."""

    min_ddsm_test_auc: float = 0.80  # every model learns the source task
    min_positive_no_ft_gap: float = 0.15  # mean over models, positive controls
    min_positive_model_gap: float = 0.10  # per model ...
    min_positive_models: int = 3  # ... for at least this many models
    max_negative_no_ft_gap: float = 0.08  # mean over models, negative control
    max_negative_ddsm_no_ft_auc: float = 0.62  # DDSM No-FT stays near chance there
    min_random_ft_auc: float = 0.75  # random-init FT 0.2 learns every target
    min_svcca_block_margin: float = 0.05  # positive-control SVCCA block mean above the negative's
