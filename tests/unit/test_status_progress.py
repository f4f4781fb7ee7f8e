"""What a person watching a study sees: `scaling status` in an 80-column terminal, and the progress
lines `launch --wait` prints when its output goes to a pipe (issue 12, points 3 and 4)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scaling import launch as L  # noqa: E402
from scaling import executors as E  # noqa: E402
from scaling import progress as P  # noqa: E402
from scaling import status as ST  # noqa: E402
from scaling import studydir as sd  # noqa: E402
from tests.slurm import bodies as B  # noqa: E402

FIX = "run `scaling prefetch recipes/qwen3-ladder.yaml` on a node with internet"
LONG = ("scaling.errors.JobError: Qwen/Qwen3-8B: not in the local Hugging Face cache and the hub is unreachable "
        f"(HF_HUB_OFFLINE=1); {FIX}")


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A finished debug study with long run ids, an array, a failure whose log line ends with a fix,
    a blocked dependant and a run never submitted."""
    monkeypatch.setenv("PYTHONPATH", str(B.REPO_ROOT))
    runs = tmp_path / "runs"
    plan = B.plan("st", [B.job("1_3m_a0_4m/eval-base", "item", array=["tiny_arith", "math500"], study="st"),
                         B.job("1_3m_a0_4m/sft", "ok", study="st"),
                         B.job("30b_a3b/train", "boom", study="st"),
                         B.job("30b_a3b/eval-trained", "item", after=["30b_a3b/train"], array=["aime25"], study="st")])
    assert L.launch(B.FakeStudy("st"), plan, executor="debug", runs_dir=runs, poll_s=0.0) == 1
    sdir = runs / "st"
    logs = sdir / "30b_a3b" / "train" / "logs"
    jid = sd.read_manifest(sdir)["runs"]["30b_a3b/train"]["job_id"]  # the failed job's own log (status reads it)
    (logs / f"{jid}_0_log.err").write_text("Traceback (most recent call last):\n  ...\n" + LONG + "\n")
    return sdir


def _render(sdir: Path, width: int, wide: bool = False) -> list[str]:
    from rich.console import Console

    m = sd.read_manifest(sdir)
    states = ST.refresh_states(sdir, m, E.DebugExecutor())
    buf = io.StringIO()
    console = Console(file=buf, width=100_000 if wide else width, force_terminal=False, color_system=None)
    console.print(ST.status_table(sdir, m, states, width=width, wide=wide), crop=False)
    return buf.getvalue().splitlines()


def _row_lines(lines: list[str], run_ids: list[str]) -> dict[str, list[int]]:
    return {r: [i for i, ln in enumerate(lines) if ln.startswith(r + " ")] for r in run_ids}


@pytest.mark.parametrize("width", [80, 100, 60, 140])
def test_status_fits_the_terminal_without_wrapping_a_cell(study, width):
    lines = _render(study, width)
    assert max(len(ln) for ln in lines) <= width, "\n".join(lines)
    runs = list(sd.read_manifest(study)["runs"])
    rows = _row_lines(lines, runs)
    assert all(len(v) == 1 for v in rows.values()), f"a run is not on exactly one line:\n" + "\n".join(lines)
    # every line is the title, the header, the rule under it, a run's row, or blank: nothing wrapped
    body = [ln for ln in lines if ln.strip()]
    assert len(body) == 3 + len(runs), "\n".join(lines)
    failed = lines[rows["30b_a3b/train"][0]].rstrip()
    # the cell keeps the end of the line (where the fix is); the whole line is printed below the
    # table by `scaling status` (test_status_command_prints_the_whole_failure_line_below_the_table)
    assert failed.endswith("internet"), f"the end of the line must stay visible: {failed!r}"
    if width >= 140:
        assert FIX in failed, f"the fix sentence must stay visible: {failed!r}"
    assert "not_submitted" in "\n".join(lines) or "blocked" in "\n".join(lines)
    assert "blocked" in lines[rows["30b_a3b/eval-trained"][0]]


def test_status_wide_shows_every_column_and_whole_cells(study):
    lines = _render(study, 80, wide=True)
    text = "\n".join(lines)
    assert "job id" in text and "attempts" in text
    row = [ln for ln in lines if ln.startswith("30b_a3b/train ")]
    assert len(row) == 1 and LONG in row[0]
    assert "debug-" in row[0]  # the job id


