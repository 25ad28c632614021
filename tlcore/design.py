"""The study's design: which results the paper's study is made of, and which cannot exist.

One :data:`PAPER_DESIGN` owns the datasets, models, initialisations, fine-tuning fractions,
transfer modes and the representational-analysis (CCA) layers of the study, and answers
"is this cell applicable, and if not, why" from the model registry's specs (never from a
model's or a dataset's name). The study planner, the report's tables and missing cells,
the figures and the command-line choices all ask it instead of keeping their own lists.

A *cell* is one result of the tables: (dataset, model, init, transfer, ft_fraction), one
run per seed. Fractions are floats here; :func:`fraction_key` gives the canonical string
("0.0", "0.1", "0.2") used in tracked params and table keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from tlcore.models import get_spec
from tlcore.models.spec import ANALYSIS_LAYERS, INIT_MODES, TRANSFER_MODES


def fraction_key(fraction: float | str) -> str:
    """Canonical text of a fine-tuning fraction: ``0.1 -> "0.1"``, ``0 -> "0.0"``, ``"0.20" -> "0.2"``.

    The same text is used in tracked params, run names and table keys, so
    ``params.ft_fraction = '0.1'`` filters work. Rejects values outside [0, 1].
    """
    value = float(fraction)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"ft_fraction must be within [0, 1], got {fraction!r}")
    text = repr(round(value, 6))
    return text if "." in text or "e" in text else f"{text}.0"


@dataclass(frozen=True)
class Cell:
    """One result of the study's tables (run once per seed)."""

    dataset: str
    model: str
    init: str
    transfer: str
    ft_fraction: float

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """``(dataset, model, init, transfer, ft_fraction text)``: the report's cell key."""
        return (self.dataset, self.model, self.init, self.transfer, fraction_key(self.ft_fraction))


@dataclass(frozen=True)
class StudyDesign:
    """The grid of a transfer-learning study and its applicability rules.

    ``pretrain_dataset`` is the source domain every DDSM-initialised cell inherits from;
    ``target_datasets`` get one performance table each (in this order); ``hybrid_model``
    is fine-tuned with ``transfer="hybrid"`` at ``hybrid_fractions``; the CCA analysis
    compares ``cca_model``'s pre-trained network with the network the
    (``cca_init``, ``cca_ft_fraction``, transfer ``all``) cell fine-tuned, at
    ``cca_layers``.
    """

    pretrain_dataset: str = "ddsm"
    target_datasets: tuple[str, ...] = ("inbreast", "mias", "ultrasound")
    models: tuple[str, ...] = ("vgg16", "resnet50", "inception_v3", "patch_cnn")
    inits: tuple[str, ...] = INIT_MODES
    ft_fractions: tuple[float, ...] = (0.0, 0.1, 0.2)
    transfers: tuple[str, ...] = TRANSFER_MODES
    hybrid_model: str = "resnet50"
    hybrid_fractions: tuple[float, ...] = (0.1, 0.2)
    hybrid_table_order: tuple[str, ...] = ("mias", "inbreast", "ultrasound")  # the paper's Table 4
    cca_model: str = "resnet50"
    cca_init: str = "ddsm"
    cca_ft_fraction: float = 0.2
    cca_layers: tuple[str, ...] = ANALYSIS_LAYERS

    # ------------------------------------------------------------------ applicability
    def row_not_applicable(self, model: str, init: str) -> str | None:
        """Why a whole (model, init) row cannot exist (e.g. ImageNet for a model without such weights)."""
        if init == "imagenet" and not get_spec(model).supports_imagenet:
            return f"not applicable: {model} has no ImageNet initialisation"
        return None

    def not_applicable(self, model: str, init: str, ft_fraction: float | str, transfer: str = "all") -> str | None:
        """Why the cell cannot exist, or None when it is a result the study should have."""
        row = self.row_not_applicable(model, init)
        if row:
            return row
        if init == "imagenet" and float(ft_fraction) == 0.0:
            return "not applicable: an ImageNet model without fine-tuning has a 1000-class head"
        if transfer == "hybrid":
            if not get_spec(model).supports_hybrid:
                return f"not applicable: hybrid transfer is not defined for {model}"
            if float(ft_fraction) == 0.0:
                return "not applicable: hybrid transfer re-initialises the top, which needs fine-tuning"
        return None

    # ------------------------------------------------------------------ the grid
    def table_rows(self, models: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
        """(model, init) rows of a performance table in the paper's order, whole-NA rows left out."""
        return [(m, i) for m in (models or self.models) for i in self.inits if not self.row_not_applicable(m, i)]

    def table_cells(self, dataset: str, models: tuple[str, ...] | None = None, *,
                    with_na_rows: bool = False) -> Iterator[Cell]:
        """Every cell of ``dataset``'s performance table (transfer ``all``), NA ones included.

        ``with_na_rows`` adds the cells of whole rows that cannot exist (e.g. a model without
        ImageNet weights from ImageNet), so a plan can list them as NA with the reason.
        """
        for model in models or self.models:
            for init in self.inits:
                if not with_na_rows and self.row_not_applicable(model, init):
                    continue
                for ft in self.ft_fractions:
                    yield Cell(dataset, model, init, "all", ft)

    def hybrid_cells(self, dataset: str, *, with_na_rows: bool = False) -> Iterator[Cell]:
        """The hybrid-transfer cells of ``dataset`` (every init of :attr:`hybrid_model`)."""
        for init in self.inits:
            if not with_na_rows and self.row_not_applicable(self.hybrid_model, init):
                continue
            for ft in self.hybrid_fractions:
                yield Cell(dataset, self.hybrid_model, init, "hybrid", ft)

    def cca_source(self, dataset: str) -> Cell:
        """The fine-tuned cell whose network the CCA analysis of ``dataset`` compares with the pre-trained one."""
        return Cell(dataset, self.cca_model, self.cca_init, "all", self.cca_ft_fraction)

    def is_cca_source(self, cell: Cell) -> bool:
        """True when the CCA analysis needs this cell's fine-tuned weights."""
        return cell == self.cca_source(cell.dataset)

    def comparison_pairs(self, dataset: str, models: tuple[str, ...] | None = None
                         ) -> Iterator[tuple[Cell, Cell]]:
        """(DDSM cell, random cell) pairs the DeLong tests compare: one per model and fraction."""
        for model in models or self.models:
            for ft in self.ft_fractions:
                yield (Cell(dataset, model, "ddsm", "all", ft), Cell(dataset, model, "random", "all", ft))


PAPER_DESIGN = StudyDesign()
