"""scaling.prefetch: what a plan needs downloaded (no network), offline refusal, failures reported."""

from __future__ import annotations

import pytest

import scaling.prefetch as pf
from scaling.errors import LaunchError
from scaling.prefetch import PrefetchItem, is_remote, plan_prefetch, prefetch
from scaling.records import (
    ClusterProfile,
    DatasetSpec,
    EvalSettings,
    ModelFacts,
    Plan,
    RunSpec,
    Stage,
    TrainSettings,
)


def _run(run_id, stage, source, init_from="", **kw):
    return RunSpec(study="s", run_id=run_id, size=run_id.split("/")[0], stage=stage,
                   model=ModelFacts(hf_id=source), model_source=source, init_from=init_from, **kw)


def _plan(tmp_path):
    local = tmp_path / "local.jsonl"
    local.write_text('{"problem": "1", "answer": "1"}\n')
    runs = [
        _run("8b/train", Stage.train, "Qwen/Qwen3-8B",
             train=TrainSettings(dataset=DatasetSpec(source="taki555/DeepScaleR-Easy"))),
        _run("8b/eval-base", Stage.eval, "Qwen/Qwen3-8B",
             eval=EvalSettings(benchmarks=["aime25", "gpqa_diamond", str(local)])),
        _run("8b/eval-trained", Stage.eval, "Qwen/Qwen3-8B", init_from="8b/train",
             eval=EvalSettings(benchmarks=["aime25"])),
        _run("0_1m/train", Stage.train, "tiny://0_1m",
             train=TrainSettings(dataset=DatasetSpec(source="task://arith?split=train&n=10"))),
        _run("4b/train", Stage.train, str(tmp_path), train=TrainSettings(dataset=DatasetSpec(source=str(local)))),
    ]
    return Plan(study="s", profile=ClusterProfile(), runs=runs, jobs=[], gpu_hours=0.0)


def test_plan_lists_hub_models_and_datasets_once_and_skips_local_and_tiny(tmp_path):
    items = plan_prefetch(_plan(tmp_path))
    assert items == [
        PrefetchItem("model", "Qwen/Qwen3-8B", used_by="8b/train"),
        PrefetchItem("dataset", "taki555/DeepScaleR-Easy", None, "train", "8b/train"),
        PrefetchItem("dataset", "math-ai/aime25", None, "test", "8b/eval-base"),
        PrefetchItem("dataset", "Idavidrein/gpqa", "gpqa_diamond", "train", "8b/eval-base"),
    ]


@pytest.mark.parametrize(
    "source, remote",
    [("Qwen/Qwen3-8B", True), ("tiny://0_1m", False), ("task://arith", False), ("/data/x", False),
     ("data/x.jsonl", False), ("./model", False), ("", False), (None, False), ("a/b/c", False)],
)
def test_remote_sources(source, remote):
    assert is_remote(source) is remote


def test_prefetch_refuses_offline_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LaunchError, match="HF_HUB_OFFLINE"):
        prefetch(_plan(tmp_path))


def test_prefetch_downloads_every_item_into_the_cache_and_reports_failures(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "before"))
    calls = []
    monkeypatch.setattr(pf, "_download_model", lambda repo, cache: calls.append(("model", repo, cache)) or "ok")

    def fake_dataset(repo, subset, split, cache):
        calls.append(("dataset", repo, cache))
        if repo == "Idavidrein/gpqa":
            raise PermissionError("gated dataset: accept the terms")
        return "1 rows"

    monkeypatch.setattr(pf, "_download_dataset", fake_dataset)
    cache = tmp_path / "hf"
    with pytest.raises(LaunchError, match="1 of 4 downloads failed.*gpqa.*gated"):
        prefetch(_plan(tmp_path), cache_dir=cache)
    assert [c[1] for c in calls] == ["Qwen/Qwen3-8B", "taki555/DeepScaleR-Easy", "math-ai/aime25", "Idavidrein/gpqa"]
    assert all(c[2] == cache.resolve() for c in calls)
    monkeypatch.setattr(pf, "_download_dataset", lambda *a: "1 rows")
    assert prefetch(_plan(tmp_path), cache_dir=cache) == 0
