"""The commands the README and docs say need no cluster run on a machine with no Slurm client
(issue 21): each is run as a user runs it, a subprocess of the installed ``scaling`` command,
with a PATH that holds no sbatch/squeue/srun/sinfo (``tests/pathenv.py``: a real PATH, nothing
mocked), no SLURM_CONF, and an environment as bare as ``env -i`` leaves it (PATH, HOME, LANG).
Each command's documented output is asserted; ``test_docs.py`` runs every documented command
in-process under the same PATH.

    python -m pytest tests/unit/test_laptop_commands.py -q
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_docs import COMMANDS  # noqa: E402  (the docs' own command extractor)

README = [c for c in COMMANDS if c.doc.name == "README.md" and "needs" not in c.marks]


def _bare_env(path: str, home: Path) -> dict[str, str]:
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def _scaling(argv: list[str], path: str, cwd: Path, home: Path, **kw) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("scaling", path=path)
    assert exe, f"the scaling command is not on the scrubbed PATH {path}"
    return subprocess.run([exe, *argv], cwd=cwd, env=_bare_env(path, home), capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.fixture
def laptop(tmp_path, no_slurm_path):
    """A scratch working directory linking the repository's recipes/ and slurm/, and a HOME."""
    assert shutil.which("sbatch", path=no_slurm_path) is None and shutil.which("srun", path=no_slurm_path) is None
    work = tmp_path / "work"
    work.mkdir()
    for name in ("recipes", "slurm", "tests"):
        (work / name).symlink_to(ROOT / name)
    home = tmp_path / "home"
    home.mkdir()
    return no_slurm_path, work, home


def test_the_readme_lists_laptop_commands_and_a_dry_run():
    texts = [c.text for c in README]
    assert any(t.startswith("scaling plan ") for t in texts), texts
    assert any("--dry-run" in t for t in texts), texts


@pytest.mark.parametrize("cmd", README, ids=[c.text for c in README])
def test_readme_laptop_command_runs_without_slurm(cmd, laptop):
    path, work, home = laptop
    res = _scaling(cmd.argv, path, work, home)
    out = res.stdout
    assert res.returncode == 0, f"{cmd.where}: `{cmd.text}` exited {res.returncode}:\n{res.stderr[-1500:]}"
    assert "Traceback" not in res.stderr, res.stderr
    recipe = cmd.argv[1]
    if cmd.argv[0] == "plan" and "--explain" in cmd.argv:  # every resolved value and its source
        size = cmd.argv[cmd.argv.index("--explain") + 1]
        assert out.startswith(f"{size} (") and "every resolved value and its source" in out.splitlines()[0], out[:300]
        assert re.search(r"\brule:\w+", out) and "families/qwen3/" in out, out[:2000]
    elif cmd.argv[0] == "plan":  # the plan table: study, profile, the sizes asked for
        study = Path(recipe).stem
        profile = cmd.argv[cmd.argv.index("--profile") + 1] if "--profile" in cmd.argv else None
        assert out.startswith(f"study {study}"), out[:300]
        assert profile is None or f"profile {profile}" in out.splitlines()[0], out[:300]
    if "--dry-run" in cmd.argv:
        lines = out.splitlines()
        assert "nothing is submitted" in lines[0] + lines[1]
        sbatch = [ln for ln in lines if re.match(r"^\s+#SBATCH --", ln)]
        heads = [ln for ln in lines if re.match(r"^\S+/\S+\s+\S+\s+entry=", ln)]
        commands = [ln.strip() for ln in lines if re.match(r"^\s+\$ sbatch ", ln)]
        assert heads and sbatch, out[:2000]
        assert len(commands) == len(heads), "one sbatch command line per job"
        for c in commands:  # the command submitit runs: sbatch <the job's log folder>/.submission_file_<uuid>.sh
            argv = shlex.split(c[2:])
            assert argv[0] == "sbatch" and argv[1].endswith("/logs/.submission_file_<uuid>.sh"), c
        # a GPU study shows what the cluster would be given: GPUs, time, the requeue of training
        assert any("--gpus-per-node=" in ln for ln in sbatch) and any("--time=" in ln for ln in sbatch)
        assert any(ln.strip() == "#SBATCH --requeue" for ln in sbatch)
        assert not (work / "runs").exists(), "a dry run wrote into runs/"


def test_dry_run_with_an_explicit_slurm_executor_needs_no_slurm_either(laptop):
    path, work, home = laptop
    res = _scaling(["launch", "recipes/tiny-ladder.yaml", "--profile", "ci_single_node", "--executor", "slurm",
                    "--dry-run"], path, work, home)
    assert res.returncode == 0, res.stderr
    assert "with the slurm executor; nothing is submitted" in res.stdout.splitlines()[0], res.stdout[:300]
    assert re.search(r"^    #SBATCH --job-name=tiny-ladder\.", res.stdout, re.M), res.stdout[:1000]
    assert not (work / "runs").exists()


def test_a_real_launch_with_the_slurm_executor_says_what_is_missing(laptop):
    path, work, home = laptop
    res = _scaling(["launch", "recipes/tiny-ladder.yaml", "--profile", "ci_single_node", "--executor", "slurm"],
                   path, work, home)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "sbatch" in res.stderr and "not found on PATH" in res.stderr and "--dry-run" in res.stderr
    assert not (work / "runs").exists(), "nothing is written when nothing can be submitted"


@pytest.mark.parametrize("argv", [["launch", "recipes/qwen3-ladder.yaml", "--dry-run"],
                                  ["plan", "recipes/qwen3-ladder.yaml", "--explain", "8b"]],
                         ids=["dry-run", "plan-explain"])
def test_a_closed_pipe_ends_quietly(argv, laptop):
    """`scaling ... | head`: the reader goes away before we are done writing; no traceback."""
    path, work, home = laptop
    exe = shutil.which("scaling", path=path)
    proc = subprocess.Popen([exe, *argv], cwd=work, env=_bare_env(path, home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does after its line
    _, err = proc.communicate(timeout=120)
    assert first.strip(), "printed nothing"
    assert "Traceback" not in err and "BrokenPipe" not in err and err.strip() == "", err
