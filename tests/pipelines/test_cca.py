"""The `cca` entry point against a real `mlflow server`: pretrain -> registry -> cca.

Tiny look-alike data, ResNet-50 pre-trained at 64 px and analysed at 32 px, one epoch each. The pre-training and the
skip/error checks run the click commands in this process; the analysis itself runs as
``python -m pipelines.cca`` in a subprocess, as `mlflow run` and the study runner start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import start_mlflow_server  # noqa: E402
from tracking.schema import STAGE_CCA, Tag  # noqa: E402

LAYERS = ("conv1", "block1", "block2", "block3", "block4")
EXPERIMENT = "cca-entry-point"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Data, a server, a working folder, and a registered `ddsm-resnet50` from the real pretrain."""
    from tlcore.data.synth import SynthConfig, generate

    work = tmp_path_factory.mktemp("cca-entry")
    generate(work / "data", SynthConfig(scale="tiny", seed=0))
    server = start_mlflow_server(work / "server")
    values = {"MLFLOW_TRACKING_URI": server.url, "TLSTUDY_CACHE": str(work / "cache")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        mp.chdir(work)
        from pipelines.pretrain import main as pretrain

        out = CliRunner().invoke(pretrain, ["--model", "resnet50", "--image-size", "64", "--epochs", "1",
                                            "--batch-size", "8", "--data-root", str(work / "data"),
                                            "--experiment", EXPERIMENT, "--no-progress"])
        assert out.exit_code == 0, f"{out.output}\n{out.exception!r}"
        from pipelines.finetune import main as finetune

        sources = {}
        for dataset in ("ultrasound", "mias"):  # the cells whose networks the analysis compares
            out = CliRunner().invoke(finetune, ["--dataset", dataset, "--init", "ddsm", "--ft-fraction", "0.2",
                                                "--no-log-model", *cca_args(work / "data")[:-2]])
            assert out.exit_code == 0, f"{out.output}\n{out.exception!r}"
            sources[dataset] = out.output.strip().split()[-1]
        client = MlflowClient(server.url)
        version = client.get_model_version_by_alias("ddsm-resnet50", "champion")
        yield {"work": work, "data": work / "data", "server": server, "client": client, "version": version,
               "env": values, "sources": sources}
    server.stop()


def cca_args(data: Path, *extra: str) -> list[str]:
    # 32 px keeps the test quick; the DDSM weights (trained at 64 px) are size-agnostic. The fine-tunes whose
    # networks the analysis loads take the same training settings (all but --max-positions).
    return ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--data-root", str(data),
            "--experiment", EXPERIMENT, "--no-progress", *extra, "--max-positions", "500"]


def cca_runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`{Tag.STAGE}` = '{STAGE_CCA}'")


