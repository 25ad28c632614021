"""`tlstudy journal list|clear` on real journal folders written by tracking.logger.Journal."""

from __future__ import annotations

from click.testing import CliRunner

from pipelines.journal import journal_group
from tracking.logger import Journal, clear_command


def write_journal(root, config_hash: str, run_id: str) -> Journal:
    journal = Journal(root / "journal" / config_hash)
    journal.open()
    journal.append("open", journal_id="j", experiment="exp", run_name="finetune mias resnet50", config_hash=config_hash,
                   created_ms=0)
    journal.append("run", run_id=run_id, experiment_id="1")
    journal.append("params", params={"lr": "0.001"})
    return journal


def test_list_then_clear_one_journal(tmp_path):
    for h, run in (("aaaa1111", "r1"), ("bbbb2222", "r2")):
        write_journal(tmp_path, h, run).close()
    runner = CliRunner()
    listed = runner.invoke(journal_group, ["list", "--work-dir", str(tmp_path)])
    assert listed.exit_code == 0
    assert "aaaa1111  pending" in listed.output and "run r1" in listed.output and "'exp'" in listed.output
    assert "bbbb2222" in listed.output
    assert clear_command("aaaa1111") == "tlstudy journal clear --config-hash aaaa1111"
    cleared = runner.invoke(journal_group, ["clear", "--config-hash", "aaaa1111", "--work-dir", str(tmp_path)])
    assert cleared.exit_code == 0, cleared.output
    assert not (tmp_path / "journal" / "aaaa1111").exists() and (tmp_path / "journal" / "bbbb2222").exists()
    assert runner.invoke(journal_group, ["clear", "--all", "--work-dir", str(tmp_path)]).exit_code == 0
    assert list((tmp_path / "journal").iterdir()) == []


def test_a_journal_in_use_is_not_cleared(tmp_path):
    journal = write_journal(tmp_path, "cccc3333", "r3")  # kept open: its lock is held
    try:
        result = CliRunner().invoke(journal_group, ["clear", "--config-hash", "cccc3333", "--work-dir", str(tmp_path)])
        assert result.exit_code == 1 and "in use by a running process" in result.output
        assert (tmp_path / "journal" / "cccc3333").exists()
    finally:
        journal.close()


def test_clear_needs_exactly_one_target(tmp_path):
    runner = CliRunner()
    assert "exactly one" in runner.invoke(journal_group, ["clear", "--work-dir", str(tmp_path)]).output
    missing = runner.invoke(journal_group, ["clear", "--config-hash", "nope", "--work-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "no journal 'nope'" in missing.output
