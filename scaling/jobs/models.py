"""Which model a job loads: the output of an earlier run, a tiny model built here, or a hub id.

``resolve_model(run, study_dir)`` is the one function every job calls before
``from_pretrained``. The rules (team contract):

1. ``run.init_from`` set (e.g. ``"1m/sft"``) -> ``<study_dir>/1m/sft/model``; that directory must
   exist (the plan orders jobs with ``afterok``, so a missing one is a broken study dir). An eval
   run of an intermediate step (``run.checkpoint = "step-N"``, scaling/schedule.py) loads
   ``<study_dir>/<init_from>/checkpoints/checkpoint-N`` instead (model + tokenizer, as TRL saves it).
2. ``run.model_source`` of the form ``tiny://<size>`` -> a tiny Qwen3 built from ``run.model``
   (the recipe's facts, not the built-in table) with random init seeded by ``TINY_INIT_SEED``
   (fixed, not ``run.seed``: every stage of a study must start from the same weights even if
   the plan gives runs different seeds); cached under ``<study_dir>/.models/<size>`` and built
   atomically (temporary directory, then rename) so concurrent jobs never see half a model.
3. Anything else is a hub id or a local path, returned as given; with ``HF_HUB_OFFLINE=1`` a hub
   id must already be in the local cache (checked here so the job fails with one line).

No departure from the papers: this is plumbing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import JobError
from ..records import RunSpec
from ..schedule import step_of
from ..studydir import study_ref
from .tiny import build_model

TINY_SCHEME = "tiny://"
TINY_INIT_SEED = 0


def tiny_cache_dir(study_dir: str | Path, size: str) -> Path:
    """Where ``tiny://<size>`` is cached inside a study directory."""
    return Path(study_dir) / ".models" / size


def _build_tiny_atomically(run: RunSpec, target: Path) -> None:
    """Build into a sibling temporary directory and rename it into place (first one wins)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build_model(run.model, tmp, seed=TINY_INIT_SEED)
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, target)  # atomic on one filesystem; fails if another job won the race
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_offline_hub_id(source: str) -> None:
    """With HF_HUB_OFFLINE=1, a hub id must be in the local cache: say so in one line if not."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("1", "true", "TRUE", "True", "yes"):
        return
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, "config.json")
    if not isinstance(found, str):
        raise JobError(
            f"model {source!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1; "
            f"run `hf download {source}` (or `scaling prefetch RECIPE` with your recipe) on a node with internet"
        )


def resolve_model(run: RunSpec, study_dir: str | Path) -> str:
    """The path or hub id a job passes to ``from_pretrained`` (see the module docstring)."""
    study = Path(study_dir)
    step = step_of(run.checkpoint) if run.init_from else None
    if step is not None:  # eval.checkpoints step-N: the train job's checkpoint, kept (schedule.py)
        path = study / run.init_from / "checkpoints" / f"checkpoint-{step}"
        if not (path / "config.json").is_file():
            raise JobError(
                f"{run.run_id}: checkpoint {run.checkpoint} needs {path} (a model saved at step {step}), which "
                f"holds none; rerun {run.init_from} (`scaling resume {study_ref(study)}`) with this plan so it "
                "keeps its scheduled checkpoints"
            )
        return str(path)
    if run.init_from:
        path = study / run.init_from / "model"
        if not (path / "config.json").is_file():
            raise JobError(
                f"{run.run_id}: init_from={run.init_from!r} but {path} holds no saved model; "
                f"run `scaling resume {study_ref(study)}` so {run.init_from} finishes first"
            )
        return str(path)
    source = run.model_source or run.model.hf_id
    if not source:
        raise JobError(f"{run.run_id}: neither model_source nor model.hf_id is set in run.yaml")
    if source.startswith(TINY_SCHEME):
        size = source[len(TINY_SCHEME):] or run.model.size
        if run.model.hidden_size <= 0 or run.model.num_layers <= 0:
            raise JobError(f"{run.run_id}: {source} needs model facts (hidden_size, num_layers) in run.yaml")
        target = tiny_cache_dir(study, size)
        if not (target / "config.json").is_file():
            _build_tiny_atomically(run, target)
        return str(target)
    if Path(source).expanduser().exists():
        return str(Path(source).expanduser())
    _check_offline_hub_id(source)
    return source


def without_router_logits(model: Any) -> Any:
    """Turn off ``output_router_logits`` on a MoE model that will generate (eval, GRPO rollouts)
    or be saved for them. TRL's SFTTrainer turns it on for MoE models so that the router's
    load-balancing loss is trained, and ``save_pretrained`` keeps it in config.json; with it on,
    transformers' Qwen3-MoE forward computes that loss during cached decoding against the full
    attention mask and fails with a size mismatch (measured: transformers 5.24, tiny Qwen3-MoE
    after SFT). Generation never needs the loss. Dense models are returned unchanged."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "output_router_logits", False):
        config.output_router_logits = False
    return model
