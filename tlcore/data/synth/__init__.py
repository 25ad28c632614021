"""Look-alike (synthetic) versions of the four datasets, in their distributors' layouts.

``generate(out_dir, SynthConfig(scale="tiny"))`` writes CBIS-DDSM, INbreast, mini-MIAS and
breast-ultrasound look-alikes, quirks included, with a learnable malignancy signal, and
returns where each was written and the counts a reader must find.
"""

from tlcore.data.synth.config import SCALES, SynthConfig, SynthSummary
from tlcore.data.synth.generator import MARKER, generate, is_synthetic

__all__ = ["MARKER", "SCALES", "SynthConfig", "SynthSummary", "generate", "is_synthetic"]
