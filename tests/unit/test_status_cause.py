"""`scaling status` names why a run failed and how far a training job has got; `scaling logs`
prints a run's logs (issue 26, items 1 and 4). Failures run on the real debug executor; Slurm's own
lines are checked as Slurm prints them; progress is read from a run directory holding the files a
training job writes (signals.jsonl, checkpoints/checkpoint-*/trainer_state.json)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scaling import executors as E  # noqa: E402
from scaling import launch as L  # noqa: E402
from scaling import progress as P  # noqa: E402
from scaling import runlogs as R  # noqa: E402
from scaling import status as ST  # noqa: E402
from scaling import studydir as sd  # noqa: E402
from scaling.cli import main  # noqa: E402
from tests.slurm import bodies as B  # noqa: E402

FJ = "tests.integration.failing_jobs"


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A debug study: a missing dataset (the job's own loader), an array with one failing item, a
    run that succeeds."""
    monkeypatch.setenv("PYTHONPATH", str(B.REPO_ROOT))
    runs = tmp_path / "runs"
    ds_run, ds_job = B.job("0_6b/sft", "ok", study="c")
    ds_job = type(ds_job)(**{**ds_job.__dict__, "entry": f"{FJ}:missing_dataset"})
    plan = B.plan("c", [(ds_run, ds_job), B.job("0_6b/eval-base", "item_fail_first", array=["good", "bad_one"],
                                                 study="c"), B.job("1b/train", "ok", study="c")])
    assert L.launch(B.FakeStudy("c"), plan, executor="debug", runs_dir=runs, poll_s=0.0) == 1
    return runs / "c"


def _rows(sdir: Path) -> dict[str, dict]:
    m = sd.read_manifest(sdir)
    states = ST.refresh_states(sdir, m, E.DebugExecutor())
    return {r["run"]: r for r in ST._status_rows(sdir, m, states)}


def test_a_failed_runs_cause_is_its_own_exception_line_with_the_log_and_line(study):
    rows = _rows(study)
    r = rows["0_6b/sft"]
    assert r["state"] == "failed"
    assert r["cause"].startswith("scaling.errors.JobError: dataset.source: ") and "does not exist" in r["cause"]
    path, line_no = r["cause_at"].rsplit(":", 1)
    assert Path(path).parent == study / "0_6b" / "sft" / "logs"
    assert Path(path).read_text().splitlines()[int(line_no) - 1] == r["cause"]
    item = rows["0_6b/eval-base"]  # an array: the cause of its failed item
    assert item["cause"] == "RuntimeError: planned failure of item bad_one", item
    assert rows["1b/train"]["cause"] == ""


def test_the_table_fits_80_columns_and_keeps_the_causes_fix(study):
    from rich.console import Console

    m = sd.read_manifest(study)
    states = ST.refresh_states(study, m, E.DebugExecutor())
    buf = io.StringIO()
    Console(file=buf, width=80, color_system=None).print(ST.status_table(study, m, states, width=80), crop=False)
    lines = buf.getvalue().splitlines()
    assert max(len(ln) for ln in lines) <= 80, "\n".join(lines)
    row = next(ln for ln in lines if ln.startswith("0_6b/sft ")).rstrip()
    assert row.endswith("a hub id or a task:// URI"), row  # the cause's fix stays; the whole line is below
    item = next(ln for ln in lines if ln.startswith("0_6b/eval-base ")).rstrip()
    assert "RuntimeError: planned failure of item" in item, item  # no fix: its start


