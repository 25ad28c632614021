"""Tests of the study runner (`tlstudy study`): plan, skip logic, launcher, retries, resume, end to end.

Real components only: an embedded SQLite MLflow store in tmp_path, real child processes
forked from the forkserver, tiny look-alike data written by ``tlcore.data.synth``. The
launcher tests use small stand-in child commands (written to tmp_path as real modules
with the child entry points' command line) so that failures, NA exits and slow children
can be provoked on purpose; the quick-profile test runs the real entry points.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tracking import study as st
from tracking.schema import STAGE_CCA, STAGE_FINETUNE, STAGE_PRETRAIN, Tag

# ------------------------------------------------------------------------------ stand-in children
FAKE_CHILD = '''
"""Stand-in child entry point: the real command line, a real MLflow run, behaviour set by env vars."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click


def make(stage):
    # The settings the fake does not read (optimizer, weight decay, measures...) arrive as their
    # defaults and are taken as extra arguments.
    @click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.argument("extra", nargs=-1, type=click.UNPROCESSED)
    @click.option("--dataset", default="ddsm")
    @click.option("--model", default="resnet50")
    @click.option("--init", default="random")
    @click.option("--ft-fraction", type=float, default=None)
    @click.option("--transfer", default=None)
    @click.option("--seed", type=int, default=0)
    @click.option("--image-size", type=int, default=0)
    @click.option("--epochs", type=int, default=1)
    @click.option("--lr", type=float, default=1e-3)
    @click.option("--batch-size", type=int, default=16)
    @click.option("--data-root", default="data")
    @click.option("--ddsm-model-uri", default="")
    @click.option("--experiment", default="tlstudy")
    @click.option("--parent-run-id", default=None)
    @click.option("--log-model/--no-log-model", default=True)
    @click.option("--progress/--no-progress", default=True)
    def main(extra, dataset, model, init, ft_fraction, transfer, seed, image_size, epochs, lr, batch_size, data_root,
             ddsm_model_uri, experiment, parent_run_id, log_model, progress):
        from mlflow import MlflowClient

        from tlcore.data.cache import dataset_fingerprint
        from tlcore.data.registry import read_dataset
        from tlcore.experiment import FinetuneConfig, PretrainConfig
        from tracking.provenance import code_version
        from tracking.schema import run_name
        from tracking.store import get_client, get_or_create_experiment

        common = dict(model=model, seed=seed, image_size=image_size or None, epochs=epochs, lr=lr,
                      batch_size=batch_size, data_root=str(data_root))
        if stage == "pretrain":
            cfg_hash = PretrainConfig(dataset=dataset, init=init, **common).config_hash()
            name = run_name(stage, dataset, model, init, seed=seed)
        elif stage == "finetune":
            cfg_hash = FinetuneConfig(dataset=dataset, init=init, ft_fraction=ft_fraction, transfer=transfer,
                                      **common).config_hash()
            name = run_name(stage, dataset, model, init, ft_fraction, transfer, seed)
        else:
            from tlcore.analysis import CcaConfig

            cfg_hash = CcaConfig(dataset=dataset, **common).config_hash()
            name = run_name(stage, dataset, model, "ddsm", seed=seed)
        marker_dir = Path(os.environ["FAKE_MARKERS"])
        marker_dir.mkdir(parents=True, exist_ok=True)
        with open(marker_dir / "launches.txt", "a") as fh:
            fh.write(name + "\\n")
        if os.environ.get("FAKE_NA") and os.environ["FAKE_NA"] in name:
            print("not applicable: pretend prerequisites are missing")
            sys.exit(3)
        client = get_client()
        exp_id = get_or_create_experiment(client, experiment)
        version = code_version().version
        fingerprint = dataset_fingerprint(read_dataset(dataset, Path(data_root) / dataset).records)
        done = client.search_runs([exp_id], f"tags.`tlstudy.config_hash` = '{cfg_hash}' and "
                                  "attributes.status = 'FINISHED'")
        if done:
            print(f"already finished: {done[0].info.run_id}")
            return
        tags = {"tlstudy.stage": stage, "tlstudy.config_hash": cfg_hash, "tlstudy.code_version": version,
                "tlstudy.dataset_fingerprint": fingerprint}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(exp_id, run_name=name, tags=tags)
        rid = run.info.run_id
        params = {"dataset": dataset, "model": model, "seed": str(seed), "epochs": str(epochs),
                  "image_size": str(image_size)}
        params["init"] = init if stage != "cca" else "ddsm"
        if stage == "finetune":
            params.update({"ft_fraction": repr(ft_fraction), "transfer": transfer})
        for key, value in params.items():
            client.log_param(rid, key, value)
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
        once = os.environ.get("FAKE_FAIL_ONCE", "")
        always = os.environ.get("FAKE_FAIL_ALWAYS", "")
        marker = marker_dir / ("failed-" + name.replace(" ", "_"))
        if (always and always in name) or (once and once in name and not marker.exists()):
            marker.touch()
            client.set_terminated(rid, "FAILED")
            print("boom: a deliberate failure", file=sys.stderr)
            sys.exit(1)
        auc = (int(cfg_hash, 16) % 1000) / 1000.0
        if stage == "cca":
            for layer in ("conv1", "block1", "block2", "block3", "block4"):
                client.log_metric(rid, "cca_" + layer, 0.5)
        else:
            client.log_metric(rid, "test_auc", auc)
        client.set_terminated(rid, "FINISHED")
        with open(marker_dir / "launches.txt", "a") as fh:
            fh.write("end " + name + "\\n")
        print(f"finished {name}: {rid}")

    return main