def test_cca_logs_every_layer_artifacts_and_provenance(env, tmp_path):
    work, client, version = env["work"], env["client"], env["version"]
    cmd = [sys.executable, "-m", "pipelines.cca", "--dataset", "ultrasound", "--dataset", "mias",
           "--measures", "cka", *cca_args(env["data"])]
    proc = subprocess.run(cmd, check=False, cwd=work, env={**os.environ, **env["env"], "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "combined Figure 1: run" in proc.stdout

    runs = {r.data.params["dataset"]: r for r in cca_runs(client)}
    assert set(runs) == {"ultrasound", "mias"}
    for dataset, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"cca·{dataset}·r50·ddsm·s0"
        metrics = run.data.metrics
        for layer in LAYERS:
            for key in (f"cca_{layer}", f"cca_baseline_{layer}", f"cka_{layer}", f"cka_baseline_{layer}"):
                assert key in metrics, (dataset, key, sorted(metrics))
                assert 0.0 <= metrics[key] <= 1.0 + 1e-9
        assert not any(k.startswith("pwcca_") for k in metrics)
        tags = run.data.tags
        assert tags[Tag.DDSM_MODEL_NAME] == "ddsm-resnet50"
        assert tags[Tag.DDSM_MODEL_VERSION] == str(version.version)
        assert tags[Tag.DDSM_SOURCE_RUN_ID] == version.run_id
        assert len(tags[Tag.DATASET_FINGERPRINT]) >= 8 and len(tags[Tag.SPLIT_HASH]) == 12
        assert run.data.params["model"] == "resnet50" and run.data.params["epochs"] == "1"
        assert run.data.params["ddsm_model_version"] == str(version.version)
        # B is the network the FT 0.2 cell trained: its run is named, and it kept tensors-only weights.
        assert tags[Tag.CCA_SOURCE_RUN_ID] == env["sources"][dataset]
        source_files = {f.path for f in client.list_artifacts(env["sources"][dataset], "weights")}
        assert source_files == {"weights/state_dict.pt"}

        local = Path(client.download_artifacts(run.info.run_id, "cca", str(tmp_path / dataset)))
        table = pd.read_csv(local / "similarity.csv")
        assert list(dict.fromkeys(table["layer"])) == list(LAYERS)
        assert set(table["measure"]) == {"svcca", "cka"} and len(table) == 10
        sv = table[table["measure"] == "svcca"].set_index("layer")
        assert metrics["cca_block1"] == pytest.approx(sv.at["block1", "value"])
        doc = json.loads((local / "similarity.json").read_text())
        assert doc["dataset"] == dataset and doc["measures"] == ["svcca", "cka"]
        assert [r["layer"] for r in doc["rows"] if r["measure"] == "svcca"] == list(LAYERS)
        assert (local / "figure1.png").read_bytes()[:8] == PNG_MAGIC

    # The combined Figure 1 goes on the last dataset's run.
    combined = client.download_artifacts(runs["mias"].info.run_id, "cca/figure1_combined.png", str(tmp_path))
    assert Path(combined).read_bytes()[:8] == PNG_MAGIC

    # Same command again: both runs are found and skipped; the combined figure is rebuilt locally.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        for key, value in env["env"].items():
            mp.setenv(key, value)
        from pipelines.cca import main as cca

        again = CliRunner().invoke(cca, ["--dataset", "ultrasound,mias", "--measures", "cka",
                                         *cca_args(env["data"])])
    assert again.exit_code == 0, f"{again.output}\n{again.exception!r}"
    assert again.output.count("already finished") == 2
    assert (tmp_path / "cca_figure1_combined.png").read_bytes()[:8] == PNG_MAGIC
    assert len(cca_runs(client)) == 2


def test_cca_without_its_fine_tune_run_fails_clearly_and_opens_no_run(env):
    from pipelines.cca import main as cca

    before = len(cca_runs(env["client"]))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(env["work"])
        for key, value in env["env"].items():
            mp.setenv(key, value)
        out = CliRunner().invoke(cca, ["--dataset", "inbreast", *cca_args(env["data"])])
    assert out.exit_code != 0
    assert "no FINISHED run 'inbreast·r50·ddsm·ft20·s0'" in out.output
    assert "tlstudy finetune --dataset inbreast --model resnet50 --init ddsm --ft-fraction 0.2" in out.output
    assert len(cca_runs(env["client"])) == before


def test_cca_without_registered_model_fails_clearly_and_opens_no_run(env):
    from pipelines.cca import main as cca

    before = len(cca_runs(env["client"]))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(env["work"])
        for key, value in env["env"].items():
            mp.setenv(key, value)
        out = CliRunner().invoke(cca, ["--dataset", "mias", "--model", "vgg16", *cca_args(env["data"])])
    assert out.exit_code != 0
    assert "no registered model 'ddsm-vgg16'" in out.output
    assert "tlstudy pretrain --model vgg16" in out.output
    assert len(cca_runs(env["client"])) == before


def test_cca_rejects_unknown_dataset_and_measure(env):
    from pipelines.cca import main as cca

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(env["work"])
        for key, value in env["env"].items():
            mp.setenv(key, value)
        bad_dataset = CliRunner().invoke(cca, ["--dataset", "ddsm", *cca_args(env["data"])])
        bad_measure = CliRunner().invoke(cca, ["--dataset", "mias", "--measures", "svcca,ckaa",
                                               *cca_args(env["data"])])
    assert bad_dataset.exit_code == 2 and "valid: inbreast, mias, ultrasound" in bad_dataset.output
    assert bad_measure.exit_code == 1 and "unknown ['ckaa']" in bad_measure.output