def test_status_command_prints_the_whole_failure_line_below_the_table(study, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert ST.status("st", runs_dir=study.parent) == 0
    out = capsys.readouterr().out
    assert max(len(ln) for ln in out.splitlines()) <= 80, out
    assert FIX in " ".join(out.split()), out  # wrapped at words below the table, never cut


@pytest.mark.parametrize("line,width,expect", [
    ("short line", 40, "short line"),
    (LONG, 90, f"… {FIX}"),
    (LONG, 60, "…" + FIX[-59:]),
    ("x" * 100, 20, "…" + "x" * 19),
])
def test_fit_log_line_keeps_the_fix(line, width, expect):
    out = ST.fit_log_line(line, width)
    assert len(out) <= width and out.endswith(expect)


def test_hints_name_the_runs_dir_so_they_run_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert L.study_ref(Path("runs") / "a") == "a"
    other = tmp_path / "elsewhere" / "a"
    ref = L.study_ref(other)
    assert ref == f"a --runs-dir {other.parent}"
    other.mkdir(parents=True)
    sd.update_manifest(other, lambda m: None, create=sd.new_manifest("a", "debug"))
    from scaling.cli import main

    assert main(["status", *ref.split()]) == 0  # runnable as printed


# ------------------------------------------------------------------------------ progress
SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from scaling import launch as L
from tests.slurm import bodies as B
plan = B.plan("prog", [B.job("a/train", "slow", study="prog"), B.job("b/train", "slow", study="prog"),
                       B.job("a/eval-trained", "slow", after=["a/train"], study="prog")])
sys.exit(L.launch(B.FakeStudy("prog"), plan, executor="local", runs_dir={runs!r}, wait=True, poll_s=0.2))
"""

LINE = re.compile(r"^(\d\d:\d\d:\d\d)  (\S+/\S+)  (pending|running|done|failed)\b.*\|  (\d+)/3 done  elapsed "
                  r"\d+:\d\d:\d\d")


def test_launch_wait_to_a_pipe_prints_state_changes_while_it_runs(tmp_path):
    """The local executor runs three real subprocess jobs of ~2 s each (a/eval-trained after
    a/train), with stdout a pipe: each state change must reach the pipe when it happens, not at
    exit."""
    env = dict(os.environ, PYTHONPATH=str(B.REPO_ROOT), SCALING_TEST_SLEEP_S="2")
    code = SCRIPT.format(root=str(B.REPO_ROOT), runs=str(tmp_path / "runs"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=B.REPO_ROOT, env=env, text=True, bufsize=1)
    seen: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append((time.monotonic(), line.rstrip("\n")))
    proc.wait(timeout=120)
    end = time.monotonic()
    text = "\n".join(ln for _, ln in seen)
    assert proc.returncode == 0, text
    assert seen[0][1].split("  ", 1)[1].startswith("following 3 run(s)"), text
    changes = [(t, LINE.match(ln)) for t, ln in seen if LINE.match(ln)]
    done = [(t, m) for t, m in changes if m.group(3) == "done"]
    assert {m.group(2) for _, m in done} == {"a/train", "b/train", "a/eval-trained"}, text
    counts = [int(m.group(4)) for _, m in done]
    assert counts == sorted(counts) and counts[-1] == 3, text
    # the first job's "done" line was read from the pipe while the next jobs still ran (>= 2 x 2 s)
    assert end - done[0][0] > 2.0, f"lines arrived only at the end:\n{text}"
    assert any(re.search(r"  left ~\d+:\d\d:\d\d$", m.string) for _, m in changes[:-1]), f"no time left:\n{text}"


def test_an_array_between_two_items_prints_no_state_line(capsys):
    """The local driver submits an array's next item once the previous one ends: for a moment the
    run has an item done and none submitted. That is no state change a person should read
    (it printed "running", "not_submitted", "running" for one evaluation)."""
    prog = P.Progress(2, lines=True)
    run = "1m/eval-base"
    seq = [{"state": "not_submitted", "items_done": 0}, {"state": "running", "items_done": 0},
           {"state": "not_submitted", "items_done": 1}, {"state": "running", "items_done": 1},
           {"state": "done", "items_done": 2}]
    for s in seq:
        prog.update({run: s, "1m/sft": {"state": "done"}})
    lines = [ln for ln in capsys.readouterr().out.splitlines() if f"  {run}  " in ln]
    assert [ln.split("  ")[2] for ln in lines] == ["running", "done"], lines


# ------------------------------------------------------------------- GPU work without GPUs
def test_a_gpu_study_on_a_machine_without_gpus_is_refused_before_anything_starts(tmp_path, monkeypatch, capsys,
                                                                                   off_cluster):
    from scaling.cli import main

    monkeypatch.chdir(B.REPO_ROOT)  # off_cluster: no Slurm client on PATH, as on a laptop
    monkeypatch.setattr(E, "gpus_here", lambda: 0)

    def started(*a, **k):  # were the refusal missing, nothing real may start from a unit test
        raise AssertionError("a GPU job was started on a machine without GPUs")

    monkeypatch.setattr(L, "_drive_all", started)
    monkeypatch.setattr(L, "_submit_scheduled", started)
    rc = main(["launch", "recipes/qwen3-ladder.yaml", "--sizes", "0.6B", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    for alternative in ("--executor slurm", "--dry-run", "scaling launch recipes/tiny-ladder.yaml", "--force"):
        assert alternative in err, err
    assert "no GPU" in err and "nothing was started" in err
    assert not (tmp_path / "runs").exists()  # nothing written
    # the CPU ladder is not refused, and --dry-run of the GPU study shows its #SBATCH lines
    assert main(["launch", "recipes/qwen3-ladder.yaml", "--sizes", "0.6B", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --gpus-per-node=" in out and "no Slurm cluster is configured here" in out


def test_force_runs_a_gpu_plan_here_anyway(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(B.REPO_ROOT))
    monkeypatch.setattr(E, "gpus_here", lambda: 0)
    plan = B.plan("forced", [B.job("a/train", "ok", gpus=8, study="forced")])
    with pytest.raises(L.LaunchError, match="asks 8 GPU"):
        L.launch(B.FakeStudy("forced"), plan, executor="debug", runs_dir=tmp_path, poll_s=0.0)
    assert not (tmp_path / "forced").exists()
    assert L.launch(B.FakeStudy("forced"), plan, executor="debug", runs_dir=tmp_path, poll_s=0.0, force=True) == 0


def test_gpus_here_follows_cuda_visible_devices(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert E.gpus_here() == 0
