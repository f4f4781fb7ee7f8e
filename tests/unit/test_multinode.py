"""The accelerate command a training job runs on each node, built from the Slurm environment."""

from __future__ import annotations

import sys

import pytest

from scaling.errors import JobError
from scaling.jobs import multinode as MN
from scaling.records import ModelFacts, Resources, RunSpec, Stage


def _run(nodes: int, gpus: int) -> RunSpec:
    return RunSpec(study="s", run_id="32b/train", size="32b", stage=Stage.train, model=ModelFacts(size="32b"),
                   model_source="Qwen/Qwen3-32B", resources=Resources(nodes=nodes, gpus_per_node=gpus))


def test_one_node_eight_gpus():
    env = {"SLURM_JOB_ID": "1234", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "gpu-07"}
    cmd = MN.accelerate_command(_run(1, 8), env, "/runs/s/32b/train/accelerate.yaml")
    assert cmd == ["accelerate", "launch", "--config_file", "/runs/s/32b/train/accelerate.yaml",
                   "--num_processes", "8", "--num_machines", "1", "--machine_rank", "0",
                   "--main_process_port", "29734", "-m", "scaling.jobs.train", "/runs/s/32b/train/run.yaml"]


@pytest.mark.parametrize("node_id", ["0", "1"])
def test_two_nodes_eight_gpus_each(node_id):
    env = {"SLURM_JOB_ID": "99001", "SLURM_NODEID": node_id, "SLURM_JOB_NODELIST": "gpu-[012-013]"}
    cmd = MN.accelerate_command(_run(2, 8), env, "/r/accelerate.yaml", run_yaml="/r/run.yaml")
    assert cmd[:2] == ["accelerate", "launch"]
    opts = dict(zip(cmd[2:-3:], cmd[3:-3:]))
    assert opts["--num_processes"] == "16" and opts["--num_machines"] == "2"
    assert opts["--machine_rank"] == node_id
    assert opts["--main_process_ip"] == "gpu-012"  # the first host, same on every node
    assert opts["--main_process_port"] == str(29500 + 99001 % 1000)
    assert "--same_network" in cmd and cmd[-3:] == ["-m", "scaling.jobs.train", "/r/run.yaml"]


def test_master_port_from_environment_wins():
    env = {"MASTER_PORT": "31000", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "a,b"}
    cmd = MN.accelerate_command(_run(2, 4), env, "/c.yaml")
    assert cmd[cmd.index("--main_process_port") + 1] == "31000"
    assert cmd[cmd.index("--main_process_ip") + 1] == "a"


def test_mismatched_allocation_fails_at_once():
    with pytest.raises(JobError, match="SLURM_JOB_NODELIST"):
        MN.accelerate_command(_run(2, 8), {}, "/c.yaml")
    with pytest.raises(JobError, match="allocation has 1"):
        MN.accelerate_command(_run(2, 8), {"SLURM_JOB_NODELIST": "a", "SLURM_NODEID": "0"}, "/c.yaml")
    with pytest.raises(JobError, match="node rank"):
        MN.accelerate_command(_run(2, 8), {"SLURM_JOB_NODELIST": "a[1-2]", "SLURM_NODEID": "5"}, "/c.yaml")
    with pytest.raises(JobError, match="gpus_per_node"):
        MN.accelerate_command(_run(1, 0), {}, "/c.yaml")


@pytest.mark.parametrize("nodelist,hosts", [
    ("node1", ["node1"]),
    ("gpu-[01-03]", ["gpu-01", "gpu-02", "gpu-03"]),
    ("gpu-[01-02,05],login1", ["gpu-01", "gpu-02", "gpu-05", "login1"]),
    ("a[1-2]-ib", ["a1-ib", "a2-ib"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
])
def test_nodelist_expansion(nodelist, hosts):
    assert MN.expand_nodelist(nodelist) == hosts


def test_single_gpu_worker_is_one_python_process(tmp_path):
    cmd = MN.worker_command(_run(1, 1), {}, tmp_path, entry="scaling.jobs.train:main")
    assert cmd[0] == sys.executable and cmd[-2:] == ["scaling.jobs.train:main", str(tmp_path / "run.yaml")]


def _train_run(nodes: int, gpus: int, tp: int, mode: str) -> RunSpec:
    from scaling.records import TrainSettings, VllmMode

    return RunSpec(study="s", run_id="32b/train", size="32b", stage=Stage.train, model=ModelFacts(size="32b"),
                   model_source="Qwen/Qwen3-32B",
                   train=TrainSettings(vllm_mode=VllmMode(mode), zero_stage=3, rollout_limit=8192, finetune=None),
                   resources=Resources(nodes=nodes, gpus_per_node=gpus, tensor_parallel=tp))


def test_server_mode_single_node_splits_gpus_between_vllm_and_training(tmp_path):
    env = {"SLURM_JOB_ID": "5", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "n1", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    procs = MN.worker_processes(_train_run(1, 8, 2, "server"), env, tmp_path, entry="scaling.jobs.train:main",
                                model_path="/models/q")
    roles = {role: (cmd, extra) for role, cmd, extra in procs}
    server, sext = roles["server"]
    assert server[:4] == ["trl", "vllm-serve", "--model", "/models/q"] and sext["CUDA_VISIBLE_DEVICES"] == "6,7"
    assert server[server.index("--tensor_parallel_size") + 1] == "2"
    worker, wext = roles["worker"]
    assert wext["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5"
    assert worker[worker.index("--num_processes") + 1] == "6"
    assert (tmp_path / "accelerate.yaml").exists()


def test_server_mode_two_nodes_serves_from_node0_only(tmp_path):
    base = {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "g[1-2]"}
    node1 = MN.worker_processes(_train_run(2, 8, 2, "server"), {**base, "SLURM_NODEID": "1"}, tmp_path,
                                entry="scaling.jobs.train:main", model_path="/m")
    assert [r for r, _, _ in node1] == ["worker"]
    cmd, extra = node1[0][1], node1[0][2]
    assert extra["SCALING_VLLM_HOST"] == "g1" and cmd[cmd.index("--num_processes") + 1] == "12"
    assert cmd[cmd.index("--machine_rank") + 1] == "1"


def test_colocate_multi_gpu_is_one_accelerate_launch(tmp_path):
    procs = MN.worker_processes(_train_run(1, 8, 1, "colocate"), {"SLURM_JOB_ID": "5"}, tmp_path,
                                entry="scaling.jobs.train:main")
    assert [(r, c[:2]) for r, c, _ in procs] == [("worker", ["accelerate", "launch"])]
