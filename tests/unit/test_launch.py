"""Launcher logic against an in-memory scheduler: order, afterok, arrays, preflight, dry-run,
lock, status, resume, cancel, secrets. No subprocess, no Slurm."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.slurm.bodies (job entries)

from scaling import launch as L  # noqa: E402
from scaling import executors as E  # noqa: E402
from scaling import status as ST  # noqa: E402
from scaling import supervise as SV  # noqa: E402
from scaling import durable  # noqa: E402
from scaling import studydir as sd  # noqa: E402
from scaling.errors import LaunchError  # noqa: E402
from tests.slurm import bodies as B  # noqa: E402


class FakeScheduler:
    """A scheduler with afterok dependencies kept in memory; ``run_all`` plays the cluster."""

    name = "fake"
    handles_dependencies = True

    def __init__(self, problems: list[str] | None = None):
        self.problems = problems or []
        self.submitted: list[dict[str, Any]] = []
        self.state: dict[str, str] = {}
        self.bodies: dict[str, SV.JobBody] = {}
        self.after: dict[str, list[str]] = {}
        self.cancelled: list[str] = []
        self._n = 100

    def describe(self, job, *, items, after, folder):
        return {"executor": "fake", "sbatch": [f"#SBATCH --job-name={job.name}"] + (
            [f"#SBATCH --dependency=afterok:{':'.join(after)}"] if after else [])}

    def preflight(self, jobs):
        return list(self.problems)

    def submit(self, job, bodies, *, folder, after):
        self._n += 1
        ids = [f"{self._n}_{i}" if job.array else str(self._n) for i in range(len(bodies))]
        for jid, body in zip(ids, bodies):
            self.state[jid] = "pending"
            self.bodies[jid] = pickle.loads(pickle.dumps(body))  # what a node would receive
            self.after[jid] = list(after)
        self.submitted.append({"run_id": job.run_id, "ids": ids, "after": list(after),
                               "items": [b.item for b in bodies]})
        return ids

    def states(self, job_ids, folders):
        return {j: {"state": self.state.get(j, "ended")} for j in job_ids}

    def cancel(self, job_ids):
        self.cancelled += job_ids
        for j in job_ids:
            self.state[j] = "cancelled"

    def run_all(self):
        """Run pending jobs whose dependencies succeeded (afterok), in waves; kill the rest."""
        progress = True
        while progress:
            progress = False
            for jid, st in list(self.state.items()):
                if st != "pending":
                    continue
                deps = [d for a in self.after[jid] for d in self.state if d == a or d.split("_")[0] == a.split("_")[0]]
                if any(self.state[d] in ("failed", "cancelled") for d in deps):
                    self.state[jid] = "cancelled"  # kill-on-invalid-dep
                    progress = True
                    continue
                if all(self.state[d] == "succeeded" for d in deps):
                    try:
                        self.bodies[jid]()
                        self.state[jid] = "succeeded"
                    except Exception:
                        self.state[jid] = "failed"
                    progress = True


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(B.REPO_ROOT))
    return tmp_path / "runs"


def _launch(plan, runs, ex, **kw):
    return L.launch(B.FakeStudy(plan.study), plan, executor=ex, runs_dir=runs, poll_s=0.0, **kw)


def test_launch_submits_in_dependency_order_with_afterok_ids(runs):
    ex = FakeScheduler()
    plan = B.small_study("s")
    assert _launch(plan, runs, ex) == 0
    order = [s["run_id"] for s in ex.submitted]
    assert order.index("a/train") < order.index("a/eval-trained")
    train_id = next(s["ids"][0] for s in ex.submitted if s["run_id"] == "a/train")
    trained = next(s for s in ex.submitted if s["run_id"] == "a/eval-trained")
    assert trained["after"] == [train_id] and trained["items"] == ["x", "y"]
    assert next(s for s in ex.submitted if s["run_id"] == "a/eval-base")["after"] == []
    m = sd.read_manifest(runs / "s")
    assert m["runs"]["a/eval-trained"]["item_ids"] == dict(zip(["x", "y"], trained["ids"]))
    for f in ("study.yaml", "plan.json", "a/train/run.yaml", "b/eval-trained/run.yaml"):
        assert (runs / "s" / f).exists(), f


def test_dry_run_submits_and_writes_nothing(runs, capsys):
    ex = FakeScheduler()
    assert _launch(B.small_study("s"), runs, ex, dry_run=True) == 0
    out = capsys.readouterr().out
    assert ex.submitted == [] and not (runs / "s").exists()
    assert "#SBATCH --job-name=s.a.train" in out and "nothing is submitted" in out
    assert "#SBATCH --dependency=afterok:<a/train>" in out


def test_preflight_lists_every_problem_and_submits_nothing(runs):
    ex = FakeScheduler(problems=["a/train: asks 9 GPUs", "partition 'gpu' does not exist"])
    with pytest.raises(LaunchError) as err:
        _launch(B.small_study("s"), runs, ex)
    msg = str(err.value)
    assert "2 problem(s)" in msg and "(1) a/train: asks 9 GPUs" in msg and "(2) partition" in msg
    assert "\n" not in msg and ex.submitted == []


def test_bad_study_name_is_refused_before_anything_happens(runs):
    ex = FakeScheduler()
    with pytest.raises(LaunchError, match="not allowed"):
        _launch(B.plan("../up", [B.job("a/train", "ok")]), runs, ex)
    assert ex.submitted == [] and not runs.exists()


def test_dependency_cycle_and_unknown_dependency_are_refused(runs):
    cyc = B.plan("c", [B.job("a/x", "ok", after=["a/y"]), B.job("a/y", "ok", after=["a/x"])])
    with pytest.raises(LaunchError, match="cycle"):
        _launch(cyc, runs, FakeScheduler())
    unknown = B.plan("u", [B.job("a/x", "ok", after=["a/nope"])])
    with pytest.raises(LaunchError, match="not in the plan"):
        _launch(unknown, runs, FakeScheduler())


def test_second_launch_while_jobs_are_live_is_refused(runs):
    ex = FakeScheduler()
    plan = B.small_study("s")
    _launch(plan, runs, ex)
    n = len(ex.submitted)
    with pytest.raises(LaunchError, match="already launched"):
        _launch(plan, runs, ex)
    assert len(ex.submitted) == n


def test_launch_is_refused_while_another_process_holds_the_lock(runs):
    (runs / "s").mkdir(parents=True)
    (runs / "s" / ".lock").write_text(f'{{"pid": {os.getppid()}, "host": "{os.uname().nodename}", "since": 0, '
                                      '"command": "launch"}')
    ex = FakeScheduler()
    with pytest.raises(LaunchError, match="locked"):
        _launch(B.small_study("s"), runs, ex)
    assert ex.submitted == []


def test_relaunch_with_a_different_plan_is_refused(runs):
    ex = FakeScheduler()
    _launch(B.small_study("s"), runs, ex)
    ex.run_all()
    other = B.plan("s", [B.job("a/train", "ok")])
    with pytest.raises(LaunchError, match="different plan"):
        _launch(other, runs, ex)


def test_resume_reruns_only_failed_items_and_never_done_runs(runs):
    ex = FakeScheduler()
    plan = B.plan("s", [B.job("a/train", "fail_first", study="s"),
                        B.job("a/eval-trained", "item", after=["a/train"], array=["x", "y"], study="s"),
                        B.job("a/eval-base", "item_fail_first", array=["good", "bad"], study="s"),
                        B.job("b/train", "ok", study="s")])
    _launch(plan, runs, ex)
    ex.run_all()
    states = ST.refresh_states(runs / "s", sd.read_manifest(runs / "s"), ex)
    assert states["a/train"]["state"] == "failed"
    assert states["a/eval-trained"]["state"] == "blocked"
    assert states["a/eval-base"]["state"] == "failed" and states["a/eval-base"]["items_done"] == 1
    assert states["b/train"]["state"] == "done"
    first = len(ex.submitted)
    assert L.resume("s", runs_dir=runs, executor=ex, poll_s=0.0) == 0
    again = ex.submitted[first:]
    assert sorted(s["run_id"] for s in again) == ["a/eval-base", "a/eval-trained", "a/train"]
    assert next(s for s in again if s["run_id"] == "a/eval-base")["items"] == ["bad"]
    new_train = next(s for s in again if s["run_id"] == "a/train")["ids"]
    assert next(s for s in again if s["run_id"] == "a/eval-trained")["after"] == new_train
    ex.run_all()
    states = ST.refresh_states(runs / "s", sd.read_manifest(runs / "s"), ex)
    assert all(s["state"] == "done" for s in states.values())
    m = sd.read_manifest(runs / "s")
    assert m["runs"]["b/train"]["attempts"] == 1 and m["runs"]["a/train"]["attempts"] == 2
    # a finished study: resume submits nothing
    n = len(ex.submitted)
    L.resume("s", runs_dir=runs, executor=ex, poll_s=0.0)
    assert len(ex.submitted) == n


def test_a_job_that_returns_without_done_counts_as_failed(runs):
    ex = FakeScheduler()
    _launch(B.plan("s", [B.job("a/train", "no_done", study="s")]), runs, ex)
    ex.run_all()
    st = ST.refresh_states(runs / "s", sd.read_manifest(runs / "s"), ex)["a/train"]
    assert st["state"] == "failed" and "DONE" in st["detail"]


def test_status_prints_the_truth(runs, capsys, monkeypatch):
    ex = FakeScheduler()
    _launch(B.plan("s", [B.job("a/train", "ok", study="s"), B.job("a/eval-base", "boom", study="s")]), runs, ex)
    ex.run_all()
    ex.state["999"] = "running"
    sd.update_manifest(runs / "s", lambda m: m["runs"].__setitem__(
        "c/train", {**sd.run_entry(runs / "s", "c/train"), "job_id": "999", "job": m["runs"]["a/train"]["job"]}))
    monkeypatch.setattr(ST, "executor_for", lambda manifest, requested="auto": ex)  # status asks the fake
    capsys.readouterr()
    ST.status("s", runs_dir=runs)
    out = capsys.readouterr().out
    assert "a/train" in out and "done" in out and "failed" in out and "running" in out
    m = sd.read_manifest(runs / "s")
    assert m["runs"]["a/eval-base"]["state"] == "failed" and m["runs"]["a/train"]["state"] == "done"


def test_cancel_cancels_only_live_jobs(runs, monkeypatch):
    ex = FakeScheduler()
    _launch(B.plan("s", [B.job("a/train", "ok", study="s"), B.job("b/train", "ok", study="s")]), runs, ex)
    ex.state[ex.submitted[0]["ids"][0]] = "succeeded"
    monkeypatch.setattr(L, "executor_for", lambda manifest, requested="auto": ex)
    assert L.cancel("s", runs_dir=runs) == 0
    assert ex.cancelled == ex.submitted[1]["ids"]
    assert sd.read_manifest(runs / "s")["runs"]["b/train"]["state"] == "cancelled"


def test_local_style_drive_runs_in_order_and_blocks_dependents_of_a_failure(runs):
    plan = B.plan("d", [B.job("a/train", "boom", study="d"), B.job("a/eval-trained", "ok", after=["a/train"], study="d"),
                        B.job("b/train", "ok", study="d"), B.job("b/eval", "item", array=["x", "y"], study="d")])
    assert L.launch(B.FakeStudy("d"), plan, executor="debug", runs_dir=runs, poll_s=0.0) == 1
    m = sd.read_manifest(runs / "d")
    states = ST.refresh_states(runs / "d", m, E.DebugExecutor())
    assert states["b/train"]["state"] == "done" and states["b/eval"]["state"] == "done"
    assert states["a/eval-trained"]["state"] == "blocked"
    assert m["runs"]["a/eval-trained"]["attempts"] == 0
    err = next((runs / "d" / "a" / "train" / "logs").glob("*.err")).read_text()
    assert "this body always fails" in err


def test_job_body_pickles_only_strings_and_calls_the_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    body = SV.JobBody("tests.slurm.bodies:item", str(tmp_path / "a" / "eval" / "run.yaml"), "x")
    blob = pickle.dumps(body)
    assert b"hf_secret_value_123" not in blob
    (tmp_path / "a" / "eval").mkdir(parents=True)
    pickle.loads(blob)()
    assert durable.is_done(tmp_path / "a" / "eval" / "x")
    with pytest.raises(LaunchError, match="module:function"):
        SV.run_entry("no_colon", "x")


def test_secrets_are_never_written_into_the_study(runs, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_TOPSECRET_abcdef")
    monkeypatch.setenv("WANDB_API_KEY", "wandb_TOPSECRET_123456")
    plan = B.small_study("sec")
    assert L.launch(B.FakeStudy("sec"), plan, executor="debug", runs_dir=runs, poll_s=0.0) == 0
    out = (runs / "sec" / "a" / "train" / "out.json").read_text()
    assert '"secret_seen": true' in out  # the job saw the token through its environment
    for path in (runs / "sec").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"TOPSECRET" not in data, path


def test_auto_executor_is_local_without_sbatch(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    ex = E.make_executor("auto", B.plan("s", [B.job("a/t", "ok")]).profile)
    assert ex.name == "local" and not ex.handles_dependencies


def test_auto_executor_is_local_when_no_cluster_is_configured(monkeypatch, capsys):
    import shutil

    from scaling import slurm as S

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.setattr(S, "_SLURM_CONF_PATHS", ())
    monkeypatch.setattr(S, "_run", lambda cmd, timeout_s=30.0: __import__("subprocess").CompletedProcess(cmd, 1, "", "x"))
    assert E.make_executor("auto", B.plan("s", []).profile).name == "local"
    assert "no cluster is configured" in capsys.readouterr().out
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm.conf")
    assert S.cluster_available()
    with pytest.raises(LaunchError, match="unknown"):
        E.make_executor("pbs", B.plan("s", []).profile)


def test_cancel_works_while_a_waiting_launch_holds_the_lock(runs, monkeypatch):
    ex = FakeScheduler()
    _launch(B.plan("w", [B.job("a/train", "ok", study="w")]), runs, ex)
    monkeypatch.setattr(L, "executor_for", lambda manifest, requested="auto": ex)
    with sd.study_lock(runs / "w", "launch"):
        assert L.cancel("w", runs_dir=runs) == 0
    assert ex.cancelled == ex.submitted[0]["ids"]
    st = ST.refresh_states(runs / "w", sd.read_manifest(runs / "w"), ex)["a/train"]
    assert st["state"] == "cancelled" and st["detail"] == "by scaling cancel"


def test_status_watch_refreshes_until_nothing_is_live(runs, monkeypatch, capsys):
    ex = FakeScheduler()
    _launch(B.plan("watch", [B.job("a/train", "ok", study="watch"),
                             B.job("a/eval", "item", after=["a/train"], array=["x"], study="watch")]), runs, ex)
    monkeypatch.setattr(ST, "executor_for", lambda manifest, requested="auto": ex)
    sleeps: list[float] = []

    def fake_sleep(s: float) -> None:  # the cluster advances while status sleeps
        sleeps.append(s)
        ex.run_all()

    monkeypatch.setattr(L.time, "sleep", fake_sleep)
    assert ST.status("watch", runs_dir=runs, watch=True, poll_s=7.0) == 0
    assert sleeps == [7.0]
    assert {e["state"] for e in sd.read_manifest(runs / "watch")["runs"].values()} == {"done"}


def test_local_parallelism_follows_the_cpu_profile_cores_per_job():
    from scaling.records import ClusterProfile

    cpu = ClusterProfile(name="cpu", gpus_per_node=0, cpus_per_node=4)
    one_core = B.plan("p", [B.job("a/train", "ok", cpus=1, study="p"), B.job("b/train", "ok", cpus=1, study="p")], cpu)
    two_cores = B.plan("p", [B.job("a/train", "ok", cpus=1, study="p"), B.job("b/train", "ok", cpus=2, study="p")], cpu)
    assert E.local_parallel(one_core) == 4
    assert E.local_parallel(two_cores) == 2  # the widest job decides
    gpu = ClusterProfile(name="gpu", gpus_per_node=8, gpu_mem_gb=80, gpu_tflops=900, cpus_per_node=64)
    assert E.local_parallel(B.plan("p", [B.job("a/train", "ok", cpus=1, gpus=1, study="p")], gpu)) == 1


class Recorder(E.DebugExecutor):
    """The debug executor, remembering the order in which runs were submitted."""

    def __init__(self):
        super().__init__()
        self.order: list[str] = []

    def submit(self, job, bodies, *, folder, after):
        self.order.append(job.run_id)
        return super().submit(job, bodies, folder=folder, after=after)


def test_with_several_local_slots_the_largest_size_starts_first(runs):
    import json

    plan = B.plan("w", [B.job("small/train", "ok", study="w"), B.job("big/train", "ok", study="w"),
                        B.job("big/eval-trained", "ok", after=["big/train"], study="w")])
    sdir = runs / "w"
    sdir.mkdir(parents=True)
    (sdir / sd.PLAN_JSON).write_text(json.dumps({"runs": [
        {"run_id": "small/train", "model": {"params_total": 1e5}},
        {"run_id": "big/train", "model": {"params_total": 3e6}},
        {"run_id": "big/eval-trained", "model": {"params_total": 3e6}}]}))
    weights = L._size_weights(sdir)
    assert weights["big/train"] == 3e6
    ex = Recorder()
    sd.update_manifest(sdir, lambda m: m["runs"].update(
        {j.run_id: {**sd.run_entry(sdir, j.run_id, items=[]), "job": L._job_to_dict(j)} for j in plan.jobs}),
        create=sd.new_manifest("w", "debug"))
    L._drive(sdir, ex, plan.jobs, poll_s=0.0, parallel=2, weights=weights)
    assert ex.order == ["big/train", "small/train", "big/eval-trained"]  # dependencies still hold


def test_a_ready_run_with_a_longer_chain_ahead_starts_before_a_bigger_models_evaluation(runs):
    """Critical-path order (issue 12: the tiny ladder's small sizes used to start last, after the
    big sizes' evaluations, and their sft -> train -> eval chains made the tail). Here the
    evaluation belongs to the larger model, yet the small size's SFT, with two jobs waiting on it,
    starts first; estimates come from the jobs' ``hours``."""
    import dataclasses

    hours = {"big/eval-base": 0.02, "big/eval-trained": 0.02, "big/train": 0.1, "small/train": 0.05,
             "small/eval-trained": 0.02}
    specs = [B.job("big/eval-base", "ok", study="c"), B.job("big/train", "ok", study="c"),
             B.job("small/train", "ok", study="c"),
             B.job("small/eval-trained", "ok", after=["small/train"], study="c")]
    jobs = [dataclasses.replace(j, hours=hours[j.run_id]) for _, j in specs]
    path = L.critical_path_s(jobs)
    assert path["small/train"] == pytest.approx((0.05 + 0.02) * 3600) and path["big/eval-base"] == pytest.approx(72)
    sdir = runs / "c"
    sdir.mkdir(parents=True)
    ex = Recorder()
    sd.update_manifest(sdir, lambda m: m["runs"].update(
        {j.run_id: {**sd.run_entry(sdir, j.run_id, items=[]), "job": L._job_to_dict(j)} for j in jobs}),
        create=sd.new_manifest("c", "debug"))
    L._drive(sdir, ex, jobs, poll_s=0.0, parallel=2, weights={"big/eval-base": 3e6, "big/train": 3e6})
    assert ex.order[:2] == ["big/train", "small/train"], ex.order  # not big/eval-base
    assert ex.order.index("small/eval-trained") > ex.order.index("small/train")


# ------------------------------------------------------------------ issue 14: reliability
ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-7d41e0b9c2"
INJECTIONS = [  # (--set items, recipe text appended) that used to put an environment value in plan.json
    (["train.dataset.prompt_suffix=${oc.env:SCALING_CANARY}"], ""),
    (["train.max_steps=${oc.env:SCALING_CANARY_INT}"], ""),  # needs type conversion: the omegaconf path
    (["train.dataset.prompt_suffix=${oc.env:SCALING_CANARY}", "train.max_steps=7"], ""),
    ([], "sft: {dataset: {prompt_suffix: '${oc.env:SCALING_CANARY}'}, batch_size: '8'}\n"),
    ([], "sizes: {0_1m: {train: {dataset: {source: '${oc.env:SCALING_CANARY}'}, max_steps: '3'}}}\n"),
]


@pytest.mark.parametrize("overrides, extra", INJECTIONS)
def test_no_written_file_ever_holds_an_environment_value(tmp_path, monkeypatch, overrides, extra):
    """Interpolation is refused (check/plan/launch), and whatever is accepted and launched
    writes no environment value to plan.json, study.yaml, run.yaml, manifest or logs."""
    from scaling.errors import RecipeError
    from scaling.plan import make_plan
    from scaling.recipe import load_study

    monkeypatch.setenv("SCALING_CANARY", CANARY)
    monkeypatch.setenv("SCALING_CANARY_INT", "918273645")
    monkeypatch.setenv("HF_TOKEN", CANARY + "-hf")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("include: [tiny-ladder.yaml]\nstudy: {name: canary}\n" + extra)
    monkeypatch.setenv("SCALING_RECIPES", str(ROOT / "recipes"))
    runs = tmp_path / "runs"
    try:
        study = load_study(recipe, overrides=overrides, sizes=["0_1m"])
    except RecipeError as err:
        assert "interpolation is not allowed" in str(err) and CANARY not in str(err)
        study = load_study(recipe, sizes=["0_1m"]) if not extra else None
    if study is not None:
        plan = make_plan(study)
        ex = FakeScheduler()
        assert L.launch(study, plan, executor=ex, runs_dir=runs, poll_s=0.0) == 0
        ex.run_all = None  # nothing runs: the files launch writes are what matters here
        written = [p for p in runs.rglob("*") if p.is_file()]
        assert any(p.name == "plan.json" for p in written) and any(p.name == "run.yaml" for p in written)
        for p in written:
            data = p.read_bytes()
            assert CANARY.encode() not in data and b"918273645" not in data, p


def test_a_run_yaml_with_interpolation_is_refused_not_resolved(monkeypatch):
    from scaling.errors import RecordError
    from scaling.records import DatasetSpec, from_dict

    monkeypatch.setenv("SCALING_CANARY", CANARY)
    with pytest.raises(RecordError, match=r"prompt_suffix: '\$\{\.\.\.\}' interpolation is not allowed"):
        from_dict(DatasetSpec, {"prompt_suffix": "${oc.env:SCALING_CANARY}", "max_rows": "5"})


class NamedScheduler(FakeScheduler):
    """FakeScheduler that can be asked for jobs by name, as squeue -n does on a cluster."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.names: dict[str, str] = {}

    def submit(self, job, bodies, *, folder, after):
        ids = super().submit(job, bodies, folder=folder, after=after)
        for j in ids:
            self.names[j] = job.name
        return ids

    def find_submitted(self, name, folder, since_ts):
        return sorted(j for j, n in self.names.items() if n == name and self.state.get(j) in ("pending", "running"))


class _Killed(BaseException):
    """Stands for SIGKILL of the launcher (tests/slurm/test_submit_window.py kills it for real)."""


def test_a_launcher_killed_inside_the_submit_window_never_causes_a_twin(runs):
    class DiesAfterSubmit(NamedScheduler):
        died = False

        def submit(self, job, bodies, *, folder, after):
            ids = super().submit(job, bodies, folder=folder, after=after)
            if job.run_id == "a/train" and not self.died:  # the scheduler has it; the manifest does not
                self.died = True
                raise _Killed()
            return ids

    ex = DiesAfterSubmit()
    plan = B.plan("w", [B.job("a/train", "ok", study="w"),
                        B.job("a/eval-trained", "item", after=["a/train"], array=["x", "y"], study="w")])
    with pytest.raises(_Killed):
        _launch(plan, runs, ex)
    assert sd.read_manifest(runs / "w")["runs"]["a/train"]["job_id"] is None  # the id never reached the manifest
    assert L.resume("w", runs_dir=runs, executor=ex, poll_s=0.0) == 0
    trains = [s for s in ex.submitted if s["run_id"] == "a/train"]
    assert len(trains) == 1, ex.submitted  # adopted, not submitted again
    m = sd.read_manifest(runs / "w")
    assert m["runs"]["a/train"]["job_id"] == trains[0]["ids"][0] and "submitting" not in m["runs"]["a/train"]
    assert m["runs"]["a/train"]["history"][-1].get("how") == "adopted"
    dep = next(s for s in ex.submitted if s["run_id"] == "a/eval-trained")
    assert dep["after"] == trains[0]["ids"]  # the dependent waits on the adopted job
    ex.run_all()
    states = ST.refresh_states(runs / "w", sd.read_manifest(runs / "w"), ex)
    assert all(s["state"] == "done" for s in states.values())


def test_a_submission_the_scheduler_never_got_is_resubmitted_once(runs):
    class DiesBeforeSubmit(NamedScheduler):
        died = False

        def submit(self, job, bodies, *, folder, after):
            if job.run_id == "a/train" and not self.died:
                self.died = True
                raise _Killed()
            return super().submit(job, bodies, folder=folder, after=after)

    ex = DiesBeforeSubmit()
    with pytest.raises(_Killed):
        _launch(B.plan("w", [B.job("a/train", "ok", study="w")]), runs, ex)
    assert L.resume("w", runs_dir=runs, executor=ex, poll_s=0.0) == 0
    assert [s["run_id"] for s in ex.submitted] == ["a/train"]


def test_a_submission_in_doubt_is_unknown_while_the_scheduler_cannot_answer(runs):
    class Silent(NamedScheduler):
        def find_submitted(self, name, folder, since_ts):
            return None

    ex = Silent()
    _launch(B.plan("w", [B.job("a/train", "ok", study="w")]), runs, ex)
    sd.update_manifest(runs / "w", lambda m: m["runs"]["a/train"].update(
        {"submitting": {"name": "w.a.train", "items": [], "ts": 0.0}, "job_id": None}))
    n = len(ex.submitted)
    st = ST.refresh_states(runs / "w", sd.read_manifest(runs / "w"), ex)["a/train"]
    assert st["state"] == "unknown" and "in doubt" in st["detail"]
    L.resume("w", runs_dir=runs, executor=ex, poll_s=0.0)
    assert len(ex.submitted) == n  # never submitted while in doubt


def test_local_liveness_is_pid_and_start_time(runs):
    """A recycled pid (same number, another process) is not our job; the launcher stores the
    start time of every local pid it submits."""

    class FakeLocal(FakeScheduler):
        name = "local"
        handles_dependencies = False

        def submit(self, job, bodies, *, folder, after):
            self.submitted.append({"run_id": job.run_id})
            return [str(os.getpid())]  # pretend the job is this very process

        def states(self, job_ids, folders):  # what submitit's local executor judges: the pid exists
            return {j: {"state": "running" if sd.pid_alive(int(j)) else "ended"} for j in job_ids}

    ex = FakeLocal()
    plan = B.plan("p", [B.job("a/train", "ok", study="p")])
    sdir = runs / "p"
    sd.update_manifest(sdir, lambda m: m["runs"].__setitem__("a/train", sd.run_entry(sdir, "a/train")),
                       create=sd.new_manifest("p", "local"))
    L._submit_one(sdir, ex, plan.jobs[0], [], [])
    e = sd.read_manifest(sdir)["runs"]["a/train"]
    assert e["pid_starts"] == {str(os.getpid()): sd.pid_start_time(os.getpid())}
    assert ST.refresh_states(sdir, sd.read_manifest(sdir), ex)["a/train"]["state"] == "running"
    sd.update_manifest(sdir, lambda m: m["runs"]["a/train"]["pid_starts"].update({str(os.getpid()): 12345}))
    st = ST.refresh_states(sdir, sd.read_manifest(sdir), ex)["a/train"]
    assert st["state"] == "failed" and "another process" in st["detail"]


def test_resume_cleans_temporary_files_a_sigkill_left(runs):
    import time as _t

    ex = FakeScheduler()
    _launch(B.plan("t", [B.job("a/train", "boom", study="t")]), runs, ex)
    ex.run_all()
    torn = runs / "t" / "a" / "train" / ".records.parquet.x1y2.tmp"
    torn.write_text("torn")
    os.utime(torn, (_t.time() - 120, _t.time() - 120))
    top = runs / "t" / ".manifest.json.z9.tmp"
    top.write_text("torn")
    os.utime(top, (_t.time() - 3600, _t.time() - 3600))
    L.resume("t", runs_dir=runs, executor=ex, poll_s=0.0)
    assert not torn.exists() and not top.exists()


def test_a_full_disk_during_launch_is_one_line_and_relaunch_completes_it(tmp_path, monkeypatch, capsys):
    """ENOSPC at the manifest write (after study.yaml, plan.json, run.yaml): exit 2, one line,
    no temporary file, no half-written file; resume says what happened; relaunch submits."""
    import errno

    from scaling.cli import main

    runs = tmp_path / "runs"
    recipe = str(ROOT / "recipes" / "tiny-ladder.yaml")
    real = os.replace

    def full(src, dst, *a, **kw):
        if str(dst).endswith("manifest.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", full)
    code = main(["launch", recipe, "--sizes", "0_1m", "--runs-dir", str(runs), "--executor", "debug"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "ENOSPC" in err and "manifest.json" in err, err
    monkeypatch.setattr(os, "replace", real)
    sdir = runs / "tiny-ladder"
    assert not list(sdir.rglob("*.tmp")) and not (sdir / sd.MANIFEST).exists()
    assert json.loads((sdir / sd.PLAN_JSON).read_text())["study"] == "tiny-ladder"  # complete, not torn
    assert main(["resume", "tiny-ladder", "--runs-dir", str(runs)]) == 2
    assert "launch stopped before submitting anything" in capsys.readouterr().err
    from scaling.plan import make_plan
    from scaling.recipe import load_study

    study = load_study(recipe, sizes=["0_1m"])
    ex = FakeScheduler()
    assert L.launch(study, make_plan(study), executor=ex, runs_dir=runs, poll_s=0.0) == 0
    assert len(ex.submitted) == len(make_plan(study).jobs)


@pytest.mark.parametrize("code", ["EROFS", "EACCES"])
def test_a_read_only_runs_dir_is_one_line(tmp_path, monkeypatch, capsys, code):
    """Root ignores chmod and this machine cannot mount a read-only tmpfs (no CAP_SYS_ADMIN), so
    the refusal is injected at mkdir, the first system call a launch makes in --runs-dir."""
    import errno

    from scaling.cli import main

    num = getattr(errno, code)

    def ro(path, *a, **kw):
        raise OSError(num, os.strerror(num), str(path))

    monkeypatch.setattr(os, "mkdir", ro)
    rc = main(["launch", str(ROOT / "recipes" / "tiny-ladder.yaml"), "--sizes", "0_1m", "--runs-dir",
               str(tmp_path / "runs"), "--executor", "debug"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and code in err and "Traceback" not in err, err


def test_a_twin_job_body_refuses_to_write_a_run_another_job_is_writing(tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv("PYTHONPATH", str(B.REPO_ROOT))
    run_yaml = tmp_path / "s" / "a" / "sft" / "run.yaml"
    run_yaml.parent.mkdir(parents=True)
    run_yaml.write_text("study: s\n")
    inside, release = threading.Event(), threading.Event()

    def live_job():
        with sd.writer_lock(run_yaml.parent):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=live_job)
    t.start()
    assert inside.wait(10)
    try:
        with pytest.raises(LaunchError, match="another live job is writing this run"):
            SV.JobBody(f"{B.M}:ok", str(run_yaml))()
        assert not (run_yaml.parent / "DONE").exists()
    finally:
        release.set()
        t.join()
