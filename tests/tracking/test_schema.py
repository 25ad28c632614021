from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tracking import schema
from tracking.schema import Artifact, Metric, Param, Tag, format_fraction, run_name


def test_format_fraction_gives_the_param_strings():
    assert [format_fraction(f) for f in (0, 0.0, 0.1, 0.2, "0.1", 1)] == ["0.0", "0.0", "0.1", "0.2", "0.1", "1.0"]
    assert format_fraction(0.1 + 0.2) == "0.3"  # float noise does not leak into params
    with pytest.raises(ValueError, match="within"):
        format_fraction(1.5)


def test_run_name_leads_with_what_tells_runs_apart():
    assert run_name("finetune", "mias", "resnet50", "ddsm", 0.1, "all", 0) == "mias·r50·ddsm·ft10·s0"
    assert run_name("pretrain", "ddsm", "vgg16", "imagenet", seed=2) == "pretrain·vgg16·inet·s2"
    assert run_name("finetune", "inbreast", "inception_v3", "random", 0, "hybrid", 1) == (
        "inbreast·incv3·rand·ft0·hyb·s1"
    )
    assert run_name("cca", "ultrasound", "patch_cnn", "ddsm", seed=0) == "cca·ultrasound·patch·ddsm·s0"
    assert run_name("study") == "study"
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        run_name("train")


def test_run_names_of_the_grid_are_distinct():
    cells = [(d, m, i, f, t, s) for d in ("inbreast", "mias", "ultrasound") for m in schema.RUN_NAME_MODELS
             for i in schema.INITS for f in schema.FT_FRACTIONS for t in schema.TRANSFERS for s in (0, 1, 2)]
    names = {run_name("finetune", *cell) for cell in cells}
    assert len(names) == len(cells)
    pretrain = {run_name("pretrain", "ddsm", m, i, seed=s) for m in schema.RUN_NAME_MODELS for i in schema.INITS
                for s in (0, 1)}
    assert len(pretrain) == len(schema.RUN_NAME_MODELS) * len(schema.INITS) * 2 and not pretrain & names


def _constants(cls) -> list[str]:
    return [v for k, v in vars(cls).items() if k.isupper()]


def test_every_name_is_documented_once_and_tags_are_prefixed():
    doc = schema.SCHEMA_DOC
    for value in _constants(Param) + _constants(Tag) + _constants(Metric) + _constants(Artifact):
        assert f"`{value}`" in doc, value
    tlstudy_tags = [t for t in _constants(Tag) if t != Tag.PARENT_RUN_ID]
    assert all(t.startswith(schema.TAG_PREFIX) for t in tlstudy_tags)
    names = [(e.kind, e.name) for e in schema.SCHEMA]
    assert len(names) == len(set(names))
    assert doc.splitlines()[0] == "| kind | name | meaning | example |"


def test_module_prints_the_markdown_table():
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "tracking.schema"], cwd=root, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout == schema.SCHEMA_DOC
    assert "| param | `ft_fraction` |" in out.stdout


def test_docs_schema_page_holds_the_generated_table():
    page = (Path(__file__).resolve().parents[2] / "docs" / "schema.md").read_text()
    assert schema.SCHEMA_DOC in page, "regenerate the table in docs/schema.md with `python -m tracking.schema`"