'''


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Tiny look-alike data for all four datasets (written once per module)."""
    from tlcore.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("data") / "synth-tiny"
    generate(root, SynthConfig(scale="tiny", seed=0), progress=False)
    return root


@pytest.fixture()
def env(tmp_path, monkeypatch) -> Path:
    """Work in tmp_path with a fresh SQLite store, an empty torch hub and a private image cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TLSTUDY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_MARKERS", str(tmp_path / "markers"))
    for var in ("FAKE_NA", "FAKE_FAIL_ONCE", "FAKE_FAIL_ALWAYS", "FAKE_SLEEP"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture()
def fake_children(tmp_path) -> tuple[dict[str, str], tuple[str, ...]]:
    """Child modules (pretrain/finetune/cca) and the sys.path entry that finds them."""
    pkg = tmp_path / "fakes"
    pkg.mkdir()
    (pkg / "fakechild.py").write_text(FAKE_CHILD)
    for stage in (STAGE_PRETRAIN, STAGE_FINETUNE, STAGE_CCA):
        (pkg / f"fake_{stage}.py").write_text(f"from fakechild import make\nmain = make({stage!r})\n")
    return {s: f"fake_{s}" for s in (STAGE_PRETRAIN, STAGE_FINETUNE, STAGE_CCA)}, (str(pkg),)


def _options(data: Path, fakes, **overrides) -> st.StudyOptions:
    modules, path = fakes
    values = {"profile": "quick", "datasets": ("mias",), "models": ("resnet50",), "data_root": data,
              "experiment": "study-test", "report": False, "child_modules": modules, "child_sys_path": path}
    values.update(overrides)
    return st.StudyOptions(**values)


def _finished_runs(experiment: str):
    from tracking.query import search_study_runs

    return search_study_runs(experiment, finished_only=True)


def _launches(tmp_path: Path) -> list[str]:
    path = tmp_path / "markers" / "launches.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if not line.startswith("end ")]


def _events(tmp_path: Path) -> list[str]:
    return (tmp_path / "markers" / "launches.txt").read_text().splitlines()


# ------------------------------------------------------------------------------ planning
def test_paper_grid_has_the_exact_counts_per_stage():
    profile = st.PaperProfile()
    plan = st.plan_study(profile, imagenet_missing={})
    counts = st.count_by_stage(plan)
    n_seeds = len(profile.seeds)
    assert n_seeds == 3
    # 4 models pre-trained once on DDSM.
    assert counts[STAGE_PRETRAIN] == {"planned": 4}
    # Per seed: 3 datasets x (4 models x 3 inits x 3 fractions = 36) = 108 rows, of which NA by design:
    # ImageNet without FT for 3 models and the patch CNN from ImageNet at 3 fractions -> 6 per dataset.
    assert counts[STAGE_FINETUNE] == {"planned": 90 * n_seeds, "NA": 18 * n_seeds}
    # Hybrid: ResNet-50, 3 datasets x 3 inits x (0.1, 0.2).
    assert counts["finetune-hybrid"] == {"planned": 18 * n_seeds}
    assert counts[STAGE_CCA] == {"planned": 3 * n_seeds}
    assert len(plan) == 4 + 108 * n_seeds + 18 * n_seeds + 3 * n_seeds
    assert len({p.key for p in plan}) == len(plan)


def test_plan_marks_missing_imagenet_weights_and_wires_dependencies():
    missing = {"resnet50": "skipped: no weights", "vgg16": "skipped: no weights", "inception_v3": "skipped: no"}
    plan = st.plan_study(st.QuickProfile(), imagenet_missing=missing)
    by_key = {p.key: p for p in plan}
    counts = st.count_by_stage(plan)
    assert counts[STAGE_FINETUNE] == {"planned": 72, "NA": 36}
    assert counts["finetune-hybrid"] == {"planned": 12, "NA": 6}
    imagenet_ft = [p for p in plan if p.init == "imagenet" and p.ft_fraction and p.model != "patch_cnn"]
    assert imagenet_ft and all(p.status == "NA" and p.note.startswith("skipped") for p in imagenet_ft)
    ddsm = [p for p in plan if p.init == "ddsm" and p.stage == STAGE_FINETUNE]
    assert all(by_key[p.depends_on[0]].stage == STAGE_PRETRAIN and by_key[p.depends_on[0]].model == p.model
               for p in ddsm)
    cca = [p for p in plan if p.stage == STAGE_CCA]
    assert [p.dataset for p in cca] == ["inbreast", "mias", "ultrasound"]
    assert all(by_key[p.depends_on[0]].model == "resnet50" for p in cca)
    assert all(not p.depends_on for p in plan if p.init == "random")
    # Profile settings reach the children: inception_v3 needs >= 75 px.
    assert {p.image_size for p in plan if p.model == "inception_v3"} == {80}
    fine = next(p for p in plan if p.stage == STAGE_FINETUNE)
    assert "--no-log-model" in fine.argv("/data")
    assert "--log-model" in next(p for p in plan if p.stage == STAGE_PRETRAIN).argv("/data")


def test_selection_errors_name_the_valid_choices():
    with pytest.raises(st.StudyError, match="valid models: vgg16, resnet50"):
        st.plan_study(st.QuickProfile(), models=["resnet"])
    with pytest.raises(st.StudyError, match="unknown profile"):
        st.get_profile("fast")
    plan = st.plan_study(st.QuickProfile(), models=["vgg16"], datasets=["mias"])
    assert {p.stage for p in plan} == {STAGE_PRETRAIN, STAGE_FINETUNE}  # no hybrid / CCA without ResNet-50


def test_cli_dry_run_prints_the_paper_plan(env, tmp_path):
    from pipelines.study import main

    result = CliRunner().invoke(main, ["--profile", "paper", "--dry-run", "--data-root", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    out = result.output
    header = next(line for line in out.splitlines() if line.startswith("stage"))
    assert header.split()[:8] == ["stage", "dataset", "model", "init", "ft", "transfer", "seed", "status"]
    # No ImageNet weights in the (empty) hub cache: those rows are NA with a note saying where to put them.
    assert "pretrain: 4 planned" in out
    assert "finetune: 108 NA, 216 planned" in out
    assert "finetune-hybrid: 18 NA, 36 planned" in out
    assert "cca: 9 planned" in out
    assert "total: 391 configurations (126 NA, 265 planned)" in out
    assert "resnet50-0676ba61.pth" in out
    assert not (tmp_path / "none").exists()  # a dry run writes no data


def test_dry_run_with_weights_in_the_hub_cache_plans_imagenet_rows(env, tmp_path):
    from tlcore.models import get_spec, hub_checkpoint_dir
    from tlcore.models.weights import weights_file_name

    ckpt = hub_checkpoint_dir()
    ckpt.mkdir(parents=True)
    for model in ("vgg16", "resnet50", "inception_v3"):
        (ckpt / weights_file_name(get_spec(model).imagenet_weights)).write_bytes(b"present")
    result = st.run_study(st.StudyOptions(profile="paper", dry_run=True, data_root=tmp_path / "none",
                                          seeds=(0,)))
    counts = st.count_by_stage(result.plan)
    assert counts[STAGE_FINETUNE] == {"planned": 90, "NA": 18}
    assert counts["finetune-hybrid"] == {"planned": 18}
    assert all("by design" in p.note for p in result.plan if p.status == "NA" and p.stage != STAGE_CCA)


# ------------------------------------------------------------------------------ launcher and skip logic
def test_study_runs_everything_once_and_a_rerun_launches_nothing(env, tiny_data, fake_children, tmp_path):
    first = st.run_study(_options(tiny_data, fake_children))
    assert first.ok
    counts = st.count_by_stage(first.plan)
    # resnet50 on mias, no ImageNet weights: 1 pretrain, 6 + 4 fine-tunes, 1 CCA to run.
    assert counts == {STAGE_PRETRAIN: {"planned": 1}, STAGE_FINETUNE: {"planned": 6, "NA": 3},
                      "finetune-hybrid": {"planned": 4, "NA": 2}, STAGE_CCA: {"planned": 1}}
    assert first.execution.count("done") == 12
    launches = _launches(tmp_path)
    assert len(launches) == 12
    # Pre-training finished before any DDSM fine-tune or the CCA run started.
    events = _events(tmp_path)
    pretrain_end = events.index("end pretrain·r50·rand·s0")
    dependants = [i for i, name in enumerate(events) if name.startswith(("cca", "mias·r50·ddsm·"))]
    assert len(dependants) == 6 and all(i > pretrain_end for i in dependants)
    runs = _finished_runs("study-test")
    children = runs[runs[f"tags.{Tag.STAGE}"] != "study"]
    assert len(children) == 12
    assert children[f"tags.{Tag.PARENT_RUN_ID}"].eq(first.parent_run_id).all()
    hashes = children[f"tags.{Tag.CONFIG_HASH}"]
    assert hashes[hashes != ""].is_unique
    parent = runs[runs["run_id"] == first.parent_run_id]
    assert len(parent) == 1 and parent[f"tags.{Tag.STAGE}"].iloc[0] == "study"
    assert parent["metrics.study.runs_done"].iloc[0] == 12
    logs = list((first.work_dir / "logs").glob("*.log"))
    assert len(logs) == 12 and all(p.read_text().startswith("$ python -m fake_") for p in logs)

    second = st.run_study(_options(tiny_data, fake_children))
    assert [p.status for p in second.plan].count("done") == 12
    assert second.execution.count("done") == 12 and all(o.attempts == 0 for o in second.execution.outcomes)
    assert len(_launches(tmp_path)) == 12  # nothing was launched again
    assert len(_finished_runs("study-test").query("`tags.tlstudy.stage` != 'study'")) == 12


def test_a_changed_dataset_is_not_skipped(env, tiny_data, fake_children, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    st.run_study(_options(data, fake_children, models=("vgg16",)))
    before = _launches(tmp_path)
    mias_image = min((data / "mias").glob("*.pgm"))
    os.utime(mias_image, ns=(time.time_ns(), time.time_ns() + 10**9))  # the fingerprint covers mtimes
    _, plan, *_ = st.prepare_plan(_options(data, fake_children, models=("vgg16",)))
    statuses = {p.key: p.status for p in plan}
    assert statuses["pretrain·vgg16·rand·s0"] == "done"  # DDSM untouched
    assert all(s != "done" for k, s in statuses.items() if k.startswith("mias·"))
    assert len(before) == 7


def test_a_failing_child_is_retried_once(env, tiny_data, fake_children, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL_ONCE", "mias·r50·rand·ft10·")
    monkeypatch.setenv("FAKE_FAIL_ALWAYS", "mias·r50·rand·ft20·")
    result = st.run_study(_options(tiny_data, fake_children))
    outcomes = {o.item.key: o for o in result.execution.outcomes}
    flaky = outcomes["mias·r50·rand·ft10·s0"]
    assert flaky.status == "done" and flaky.attempts == 2
    broken = outcomes["mias·r50·rand·ft20·s0"]
    assert broken.status == "failed" and broken.attempts == 2
    assert "boom: a deliberate failure" in broken.log_paths[-1].read_text()
    assert not result.ok
    launches = _launches(tmp_path)
    assert launches.count("mias·r50·rand·ft10·s0") == 2
    assert launches.count("mias·r50·rand·ft20·s0") == 2
    from tracking.query import search_study_runs

    all_runs = search_study_runs("study-test")
    flaky_runs = all_runs[all_runs["run_name"] == "mias·r50·rand·ft10·s0"]
    assert sorted(flaky_runs["status"]) == ["FAILED", "FINISHED"]


def test_failed_or_na_prerequisites_block_their_dependants(env, tiny_data, fake_children, monkeypatch):
    monkeypatch.setenv("FAKE_NA", "pretrain·r50·")
    result = st.run_study(_options(tiny_data, fake_children))
    outcomes = {o.item.key: o for o in result.execution.outcomes}
    assert outcomes["pretrain·r50·rand·s0"].status == "NA"
    assert "not applicable" in outcomes["pretrain·r50·rand·s0"].note
    blocked = [o for o in result.execution.outcomes if o.status == "blocked"]
    # DDSM fine-tunes at 0 / 0.1 / 0.2, DDSM hybrids at 0.1 / 0.2, and CCA.
    assert {o.item.key for o in blocked} == {p.key for p in result.plan if p.depends_on}
    assert len(blocked) == 3 + 2 + 1
    assert all("prerequisite pretrain·r50·rand·s0 NA" in o.note for o in blocked)
    assert result.ok  # NA is not a failure
    assert result.execution.count("done") == 3 + 2  # random-init fine-tunes and hybrids still ran


def test_max_runs_stops_early_and_a_rerun_finishes_without_duplicates(env, tiny_data, fake_children, tmp_path):
    first = st.run_study(_options(tiny_data, fake_children, max_runs=3, report=True))
    assert first.execution.stopped_early
    assert first.execution.count("done") == 3 and first.execution.count("not run") == 9
    assert first.report_dir is None  # no report for a partial study
    second = st.run_study(_options(tiny_data, fake_children, report=True))
    assert not second.execution.stopped_early
    assert sum(p.status == "done" for p in second.plan) == 3
    assert second.execution.count("done") == 12
    assert len(_launches(tmp_path)) == 12
    runs = _finished_runs("study-test")
    children = runs[~runs[f"tags.{Tag.STAGE}"].isin(["study", "report"])]
    assert len(children) == 12
    from tracking.query import search_study_runs

    assert set(search_study_runs("study-test")["status"]) == {"FINISHED"}  # interrupted runs were resumed
    hashed = children[children[f"tags.{Tag.CONFIG_HASH}"] != ""]
    assert hashed[f"tags.{Tag.CONFIG_HASH}"].is_unique
    assert (second.report_dir / "report.md").is_file()
    assert second.report_run_id in set(runs["run_id"])


KILL_SCRIPT = '''
import sys
from pathlib import Path
from pipelines.study import stop_on_sigterm
from tracking import study as st

