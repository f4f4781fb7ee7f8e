"""The training job under the REAL ``accelerate launch`` (torchrun, gloo on CPU), started with the
command the project builds for a Slurm node (``jobs.multinode.worker_processes`` /
``accelerate_command``, config from ``jobs.distributed``):

* one node, 2 processes (what a 2-GPU job runs);
* two "nodes" on localhost: two launchers (machine_rank 0 and 1, one process each) that meet at
  the rendezvous the multi-node builder sets (first host of SLURM_JOB_NODELIST, the job's port);
* DeepSpeed ZeRO-2 and ZeRO-3 (marked slow) on CPU, 2 processes (DeepSpeed's CPU accelerator);
  before issue 11's fix the workers died with accelerate's "When using `deepspeed_config_file`,
  the following accelerate config variables will be ignored".

The jobs ask for GPUs in run.yaml (that is what selects the multi-process launch); this machine
has none, so accelerate falls back to MULTI_CPU with gloo, which the worker prints and the test
checks. Each test takes about a minute on 2 cores (Python imports of 2 processes dominate).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from scaling.records import (DatasetSpec, Finetune, Resources, RewardSpec, RunSpec, Shaping, Stage, TrainSettings,
                             to_dict)
from scaling.task import task_uri

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_job(root: Path, model_dir: str, *, nodes: int, gpus: int, zero: int = 0) -> Path:
    from scaling.jobs.tiny import tiny_facts

    train = TrainSettings(rollout_limit=16, num_generations=4, prompts_per_step=2, learning_rate=1e-3,
                          max_steps=STEPS, finetune=Finetune.full, save_steps=100, logging_steps=1, zero_stage=zero,
                          dataset=DatasetSpec(source=task_uri("train", 16), prompt_suffix="Answer in \\boxed{}."),
                          reward=RewardSpec(shaping=Shaping.truncation, target_length=8))
    run = RunSpec(study="t", run_id="0_1m/train", size="0_1m", stage=Stage.train, model=tiny_facts("0_1m"),
                  model_source=model_dir, train=train, seed=0,
                  resources=Resources(nodes=nodes, gpus_per_node=gpus, cpus_per_task=1, mem_gb=4, timeout_min=10))
    job = root / "study" / "0_1m" / "train"
    job.mkdir(parents=True)
    (job / "run.yaml").write_text(yaml.safe_dump(to_dict(run)))
    return job


def _node_command(job: Path, env: dict[str, str]) -> list[str]:
    from scaling.jobs.multinode import worker_processes
    from scaling.jobs.train import load_run

    procs = worker_processes(load_run(job / "run.yaml"), env, job, entry="scaling.jobs.train:main")
    [(role, cmd, extra)] = procs
    assert role == "worker" and cmd[:2] == ["accelerate", "launch"] and not extra
    return cmd


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "ACCELERATE_", "MASTER_", "WORLD_SIZE",
                                                                       "RANK", "LOCAL_RANK"))}
    return env | {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                  "PYTHONPATH": str(REPO)} | extra


def _check_done(job: Path, out: str, processes: int, kind: str = "MULTI_CPU on cpu") -> None:
    from scaling.durable import read_done

    assert f"[train] {processes} process(es), {kind}" in out, out[-4000:]
    done = read_done(job)
    assert done is not None and done["steps"] == STEPS, out[-4000:]
    assert (job / "model" / "config.json").is_file()


def test_two_process_accelerate_launch_trains_with_the_generated_command(tmp_path, tiny_qwen3_dir):
    job = _train_job(tmp_path, tiny_qwen3_dir, nodes=1, gpus=2)
    env = _env(SLURM_JOB_ID="1", MASTER_PORT=str(_free_port()))
    cmd = _node_command(job, env)
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    _check_done(job, out, 2)


def test_two_node_rendezvous_on_localhost_through_the_multinode_builder(tmp_path, tiny_qwen3_dir):
    job = _train_job(tmp_path, tiny_qwen3_dir, nodes=2, gpus=1)
    port = str(_free_port())
    envs = [_env(SLURM_JOB_ID="2", SLURM_JOB_NODELIST="localhost,localhost", SLURM_NODEID=str(rank),
                 MASTER_PORT=port) for rank in (0, 1)]
    cmds = [_node_command(job, e) for e in envs]
    for rank, cmd in enumerate(cmds):
        assert cmd[cmd.index("--machine_rank") + 1] == str(rank)
        assert cmd[cmd.index("--main_process_ip") + 1] == "localhost"
        assert cmd[cmd.index("--num_machines") + 1] == "2"
    procs = [subprocess.Popen(c, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c, e in zip(cmds, envs)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(o[-3000:] for o in outs)
    _check_done(job, outs[0], 2)


def _deepspeed_cpu_error() -> str | None:
    try:
        import deepspeed  # noqa: F401
    except Exception as err:  # not installed in this environment
        return f"deepspeed not importable: {err}"
    return None


@pytest.mark.skipif(_deepspeed_cpu_error() is not None,
                    reason="deepspeed is not installed (pip install -e '.[test]' -c tests/constraints.txt)")
@pytest.mark.parametrize("zero", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_deepspeed_zero_two_processes_on_cpu(tmp_path, tiny_qwen3_dir, zero):
    job = _train_job(tmp_path, tiny_qwen3_dir, nodes=1, gpus=2, zero=zero)
    env = _env(SLURM_JOB_ID="3", MASTER_PORT=str(_free_port()))
    cmd = _node_command(job, env)
    cfg = yaml.safe_load((job / "accelerate.yaml").read_text())
    assert cfg["distributed_type"] == "DEEPSPEED" and "mixed_precision" not in cfg
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    _check_done(job, out, 2, kind=f"DEEPSPEED on cpu, ZeRO-{zero}")
