"""The MLflow UI as a user finds it: a real `mlflow server`, rendered by a real headless Chromium.

Skipped when no Chromium is installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from mlflow.entities import Param as MlParam

from tracking.registry import register_checkpoint
from tracking.schema import (
    EXPERIMENT_KIND_TRAINING,
    STAGE_FINETUNE,
    STAGE_STUDY,
    MlflowTag,
    Param,
    Tag,
    registered_model_description,
    run_name,
)
from tracking.store import experiment_ui_url, get_client, get_or_create_experiment

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,900", "--virtual-time-budget=30000"]
CELLS = [("mias", "resnet50", "ddsm", 0.2, "all", 0), ("mias", "resnet50", "random", 0.0, "all", 0),
         ("ultrasound", "vgg16", "imagenet", 0.1, "hybrid", 1)]


def chromium(url: str, *what: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *what, url],
                              capture_output=True, text=True, timeout=300, check=False)


def rendered(url: str, wanted: str) -> str:
    """The DOM after the page's scripts ran; rendered again once if ``wanted`` is not there yet."""
    dom = ""
    for _ in range(2):  # a loaded machine can leave the app mid-render at the end of the budget
        dom = chromium(url, "--dump-dom").stdout
        if wanted in dom:
            break
    return dom


@pytest.fixture(scope="module")
def ui_store(mlflow_server):
    client = get_client(mlflow_server.url)
    exp_id = get_or_create_experiment(client, "ui-test")
    parent = client.create_run(exp_id, run_name=run_name(STAGE_STUDY), tags={Tag.STAGE: STAGE_STUDY})
    client.set_terminated(parent.info.run_id)
    names = []
    for dataset, model, init, frac, transfer, seed in CELLS:  # standalone, as `mlflow run . -e finetune` leaves them
        name = run_name(STAGE_FINETUNE, dataset, model, init, frac, transfer, seed)
        run = client.create_run(exp_id, run_name=name, tags={Tag.STAGE: STAGE_FINETUNE})
        params = {Param.DATASET: dataset, Param.MODEL: model, Param.INIT: init, Param.FT_FRACTION: str(frac),
                  Param.TRANSFER: transfer, Param.SEED: str(seed)}
        client.log_batch(run.info.run_id, params=[MlParam(k, v) for k, v in params.items()])
        client.set_terminated(run.info.run_id)
        names.append(name)
    return client, exp_id, names


def test_experiment_and_registered_model_carry_kind_and_description(ui_store, mlflow_server, tiny_model, tmp_path):
    client, exp_id, _ = ui_store
    tags = client.get_experiment(exp_id).tags
    assert tags[MlflowTag.EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING
    assert "transfer-learning study `ui-test`" in tags[MlflowTag.NOTE]
    # an experiment someone else created (e.g. `mlflow run --experiment-name`) gets them on first use
    other = client.create_experiment("ui-test-external", tags={MlflowTag.NOTE: "my own words"})
    assert get_or_create_experiment(client, "ui-test-external") == other
    tags = client.get_experiment(other).tags
    assert tags[MlflowTag.EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING and tags[MlflowTag.NOTE] == "my own words"

    import mlflow
    import torch

    mlflow.set_tracking_uri(mlflow_server.url)
    with mlflow.start_run(experiment_id=exp_id, run_name="pretrain·uitest·s0") as run:
        mlflow.pytorch.log_model(tiny_model, name="model", input_example=torch.randn(2, 4).numpy())
        # registration records the sha256 of the tensors-only weights, as pre-training logs them
        weights = tmp_path / "state_dict.pt"
        torch.save(tiny_model.state_dict(), weights)
        mlflow.log_artifact(str(weights), artifact_path="weights")
    register_checkpoint(run.info.run_id, "model", "ddsm-uitest", tracking_uri=mlflow_server.url)
    registered = client.get_registered_model("ddsm-uitest")
    assert registered.description == registered_model_description("uitest")
    assert registered.tags[Param.MODEL] == "uitest"


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install -y chromium)")
def test_the_experiment_link_opens_the_training_runs_with_telling_names(ui_store, mlflow_server, tmp_path):
    _, exp_id, names = ui_store
    url = experiment_ui_url(mlflow_server.url, exp_id)
    dom = rendered(url, names[0])
    assert "Run Name" in dom, dom[-2000:]  # the runs table, not the GenAI overview
    for name in names:
        assert f">{name}<" in dom, name
    assert "Detect Issues" not in dom and "Tool calls" not in dom  # GenAI overview widgets
    assert "transfer-learning study" in dom  # the description is shown above the runs
    shot = Path(os.environ.get("TLSTUDY_UI_SCREENSHOT", tmp_path / "runs.png"))
    chromium(url, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
