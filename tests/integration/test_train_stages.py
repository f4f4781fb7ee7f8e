"""The stages around GRPO on CPU: curation (pass-rate band, histogram, resume, train reads the
curated set) and SFT on reasoning traces (a saved model that is more likely to emit </think>)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scaling.records import (
    CurateSettings,
    DatasetSpec,
    RunSpec,
    SftSettings,
    Stage,
    TrainSettings,
    to_dict,
)
from scaling.task import task_uri

pytestmark = pytest.mark.integration


def _run(root: Path, model_dir: str, stage: Stage, **kw) -> Path:
    from scaling.jobs.tiny import tiny_facts

    run = RunSpec(
        study="t",
        run_id=f"0_1m/{stage.value}",
        size="0_1m",
        stage=stage,
        model=tiny_facts("0_1m"),
        model_source=model_dir,
        seed=0,
        **kw,
    )
    job = root / "study" / "0_1m" / stage.value
    job.mkdir(parents=True, exist_ok=True)
    (job / "run.yaml").write_text(yaml.safe_dump(to_dict(run)))
    return job / "run.yaml"


class CannedGenerator:
    """Answers correctly on every k-th sample for prompts whose index is even (pass rate 1.0 or
    0.25), so the band and histogram are known in advance. Counts generate() calls."""

    calls = 0

    def __init__(self, tokenizer_dir: str, answers: dict[str, str]):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.answers = answers

    def generate(self, prompts, *, n, max_tokens, temperature, top_p, top_k, seed):
        from scaling.jobs.sampling import Sample

        CannedGenerator.calls += 1
        out = []
        for p in prompts:
            problem = next(q for q in self.answers if q in p)
            right, idx = self.answers[problem], list(self.answers).index(problem)
            group = []
            for j in range(n):
                good = idx % 2 == 0 or j == 0
                text = f"<think>ok</think> \\boxed{{{right if good else 'nope'}}}"
                group.append(Sample(token_ids=[1] * 5, text=text, finished=True))
            out.append(group)
        return out

    def close(self):
        return None


def test_curate_keeps_the_easy_band_writes_histogram_and_resumes(tmp_path, tiny_qwen3_dir, monkeypatch):
    from scaling.jobs import curate, data
    from scaling.jobs import generate as gen_mod
    from scaling.records import DatasetSpec as DS
    from scaling.durable import read_done

    source = task_uri("train", 6)
    rows = data.load_problems(DS(source=source))
    answers = {r["problem"]: r["answer"] for r in rows}
    monkeypatch.setattr(gen_mod, "make_generator", lambda *a, **k: CannedGenerator(tiny_qwen3_dir, answers))
    monkeypatch.setattr(curate, "CHUNK_PROMPTS", 2)
    train = TrainSettings(rollout_limit=32, dataset=DatasetSpec(source=source))
    run_yaml = _run(tmp_path, tiny_qwen3_dir, Stage.curate, train=train, curate=CurateSettings(samples=4))
    job = run_yaml.parent
    # a crash after the first chunk: two prompts scored already
    (job / "scores.jsonl").write_text(
        "".join(json.dumps({"id": r["id"], "correct": c, "k": 4, "pass_rate": c / 4}) + "\n" for r, c in zip(rows, [4, 1]))
        + '{"id": "torn'
    )
    CannedGenerator.calls = 0
    curate.main(str(run_yaml))
    assert CannedGenerator.calls == 2  # 4 remaining prompts in chunks of 2
    kept = [json.loads(x) for x in (job / "problems.jsonl").read_text().splitlines()]
    assert [k["id"] for k in kept] == [r["id"] for i, r in enumerate(rows) if i % 2 == 0]
    hist = json.loads((job / "histogram.json").read_text())
    assert hist["counts"] == [0, 3, 0, 0, 3] and hist["kept"] == 3 and hist["total"] == 6
    assert read_done(job)["kept"] == 3

    # the train run of the same size now trains on the curated set
    from scaling.jobs.train import curated_path

    trun = RunSpec(study="t", run_id="0_1m/train", size="0_1m", stage=Stage.train, model=None, model_source="")
    assert curated_path(trun, tmp_path / "study") == job / "problems.jsonl"


def test_curate_with_the_real_generator_scores_every_prompt(tmp_path, tiny_qwen3_dir):
    from scaling.errors import JobError
    from scaling.jobs import curate

    train = TrainSettings(rollout_limit=8, dataset=DatasetSpec(source=task_uri("train", 3)))
    run_yaml = _run(tmp_path, tiny_qwen3_dir, Stage.curate, train=train, curate=CurateSettings(samples=2))
    # a random tiny model solves nothing: every prompt is scored, none is kept, and the error says how to fix it
    with pytest.raises(JobError, match="widen the band"):
        curate.main(str(run_yaml))
    scores = (run_yaml.parent / "scores.jsonl").read_text().splitlines()
    assert len(scores) == 3 and all(json.loads(s)["k"] == 2 for s in scores)


def test_sft_trains_on_traces_and_saves_a_model(tmp_path, tiny_qwen3_dir):
    from scaling.jobs import sft
    from scaling.durable import read_done

    settings = SftSettings(
        enabled=True,
        dataset=DatasetSpec(source=task_uri("train", 16)),
        text_column="completion",
        batch_size=4,
        max_steps=3,
        max_length=256,
        learning_rate=1e-3,
    )
    run_yaml = _run(tmp_path, tiny_qwen3_dir, Stage.sft, sft=settings)
    sft.main(str(run_yaml))
    job = run_yaml.parent
    done = read_done(job)
    assert done["steps"] == 3
    assert (job / "model" / "config.json").is_file() and (job / "model" / "tokenizer_config.json").is_file()
    # what decides the numerics is recorded, so two runs that disagree can be told apart
    import torch
    import trl

    assert done["env"]["threads"] == torch.get_num_threads() and done["env"]["trl"] == trl.__version__
    assert done["env"]["torch"] == torch.__version__ and done["env"]["cpu"] and done["bf16"] is False


def test_sft_is_bit_reproducible_run_to_run(tmp_path, tiny_qwen3_dir):
    """Issue 12: the same recipe and seeds give the same results run to run. Two SFT jobs of the
    same run.yaml (seeded data order, seeded init, 2 micro-batches per step) must save byte-identical
    weights; the full ladder's 3m SFT was checked the same way (docs/tiny-ladder.md)."""
    import hashlib

    from scaling.jobs import sft

    settings = SftSettings(enabled=True, dataset=DatasetSpec(source=task_uri("train", 32)), text_column="completion",
                           batch_size=8, max_steps=6, max_length=256, learning_rate=3e-3)
    digests = []
    for attempt in ("a", "b"):
        run_yaml = _run(tmp_path / attempt, tiny_qwen3_dir, Stage.sft, sft=settings)
        sft.main(str(run_yaml))
        weights = run_yaml.parent / "model" / "model.safetensors"
        digests.append(hashlib.sha256(weights.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_sft_uses_bf16_autocast_only_where_it_was_measured_faster(tmp_path, monkeypatch):
    """docs/tiny-ladder.md "Where the time goes": bf16 autocast on CPU was 11-15% faster per SFT
    step at hidden 128-192 and 60% slower at hidden 48, so CPU jobs use it only on hardware bf16
    and from CPU_BF16_MIN_HIDDEN up; CUDA always. The step of 8 runs as 2 micro-batches of 4 on
    CPU (less padding, measured), 8 on CUDA."""
    from scaling.jobs import sft
    from scaling.jobs.tiny import tiny_facts

    settings = SftSettings(enabled=True, dataset=DatasetSpec(source=task_uri("train", 16)), text_column="completion",
                           batch_size=8, max_steps=3, max_length=256, learning_rate=1e-3)

    def run_of(size: str) -> RunSpec:
        return RunSpec(study="t", run_id=f"{size}/sft", size=size, stage=Stage.sft, model=tiny_facts(size),
                       model_source="x", seed=0, sft=settings)

    assert tiny_facts("1m").hidden_size >= sft.CPU_BF16_MIN_HIDDEN > tiny_facts("0_3m").hidden_size
    # SCALING_CPU_BF16 (scaling/numerics.py) takes either path on any CPU: 1 = the bf16 path, 0 = fp32
    monkeypatch.setenv("SCALING_CPU_BF16", "1")
    cfg = sft.make_sft_config(run_of("3m"), tmp_path, "cpu")
    assert cfg.bf16 and sft.make_sft_config(run_of("1m"), tmp_path, "cpu").bf16
    assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (4, 2)
    assert not sft.make_sft_config(run_of("0_1m"), tmp_path, "cpu").bf16
    monkeypatch.setenv("SCALING_CPU_BF16", "0")
    assert not sft.make_sft_config(run_of("3m"), tmp_path, "cpu").bf16
    assert sft.sft_bf16(run_of("0_1m"), "cuda") and sft.sft_bf16(run_of("3m"), "cuda")  # CUDA: always
    monkeypatch.setenv("SCALING_CPU_BF16", "auto")  # the hardware decides
    from scaling import numerics

    assert sft.make_sft_config(run_of("3m"), tmp_path, "cpu").bf16 == numerics.cpu_has_bf16()


# ------------------------------------------------------------------------ jobs/data.py
def test_load_problems_maps_columns_from_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scaling.jobs.data import load_problems

    rows = [{"question": "1+1?", "final": 2, "uid": "a"}, {"question": "2+2?", "final": 4, "uid": "b"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    for name in ("p.jsonl", "p.parquet"):
        spec = DatasetSpec(source=str(tmp_path / name), problem_column="question", answer_column="final",
                           id_column="uid", max_rows=1)
        out = load_problems(spec)
        assert out == [{"question": "1+1?", "final": 2, "uid": "a", "problem": "1+1?", "answer": "2", "id": "a"}]


def test_load_problems_names_missing_file_and_column(tmp_path):
    from scaling.errors import JobError
    from scaling.jobs.data import load_problems

    with pytest.raises(JobError, match="does not exist"):
        load_problems(DatasetSpec(source=str(tmp_path / "nope.jsonl")))
    (tmp_path / "p.jsonl").write_text(json.dumps({"problem": "x", "solution": "1"}) + "\n")
    with pytest.raises(JobError, match="answer_column.*'answer'.*problem, solution"):
        load_problems(DatasetSpec(source=str(tmp_path / "p.jsonl")))


def test_build_prompt_applies_the_thinking_switch(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from scaling.jobs.data import build_prompt

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    on = build_prompt(tok, "2+2?", suffix="Box it.", enable_thinking=True)
    off = build_prompt(tok, "2+2?", suffix="Box it.", enable_thinking=False)
    assert "2+2? Box it." in on and on.endswith("<|im_start|>assistant\n")
    assert off.endswith("<think>\n\n</think>\n\n")