if __name__ == "__main__":
    stop_on_sigterm()  # as the CLI does
    data, fakes = Path(sys.argv[1]), sys.argv[2]
    modules = {s: "fake_" + s for s in ("pretrain", "finetune", "cca")}
    st.run_study(st.StudyOptions(profile="quick", datasets=("mias",), models=("resnet50",), data_root=data,
                                 experiment="study-test", report=False, child_modules=modules,
                                 child_sys_path=(fakes,), jobs=2), echo=print)
'''


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_runner_then_rerun_completes_without_duplicates(env, tiny_data, fake_children, tmp_path, monkeypatch,
                                                               how):
    monkeypatch.setenv("FAKE_SLEEP", "1.5")
    script = tmp_path / "runner.py"
    script.write_text(KILL_SCRIPT)
    environ = dict(os.environ, PYTHONPATH=str(_ROOT))
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_data), fake_children[1][0]], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=False)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = _finished_runs("study-test") if (tmp_path / "mlflow.db").exists() else None
            if runs is not None and len(runs) >= 4:
                break
            assert proc.poll() is None, "the runner ended before it could be killed"
            time.sleep(0.3)
        proc.send_signal(how)
        code = proc.wait(timeout=60)
        # SIGTERM: the runner stops its children and exits as Ctrl-C would (KeyboardInterrupt)
        assert code == (-signal.SIGKILL if how == signal.SIGKILL else -signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(2.5)  # orphaned children get SIGTERM when the forkserver goes; let them end
    n_before = len(_finished_runs("study-test"))
    assert 4 <= n_before < 12
    monkeypatch.setenv("FAKE_SLEEP", "0")
    result = st.run_study(_options(tiny_data, fake_children))
    assert result.ok
    assert result.execution.count("done") == 12
    runs = _finished_runs("study-test")
    children = runs[runs[f"tags.{Tag.STAGE}"] != "study"]
    assert len(children) == 12
    hashed = children[children[f"tags.{Tag.CONFIG_HASH}"] != ""]
    assert hashed[f"tags.{Tag.CONFIG_HASH}"].is_unique
    assert children["run_name"].is_unique


def test_child_main_reports_click_exit_codes_and_captures_output(env, fake_children, tmp_path):
    ctx = st.forkserver_context()
    modules, path = fake_children
    log = tmp_path / "child.log"
    spec = st.ChildSpec(module=modules[STAGE_PRETRAIN], argv=("--seed", "not-a-number"), log_path=str(log),
                        env=tuple(os.environ.items()), cwd=str(tmp_path), sys_path=path)
    proc = ctx.Process(target=st.child_main, args=(spec,))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 2  # click usage error
    assert "Invalid value for '--seed'" in log.read_text()
    spec = st.ChildSpec(module="no_such_module_here", argv=(), log_path=str(log), env=tuple(os.environ.items()),
                        cwd=str(tmp_path))
    proc = ctx.Process(target=st.child_main, args=(spec,))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 1
    assert "cannot load the child entry point no_such_module_here.main" in log.read_text()


def test_browse_hint_names_the_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert st.browse_hint(f"sqlite:///{tmp_path / 'mlflow.db'}") == "mlflow ui --backend-store-uri sqlite:///mlflow.db"
    assert st.browse_hint("http://127.0.0.1:5000").startswith("open http://127.0.0.1:5000")
    assert "***" in st.browse_hint("postgresql://u:secret@db/mlflow") and "secret" not in st.browse_hint(
        "postgresql://u:secret@db/mlflow")


# ------------------------------------------------------------------------------ the quick profile, real children
@pytest.mark.slow  # several minutes on a 2-core CPU; still part of the default run
def test_quick_profile_end_to_end(env, tiny_data, tmp_path):
    """All four models, every table and the figure, from the real child entry points."""
    import math

    import pandas as pd

    from tracking.query import search_study_runs

    out = tmp_path / "report"
    options = st.StudyOptions(profile="quick", data_root=tiny_data, out_dir=out)
    result = st.run_study(options)
    assert result.ok, st.summary_text(result.execution)
    planned = [p for p in result.plan if p.status == "planned"]
    assert {o.status for o in result.execution.outcomes} <= {"done", "NA"}
    assert result.execution.count("done") == len(planned)

    runs = search_study_runs(result.experiment)
    stage = runs[f"tags.{Tag.STAGE}"]
    children = runs[stage.isin([STAGE_PRETRAIN, STAGE_FINETUNE, STAGE_CCA])]
    finished = children[children["status"] == "FINISHED"]
    assert len(finished) == len(planned)
    assert finished[f"tags.{Tag.CONFIG_HASH}"].is_unique
    assert finished[f"tags.{Tag.PARENT_RUN_ID}"].eq(result.parent_run_id).all()

    # Every cell of Tables 1-3 is the mean test_auc of the FINISHED fine-tunes behind it.
    ft = finished[finished[f"tags.{Tag.STAGE}"] == STAGE_FINETUNE]
    key = ft["params.transfer"] + "|" + ft["params.dataset"] + "|" + ft["params.model"] + "|" + ft["params.init"]
    auc = pd.to_numeric(ft["metrics.test_auc"])
    frac = ft["params.ft_fraction"].astype(float).round(3)
    means = auc.groupby([key, frac]).mean()
    columns = {"no_ft": 0.0, "ft_0.1": 0.1, "ft_0.2": 0.2}
    for dataset in st.TARGET_DATASETS:
        table = pd.read_csv(out / f"table_{dataset}.csv")
        assert len(table) == 11  # 4 models x 3 inits, no patch CNN from ImageNet
        assert list(table.columns[:5]) == ["model", "init", "no_ft", "ft_0.1", "ft_0.2"]
        for row in table.to_dict("records"):
            for col, fraction in columns.items():
                expected = means.get((f"all|{dataset}|{row['model']}|{row['init']}", fraction), math.nan)
                where = (dataset, row["model"], row["init"], col)
                if math.isnan(expected):
                    assert math.isnan(row[col]), where
                else:
                    assert row[col] == pytest.approx(expected, abs=1e-9), where
        # Random and DDSM rows ran for every model and fraction.
        filled = table[table["init"] != "imagenet"][["no_ft", "ft_0.1", "ft_0.2"]]
        assert filled.notna().all().all()
    hybrid = pd.read_csv(out / "table_hybrid.csv")
    assert len(hybrid) == 18
    for row in hybrid.itertuples(index=False):
        for transfer in ("all", "hybrid"):
            expected = means.get((f"{transfer}|{row.dataset}|resnet50|{row.init}", round(float(row.ft_fraction), 3)),
                                 math.nan)
            value = getattr(row, transfer)
            assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected, abs=1e-9)
    assert hybrid[hybrid["init"] != "imagenet"][["all", "hybrid"]].notna().all().all()
    cca = pd.read_csv(out / "cca.csv")
    assert set(cca["dataset"]) == set(st.TARGET_DATASETS)
    assert {"similarity", "baseline", "n_runs", "rank_cap"} <= set(cca.columns)
    assert (out / "figure1_cca.png").stat().st_size > 0 and (out / "report.html").is_file()
    # Figure 1 compares the networks the FT 0.2 cells scored: each CCA run names that fine-tune run.
    cca_runs = finished[finished[f"tags.{Tag.STAGE}"] == STAGE_CCA]
    sources = ft[(ft["params.init"] == "ddsm") & (ft["params.model"] == "resnet50") & (ft["params.transfer"] == "all")
                 & (ft["params.ft_fraction"].astype(float) == 0.2)].set_index("params.dataset")["run_id"]
    for row in cca_runs.to_dict("records"):
        assert row[f"tags.{Tag.CCA_SOURCE_RUN_ID}"] == sources[row["params.dataset"]]
    # The report's structure: banner (look-alike data), statistics tables and their columns.
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.splitlines()[2].startswith("> **SYNTHETIC LOOK-ALIKE DATA.")
    assert '<div class="banner"' in (out / "report.html").read_text(encoding="utf-8")
    from tracking.tables import COMBINED_COLUMNS, CONTROLS_COLUMNS, PER_SEED_COLUMNS, POOLED_COLUMNS, PRETRAINING_COLUMNS

    for name, columns in (("delong", COMBINED_COLUMNS), ("delong_seeds", PER_SEED_COLUMNS),
                          ("delong_pooled", POOLED_COLUMNS), ("controls", CONTROLS_COLUMNS),
                          ("pretraining", PRETRAINING_COLUMNS)):
        assert list(pd.read_csv(out / f"{name}.csv").columns) == columns, name
    assert len(pd.read_csv(out / "pretraining.csv")) == 4
    assert set(pd.read_csv(out / "controls.csv")["dataset"]) == set(st.TARGET_DATASETS)
    delong = pd.read_csv(out / "delong.csv")
    assert len(delong) == 3 * 4 * 3 and delong["p_value"].notna().all()  # every DDSM/random pair was tested
    assert result.report_run_id in set(search_study_runs(result.experiment, finished_only=True)["run_id"])

    # Every DDSM-initialised run went through the registry alias, to the version the study's
    # pre-training registered, and the report's checkpoint table traces exactly those runs.
    from tracking.store import get_client

    client = get_client()
    used = finished[finished[f"tags.{Tag.DDSM_SOURCE_RUN_ID}"].notna()]
    assert set(used[f"tags.{Tag.STAGE}"]) == {STAGE_FINETUNE, STAGE_CCA}
    assert len(used) == (ft["params.init"] == "ddsm").sum() + (finished[f"tags.{Tag.STAGE}"] == STAGE_CCA).sum()
    pretrain_runs = finished[finished[f"tags.{Tag.STAGE}"] == STAGE_PRETRAIN]
    checkpoints = pd.read_csv(out / "ddsm_checkpoints.csv", dtype=str)
    assert len(checkpoints) == len(pretrain_runs) == 4
    for row in checkpoints.to_dict("records"):
        champion = client.get_model_version_by_alias(f"ddsm-{row['model']}", "champion")
        assert row["requested"] == f"models:/ddsm-{row['model']}@champion"
        assert (row["registered_model"], row["version"], row["champion_now"]) == (
            f"ddsm-{row['model']}", str(champion.version), str(champion.version))
        source = pretrain_runs[pretrain_runs["params.model"] == row["model"]]
        assert row["source_run_id"] == champion.run_id == source["run_id"].item()
        assert float(row["source_test_auc"]) == pytest.approx(float(source["metrics.test_auc"].item()))
        assert int(row["finished_runs"]) == (used["params.model"] == row["model"]).sum()

    # The planner and the real children agree on every config hash and dataset fingerprint, so a
    # rerun skips everything (compared by hash: a commit during the test would change the code version).
    tagged = dict(zip(finished[f"tags.{Tag.CONFIG_HASH}"], finished[f"tags.{Tag.DATASET_FINGERPRINT}"]))
    assert {p.config_hash: p.fingerprint for p in planned} == tagged
