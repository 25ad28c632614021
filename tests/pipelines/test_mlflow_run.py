"""The literal `mlflow run` commands of MLproject's header, run verbatim against a real `mlflow server`.

The commands are read from the MLproject file (not retyped) and run in a copy of the
project with look-alike tiny data in ``$TLSTUDY_DATA``, as a new user would run them inside
the installed environment. Nothing is added to the command lines: the tiny data keep them
short (a few minutes each on a 2-core CPU with the default 10 epochs).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import free_port, start_mlflow_server  # noqa: E402
from tracking.schema import Metric, Tag  # noqa: E402

pytestmark = pytest.mark.slow  # real training through `mlflow run`; still part of the default run


def mlproject_commands() -> dict[str, str]:
    """The `mlflow run` lines of MLproject's header comment, keyed by what follows `mlflow run . `."""
    lines = (ROOT / "MLproject").read_text(encoding="utf-8").splitlines()
    commands = [line.lstrip("# ").strip() for line in lines if line.startswith("#") and "mlflow run ." in line]
    return {c: c for c in commands}


def literal(fragment: str) -> str:
    """The one header command containing ``fragment``."""
    found = [c for c in mlproject_commands() if fragment in c]
    assert len(found) == 1, (fragment, list(mlproject_commands()))
    return found[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project's files (as a user's checkout), so journals and stores stay in tmp."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    dst = tmp_path_factory.mktemp("checkout")
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from tlcore.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("data")
    generate(root, SynthConfig(scale="tiny", seed=0))
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_mlflow_server(tmp_path_factory.mktemp("server"))
    yield handle
    handle.stop()


def user_env(uri: str, data: Path, cache: Path) -> dict[str, str]:
    """The installed environment's shell: venv bin on PATH, the data and the server in the env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.pop("PYTHONPATH", None)
    bin_dir = Path(sys.executable).parent
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", TLSTUDY_DATA=str(data),
               TLSTUDY_CACHE=str(cache), MLFLOW_TRACKING_URI=uri)
    return env


def run_literal(command: str, project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(shlex.split(command), cwd=project, env=env, capture_output=True, text=True, timeout=1800)
    print(f"$ {command}  -> exit {proc.returncode}")
    return proc


def runs(client: MlflowClient, experiment_id: str, view=ViewType.ACTIVE_ONLY):
    return client.search_runs([experiment_id], run_view_type=view, max_results=1000)


def wait_deleted(client: MlflowClient, run_id: str, limit_s: float = 120.0) -> str:
    """The pointer run is deleted by a detached helper once `mlflow run` has ended it: wait for that."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        stage = client.get_run(run_id).info.lifecycle_stage
        if stage == "deleted":
            return stage
        time.sleep(0.5)
    return client.get_run(run_id).info.lifecycle_stage


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_finetune_with_mlflow_spellings_then_rerun(server, project, tiny_data, tmp_path):
    client = MlflowClient(server.url)
    env = user_env(server.url, tiny_data, tmp_path / "cache")
    command = literal("-P ft_fraction=0 -P lr=1e-3")
    check(run_literal(command, project, env))
    first = runs(client, "0")
    assert len(first) == 1
    run = first[0]
    assert run.info.status == "FINISHED" and run.data.tags[Tag.STAGE] == "finetune"
    assert run.data.params["ft_fraction"] == "0" and run.data.params["lr"] == "1e-3"  # as typed, never re-logged
    assert Metric.TEST_AUC in run.data.metrics

    again = run_literal(command, project, env)
    check(again)
    assert "already finished" in again.stdout
    pointers = [r for r in runs(client, "0", ViewType.ALL) if r.info.run_id != run.info.run_id]
    assert len(pointers) == 1 and pointers[0].data.tags[Tag.DUPLICATE_OF] == run.info.run_id
    assert wait_deleted(client, pointers[0].info.run_id) == "deleted"  # deleted once mlflow run has ended it
    assert [r.info.run_id for r in runs(client, "0")] == [run.info.run_id]  # no new run


def test_experiment_name_twice_leaves_one_finished_run(server, project, tiny_data, tmp_path):
    client = MlflowClient(server.url)
    env = user_env(server.url, tiny_data, tmp_path / "cache")
    command = literal("--experiment-name")
    name = shlex.split(command)[shlex.split(command).index("--experiment-name") + 1]
    check(run_literal(command, project, env))
    second = run_literal(command, project, env)
    check(second)
    assert "already finished" in second.stdout
    experiment = client.get_experiment_by_name(name)
    for pointer in runs(client, experiment.experiment_id, ViewType.ALL):
        if Tag.DUPLICATE_OF in pointer.data.tags:  # the second launcher's run, deleted once mlflow run ended it
            assert wait_deleted(client, pointer.info.run_id) == "deleted"
    finished = runs(client, experiment.experiment_id)
    assert len(finished) == 1 and finished[0].info.status == "FINISHED"
    assert finished[0].data.params["ft_fraction"] == "0.1" and finished[0].data.params["data_root"] == "''"


def test_pretrain_finetune_from_ddsm_and_cca_on_defaults(server, project, tiny_data, tmp_path):
    client = MlflowClient(server.url)
    env = user_env(server.url, tiny_data, tmp_path / "cache")
    experiment = "defaults"
    env["MLFLOW_EXPERIMENT_NAME"] = experiment  # as a user's shell would, to keep this test's runs apart
    for fragment in ("-e pretrain", "-P init=ddsm", "-e cca"):
        check(run_literal(literal(fragment), project, env))
    exp = client.get_experiment_by_name(experiment)
    stages = sorted(r.data.tags[Tag.STAGE] for r in runs(client, exp.experiment_id))
    assert stages == ["cca", "finetune", "pretrain"]
    assert client.get_model_version_by_alias("ddsm-resnet50", "champion") is not None


def test_dead_server_is_one_line_in_seconds(project, tiny_data, tmp_path):
    """The entry point's own check: `python -m pipelines.finetune` (what MLproject runs) on a dead server."""
    env = user_env(f"http://127.0.0.1:{free_port()}", tiny_data, tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-m", "pipelines.finetune"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "cannot reach the tracking server" in lines[0] and "nothing was run" in lines[0]


def test_study_then_report_on_defaults(server, project, tiny_data, tmp_path):
    """`mlflow run . -e study` then `mlflow run . -e report`, as MLproject's header prints them: the study
    keeps its parent run (and the report its run) in the study's experiment; the launchers' runs end as
    pointers, so no empty run is left behind."""
    client = MlflowClient(server.url)
    env = user_env(server.url, tiny_data, tmp_path / "cache")
    check(run_literal(literal("-e study"), project, env))
    report = run_literal(literal("-e report"), project, env)
    check(report)
    assert "reporting experiment 'tlstudy-quick' (most recent study" in report.stdout
    exp = client.get_experiment_by_name("tlstudy-quick")
    stages = [r.data.tags.get(Tag.STAGE) for r in runs(client, exp.experiment_id)]
    assert stages.count("study") == 1 and stages.count("report") == 1
    assert stages.count("finetune") >= 48 and stages.count("cca") == 3
    launched = [r for r in runs(client, "0", ViewType.ALL) if Tag.DUPLICATE_OF in r.data.tags]
    study_run = next(r for r in runs(client, exp.experiment_id) if r.data.tags.get(Tag.STAGE) == "study")
    assert study_run.info.run_id in {r.data.tags[Tag.DUPLICATE_OF] for r in launched}
    for pointer in launched:
        assert wait_deleted(client, pointer.info.run_id) == "deleted"
    assert [r for r in runs(client, "0") if Tag.STAGE not in r.data.tags] == []