def test_status_prints_the_whole_cause_and_the_log_below_the_table(study, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    assert main(["status", str(study)]) == 0
    out = capsys.readouterr().out
    assert max(len(ln) for ln in out.splitlines()) <= 80, out
    one = out.replace("\n", "")
    cause = _rows(study)["0_6b/sft"]
    assert cause["cause"].replace(" ", "") in one.replace(" ", "")
    assert cause["cause_at"] in one  # the path and line, folded but never cut
    assert "scaling logs" in out


@pytest.mark.parametrize("text,expect", [
    # slurmstepd's lines, as Slurm 23 prints them into the job's .err
    ("step 3\nslurmstepd: error: *** JOB 42 ON node1 CANCELLED AT 2026-12-08T00:00:00 DUE TO TIME LIMIT ***\n"
     "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nKeyboardInterrupt\n",
     "timed out: slurmstepd: error: *** JOB 42 ON node1 CANCELLED AT 2026-12-08T00:00:00 DUE TO TIME LIMIT ***"),
    ("slurmstepd: error: Detected 1 oom_kill event in StepId=42.0. Some of the step tasks have been OOM Killed.\n",
     "killed for memory: slurmstepd: error: Detected 1 oom_kill event in StepId=42.0."),
    ("slurmstepd: error: *** JOB 42 ON node1 CANCELLED AT 2026-12-08T00:00:00 DUE TO PREEMPTION ***\n",
     "preempted: "),
    # a chained error: the job's own one-line error (raised from the library's) is the cause
    ("Traceback (most recent call last):\n  File \"a\", line 1\nomegaconf.errors.ValidationError: bad\n\n"
     "The above exception was the direct cause of the following exception:\n\n"
     "Traceback (most recent call last):\n  File \"b\", line 2\n"
     "scaling.errors.JobError: run.yaml: not a valid run spec: bad\n"
     "Traceback (most recent call last):\n  File \"c\", line 3\n"
     "RuntimeError: scaling.jobs.train:main /r/run.yaml exited with status 1\n",
     "scaling.errors.JobError: run.yaml: not a valid run spec: bad"),
    ("Traceback (most recent call last):\n  File \"c\", line 3\n"
     "RuntimeError: scaling.jobs.train:main /r/run.yaml exited with status -11\n",
     "killed by SIGSEGV (a crash in native code)"),
])
def test_failure_cause_reads_slurms_and_pythons_lines(tmp_path, text, expect):
    log = tmp_path / "7_0_log.err"
    log.write_text(text)
    cause = R.failure_cause([log])
    assert cause is not None and cause.line.startswith(expect), cause


def test_logs_prints_an_item_or_every_item_and_refuses_unknown_names(study, capsys):
    capsys.readouterr()
    assert main(["logs", str(study), "0_6b/eval-base/bad_one"]) == 0
    out = capsys.readouterr().out
    assert out.count("==> ") == 1 and "planned failure of item bad_one" in out
    assert main(["logs", str(study), "0_6b/eval-base"]) == 0
    out = capsys.readouterr().out
    assert out.count("==> ") == 2 and "job completed" in out  # the good item's log, then the bad one's
    for bad, says in (("0_6b/eval-base/nope", "has no item 'nope'"), ("0_6b/sf", "did you mean 0_6b/sft?"),
                      ("0_6b/sft --tail 0", "--tail 0: must be a positive")):
        assert main(["logs", str(study), *bad.split()]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err and "Traceback" not in err, err


def test_logs_hides_secret_values(study, capsys, monkeypatch):
    log = next((study / "0_6b" / "sft" / "logs").glob("*_log.err"))
    log.write_text(log.read_text() + "token hf_secretvalue123 leaked\n")
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123")
    capsys.readouterr()
    assert main(["logs", str(study), "0_6b/sft", "--tail", "1"]) == 0
    out = capsys.readouterr().out
    assert "hf_secretvalue123" not in out and "<HF_TOKEN>" in out


# ------------------------------------------------------------------------------ progress (item 4)
def _training_dir(job_dir: Path, *, signals: list[tuple[int, float]], ckpt: tuple[int, int, float] | None,
                  max_steps: int = 24) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "run.yaml").write_text(f"train:\n  max_steps: {max_steps}\nsft:\n  max_steps: -1\n")
    with open(job_dir / "signals.jsonl", "w") as fh:
        for step, reward in signals:
            fh.write(json.dumps({"step": step, "reward_mean": reward, "tokens_mean": 50.0}) + "\n")
        fh.write('{"step": 99, "rew')  # a torn last line (a crash mid-append) is skipped
    if ckpt:
        step, total, loss = ckpt
        d = job_dir / "checkpoints" / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "trainer_state.json").write_text(json.dumps(
            {"global_step": step, "max_steps": total, "log_history": [{"loss": loss + 1, "step": 1},
                                                                     {"loss": loss, "step": step}]}))


def test_job_progress_reads_the_newest_of_signals_and_the_trainer_state(tmp_path):
    grpo = tmp_path / "train"
    _training_dir(grpo, signals=[(1, 0.1), (12, 0.41)], ckpt=(10, 24, 0.5))
    p = R.job_progress(grpo, "train")
    assert (p.step, p.total, p.metric, p.value) == (12, 24, "reward", 0.41) and p.text == "step 12/24  reward 0.41"
    sft = tmp_path / "sft"  # SFT logs no rewards: the checkpoint's state, its planned steps when -1 in run.yaml
    _training_dir(sft, signals=[], ckpt=(300, 800, 0.8125))
    assert R.job_progress(sft, "sft").text == "step 300/800  loss 0.8125"
    assert R.job_progress(tmp_path / "nothing", "train") is None
    assert R.job_progress(grpo, "eval-base") is None


class RunningDebug(E.DebugExecutor):
    """The debug executor with every submitted job still running (a scheduler's view mid-run)."""

    def states(self, job_ids, folders):
        return {j: {"state": "running", "elapsed_s": 60.0} for j in job_ids}


def test_status_and_wait_lines_show_a_running_training_jobs_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(B.REPO_ROOT))
    runs = tmp_path / "runs"
    plan = B.plan("p", [B.job("1m/train", "no_done", study="p"), B.job("1m/eval-base", "no_done", study="p")])
    L.launch(B.FakeStudy("p"), plan, executor="debug", runs_dir=runs, poll_s=0.0)
    sdir = runs / "p"
    _training_dir(sdir / "1m" / "train", signals=[(3, 0.25)], ckpt=None)
    m = sd.read_manifest(sdir)
    states = ST.refresh_states(sdir, m, RunningDebug())
    assert states["1m/train"]["progress"] == "step 3/24  reward 0.25"
    assert "progress" not in states["1m/eval-base"]
    rows = {r["run"]: r for r in ST._status_rows(sdir, m, states)}
    assert ST._note(rows["1m/train"]) == "step 3/24  reward 0.25"
    # launch --wait in a pipe: a line when the step first shows, none while it is unchanged or newer
    # than STEP_LINE_S, one again after
    clock = [1000.0]
    monkeypatch.setattr(P.time, "time", lambda: clock[0])
    prog = P.Progress(2, lines=True)
    capsys.readouterr()
    prog.update(states)
    first = capsys.readouterr().out
    assert "1m/train  step 3/24  reward 0.25" in first
    _training_dir(sdir / "1m" / "train", signals=[(3, 0.25), (4, 0.3)], ckpt=None)
    clock[0] += 5
    prog.update(ST.refresh_states(sdir, m, RunningDebug()))
    assert "step 4/24" not in capsys.readouterr().out
    clock[0] += P.STEP_LINE_S
    prog.update(ST.refresh_states(sdir, m, RunningDebug()))
    assert "1m/train  step 4/24  reward 0.3" in capsys.readouterr().out
