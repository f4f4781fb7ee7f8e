"""The report's header says what each arm is, from the study's plan.json (issue 23)."""

from __future__ import annotations

import sys
from pathlib import Path

from scaling.analyse import analyse
from scaling.document import arms_blocks
from scaling.report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.synthetic
from tests.synthetic import write_synthetic_study  # noqa: E402

SIZES = {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "4b": (4e9, 4e9)}
SFT = {"sft": {"enabled": True, "max_steps": 800, "epochs": 1.0, "learning_rate": 0.003, "batch_size": 8,
               "dataset": {"source": "task://arith/train"}}}


def _train(lr: float, steps: int) -> dict:
    return {"train": {"learning_rate": lr, "max_steps": steps, "num_generations": 8, "prompts_per_step": 16,
                      "reward": {"shaping": "truncation", "target_length": 56}}}


def _study(root: Path, stages: dict) -> Path:
    write_synthetic_study(root, sizes=SIZES, budgets=(2048, 8192), samples=2, problems=12, train_steps=20,
                          stages=stages)
    return root


def _items(an) -> list[str]:
    return [it for b in arms_blocks(an) if b.kind == "ul" for it in b.items]


def test_arms_per_size_where_the_plan_differs_and_once_where_it_agrees(tmp_path: Path) -> None:
    stages = {s: {"sft": SFT, "train": _train(1.3e-4 if s == "0_6b" else 5e-5, 36 if s == "0_6b" else 24)}
              for s in SIZES}
    an = analyse(_study(tmp_path / "runs" / "arms", stages), n_boot=50, progress=False, reference="")
    items = _items(an)
    assert items == [
        "base: after SFT, 800 steps (lr 0.003, batch 8, task://arith/train)",
        "trained (0.6B): GRPO, reward truncation, L_T 56 tokens, 36 steps, lr 0.00013, 8 rollouts per prompt, 16 prompts per step",
        "trained (1.7B): GRPO, reward truncation, L_T 56 tokens, 24 steps, lr 5e-05, 8 rollouts per prompt, 16 prompts per step",
        "trained (4B): GRPO, reward truncation, L_T 56 tokens, 24 steps, lr 5e-05, 8 rollouts per prompt, 16 prompts per step",
    ]
    # near the top of both renderings: after the lead, before the headline
    md, page = write_report([an], tmp_path / "out", progress=False)
    text, html = md.read_text(), page.read_text()
    for doc, head in ((text, "## Headline"), (html, 'id="headline-section"')):
        assert items[0] in doc and items[1] in doc
        assert doc.index(items[0]) < doc.index(head)


def test_without_sft_the_base_is_the_released_checkpoint(tmp_path: Path) -> None:
    stages = {s: {"train": {"model_source": f"Qwen/Qwen3-{s}", **_train(1e-6, 600)}} for s in SIZES}
    an = analyse(_study(tmp_path / "runs" / "rl", stages), n_boot=50, progress=False, reference="")
    items = _items(an)
    assert items[:3] == [f"base ({an.label(s)}): the released checkpoint (Qwen/Qwen3-{s})" for s in an.sizes()]
    assert items[3:] == ["trained: GRPO, reward truncation, L_T 56 tokens, 600 steps, lr 1e-06, 8 rollouts per prompt, "
                         "16 prompts per step"]
