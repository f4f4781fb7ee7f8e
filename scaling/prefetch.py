"""Download a study's models and datasets on the login node, so jobs can run offline.

    scaling prefetch recipes/qwen3-ladder.yaml [--sizes 8b] [--cache-dir /shared/hf]
    # then on the compute nodes: HF_HOME=/shared/hf HF_HUB_OFFLINE=1 (e.g. in the profile's setup:)

Clusters often give compute nodes no internet. ``prefetch`` walks the plan and fetches every
hub model (``huggingface_hub.snapshot_download``: safetensors, config, tokenizer) and every hub
dataset the runs read: training/SFT prompts and each evaluation benchmark
(``datasets.load_dataset``, which fills both the hub cache and the datasets cache that
``load_dataset`` reads under ``HF_HUB_OFFLINE=1``). ``tiny://`` models, ``task://`` data and local
paths need nothing and are skipped. ``--cache-dir`` sets ``HF_HOME`` for the download; jobs
must see the same ``HF_HOME``.

``plan_prefetch(plan)`` (pure: what would be fetched) is unit-tested without network.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .benchmarks import load_benchmark
from .errors import LaunchError

__all__ = ["PrefetchItem", "plan_prefetch", "prefetch", "is_remote"]

MODEL_IGNORE = ["original/*", "*.pth", "*.gguf", "*.onnx", "*.msgpack", "*.h5"]  # not loaded by HF/vLLM


@dataclass(frozen=True)
class PrefetchItem:
    """One download. ``kind``: model | dataset | code (a code benchmark's files; ``split`` holds its
    release). ``used_by``: the first run that needs it."""

    kind: str
    repo_id: str
    subset: str | None = None
    split: str | None = None
    used_by: str = ""


def is_remote(source: str | None) -> bool:
    """A hub id (``org/name``) rather than a tiny/task URI or a local path."""
    if not source:
        return False
    if "://" in source:
        return False
    if source.startswith(("/", ".", "~")) or source.endswith((".jsonl", ".json", ".parquet", ".yaml")):
        return False
    if Path(source).expanduser().exists():
        return False
    return source.count("/") == 1


def plan_prefetch(plan: Any) -> list[PrefetchItem]:
    """Every remote model and dataset the plan's runs read, deduplicated, in plan order."""
    items: dict[tuple, PrefetchItem] = {}

    def add(kind: str, repo: str | None, run_id: str, subset: str | None = None, split: str | None = None) -> None:
        if is_remote(repo):
            key = (kind, repo, subset, split)
            items.setdefault(key, PrefetchItem(kind, str(repo), subset, split, run_id))

    for run in plan.runs:
        if not run.init_from:  # a run that starts from another run's output loads it from the study
            add("model", run.model_source or run.model.hf_id, run.run_id)
        for settings in (run.train, run.sft):
            ds = getattr(settings, "dataset", None)
            if ds is not None:
                add("dataset", ds.source, run.run_id, ds.subset, ds.split)
        if run.eval is not None:
            sel = run.eval.select_step  # the held-out benchmark of eval.select_step is evaluated too
            for name in run.eval.benchmarks + ([sel.benchmark] if sel is not None and sel.benchmark else []):
                spec = load_benchmark(name)
                if spec.path:
                    continue
                if spec.grader == "code":  # LiveCodeBench: its raw JSONL files, no dataset script (codebench)
                    add("code", spec.source, run.run_id, None, spec.release)
                else:
                    add("dataset", spec.source, run.run_id, spec.subset, spec.split)
    return list(items.values())


def _download_model(repo_id: str, cache_dir: Path | None) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(
        repo_id, cache_dir=str(cache_dir / "hub") if cache_dir else None, ignore_patterns=MODEL_IGNORE
    )


def _download_dataset(repo_id: str, subset: str | None, split: str | None, cache_dir: Path | None) -> str:
    import datasets

    ds = datasets.load_dataset(
        repo_id, subset, split=split, cache_dir=str(cache_dir / "datasets") if cache_dir else None
    )
    return f"{len(ds)} rows"


def _download_code_files(repo_id: str, release: str | None, cache_dir: Path | None) -> str:
    """A code benchmark's release files (``codebench.release_files``) into the hub cache, where
    ``codebench.load_lcb`` finds them offline. Not tested against the hub (no network in CI)."""
    from huggingface_hub import hf_hub_download

    from .codebench import RELEASES, release_files

    names = release_files(release or RELEASES[-1])
    for name in names:
        hf_hub_download(repo_id, name, repo_type="dataset", cache_dir=str(cache_dir / "hub") if cache_dir else None)
    return f"{len(names)} files ({', '.join(names)})"


def prefetch(plan: Any, cache_dir: str | os.PathLike[str] | None = None) -> int:
    """Download everything ``plan_prefetch`` lists; returns 0 (the CLI's exit status).

    Raises LaunchError when offline mode is on or any download fails (after trying all)."""
    from rich.console import Console

    console = Console(stderr=True)
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise LaunchError("prefetch needs the network but HF_HUB_OFFLINE is set; unset it and run on the login node")
    cache = Path(cache_dir).expanduser().resolve() if cache_dir else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        os.environ["HF_HOME"] = str(cache)
    items = plan_prefetch(plan)
    if not items:
        console.print("prefetch: nothing to download (tiny models, task data and local paths only)")
        return 0
    failures: list[str] = []
    for k, item in enumerate(items, 1):
        label = f"[{k}/{len(items)}] {item.kind} {item.repo_id}" + (f" ({item.subset})" if item.subset else "")
        console.print(f"{label} ...")
        t0 = time.monotonic()
        try:
            if item.kind == "model":
                what = _download_model(item.repo_id, cache)
            elif item.kind == "code":
                what = _download_code_files(item.repo_id, item.split, cache)
            else:
                what = _download_dataset(item.repo_id, item.subset, item.split, cache)
        except Exception as exc:  # network, auth (gated datasets), missing repos: report all at the end
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            failures.append(f"{item.kind} {item.repo_id}: {type(exc).__name__}: {msg}")
            console.print(f"{label} FAILED: {msg}")
            continue
        console.print(f"{label} ok: {what} ({time.monotonic() - t0:.1f} s)")
    where = str(cache) if cache else os.environ.get("HF_HOME", "~/.cache/huggingface")
    if failures:
        raise LaunchError(
            f"prefetch: {len(failures)} of {len(items)} downloads failed: " + "; ".join(failures)
            + " (check the network, the hub id, and `hf auth login` for gated datasets)"
        )
    console.print(f"prefetch: {len(items)} downloads in {where}; run jobs with HF_HOME={where} HF_HUB_OFFLINE=1")
    return 0
