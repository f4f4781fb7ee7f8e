"""Evaluation job: the whole token-budget spectrum of one benchmark from ONE generation.

    python -m scaling.jobs.evaluate runs/<study>/<size>/eval-base/run.yaml aime25
    (launch calls ``main(run_yaml, item)`` with item = the benchmark, one array task each)

What it does: for every (problem, sample) it generates once at the LARGEST budget (seeded per
problem and sample), because sampling with ``max_tokens=B`` yields exactly the first B tokens of
a longer sample. For every budget B it then reads the prefix:

* ``truncation`` protocol (default, Art arXiv 2602.20945): scored at B only if the sample ended
  on its own within B tokens; a sample cut at B has no answer and is incorrect (``truncated``).
* ``budget_forcing`` protocol (optional): a sample not finished at B gets its thinking block
  closed at B (``\\n</think>`` + an answer cue) and a short answer continuation of at most
  ``eval.answer_tokens`` tokens, generated from the reused prefix; that answer is graded.

It writes one ``records.EvalRecord`` per (problem, sample, budget) to
``<job_dir>/<benchmark>/records.parquet`` and the raw texts to ``texts.parquet`` beside it
(aggregation never loads texts), atomically, then ``DONE``. ``decoded_tokens`` counts the
tokens each row adds (so the sum over a job is its real decoding cost, see docs/evaluation.md).

Resumable: problems are processed in fixed chunks (``eval.chunk_requests`` problem x sample
requests each, one generate call per chunk) whose results land in ``.progress/`` shards; a
requeued job skips finished chunks. Departures: Art does not name its grader, we use
math-verify (``scaling.grade``); interventions (Paper B, arXiv 2505.07961) follow our own
parameterisation (``jobs/interventions.py``).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..benchmarks import format_choice_problem, gold_answer, load_benchmark, to_dataset_spec
from ..durable import atomic_write_table, atomic_write_text, is_done, mark_done, read_done
from ..errors import JobError
from ..grade import grade_many
from ..records import SCHEMA_VERSION, EvalProtocol, EvalRecord, RunSpec, arrow_schema, to_dict, to_table
from .common import job_main, read_run, start_job
from .data import build_prompt, load_problems
from .generate import make_generator
from .interventions import ANSWER_CUE, make_intervention_config, thinking_open_after
from .models import resolve_model
from .sampling import count_thinking_tokens, sample_seed, slice_budgets

__all__ = ["main", "evaluate_benchmark", "load_run", "PROGRESS_DIR"]

PROGRESS_DIR = ".progress"  # hidden: not part of the job's outputs (DONE's hash skips it)
OVERLAP_GRADING: bool | str = "auto"  # code benchmarks: grade chunk i while chunk i+1 generates (see below)


def load_run(run_yaml: str | Path) -> Any:
    """The RunSpec in ``run.yaml`` (jobs/common.read_run)."""
    return read_run(run_yaml)


def _load_eval_run(run_yaml: str | Path) -> RunSpec:
    run = load_run(run_yaml)
    if run.eval is None:
        raise JobError(f"{run_yaml}: stage eval needs an eval: section")
    return run


def main(run_yaml: str, item: str | None = None) -> dict[str, Any]:
    """Entry point (``scaling.jobs.evaluate:main``): evaluate benchmark ``item`` of the run."""
    job = start_job(run_yaml, _load_eval_run, tag=None)  # DONE is checked per benchmark, below
    assert job is not None
    run, job_dir, study_dir = job.run, job.job_dir, job.study_dir
    if item is None:
        if len(run.eval.benchmarks) != 1:
            raise JobError(f"{run_yaml}: name the benchmark to run (one of {', '.join(run.eval.benchmarks)})")
        item = run.eval.benchmarks[0]
    spec = load_benchmark(item)
    # a registered name is its own directory; a path or task:// URI uses the spec's safe name
    out_dir = job_dir / (item if re.fullmatch(r"[A-Za-z0-9_-]+", item) else spec.name)
    if is_done(out_dir):
        print(f"evaluate: {out_dir} is already done; nothing to do")
        return dict(read_done(out_dir) or {})
    model_path = resolve_model(run, study_dir)
    return evaluate_benchmark(run, spec, out_dir, model_path=model_path)


# ------------------------------------------------------------------------- the evaluation
@dataclass
class _Problem:
    id: str
    prompt: str
    prompt_ids: list[int]
    gold: str
    seed: int


def evaluate_benchmark(
    run: Any,
    spec: Any,
    out_dir: str | Path,
    *,
    model_path: str,
    generator: Any = None,
    chunk_problems: int | None = None,
) -> dict[str, Any]:
    """Evaluate one benchmark into ``out_dir`` (records, texts, DONE) and return DONE's info.

    ``generator`` may be passed in (tests, perf) to reuse a loaded model; it must have been
    built with the run's intervention. Problems are generated in resumable chunks of
    ``chunk_problems`` (default ``eval.chunk_requests // samples_per_problem``): one generate
    call per chunk, so vLLM keeps its batch full within a chunk and a requeue loses at most one."""
    settings = run.eval
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budgets = sorted(int(b) for b in settings.budgets)
    if not budgets or len(set(budgets)) != len(budgets) or budgets[0] <= 0:
        raise JobError(f"eval.budgets must be distinct positive token counts, got {settings.budgets}")
    protocol = EvalProtocol(settings.protocol).value
    t0 = time.monotonic()

    if generator is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
    else:
        tokenizer = generator.tokenizer

    unsandboxed = _check_sandbox(spec, settings) if spec.grader == "code" else False  # before any generation
    problems: list[_Problem] = []
    for pid, text, system, gold in _problem_texts(run, spec, settings):
        prompt = build_prompt(tokenizer, text, suffix="" if spec.grader == "code" else spec.prompt_suffix,
                              enable_thinking=settings.enable_thinking, system=system)
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        problems.append(_Problem(pid, prompt, ids, gold, sample_seed(run.seed, spec.name, pid)))
    if len({p.id for p in problems}) != len(problems):
        raise JobError(f"benchmark {spec.name}: problem ids are not unique; set id_column in its YAML")
    own_generator = generator is None

    def load_generator() -> Any:
        """Built only when a chunk is left to generate (a resumed job may have none)."""
        intervention = make_intervention_config(settings, tokenizer, think_end=run.model.think_end)
        # the context vLLM must hold: the longest prompt + the largest budget + a forced answer
        longest = max((len(p.prompt_ids) for p in problems), default=0)
        return make_generator(
            settings.backend,
            model_path,
            seed=run.seed,
            tensor_parallel=run.resources.tensor_parallel,
            data_parallel=run.resources.data_parallel,
            intervention=intervention,
            batch_size=settings.batch_size,
            max_model_len=longest + budgets[-1] + int(settings.answer_tokens) + 64,
        )

    if chunk_problems is None:
        chunk_problems = max(1, int(settings.chunk_requests) // max(1, int(settings.samples_per_problem)))
    progress = out_dir / PROGRESS_DIR
    chunks = [problems[k : k + chunk_problems] for k in range(0, len(problems), chunk_problems)]
    _check_progress_plan(progress, [p.id for p in problems], chunk_problems, budgets, settings, run.seed)
    ctx = _Context(run, spec, settings, budgets, protocol, generator, tokenizer, unsandboxed)
    # code: chunk i is graded in a worker thread while chunk i+1 generates (at most one chunk in
    # flight; grading runs sandboxed subprocesses, so a GPU engine is not blocked). Budget forcing
    # generates while it grades, so it stays sequential. On CPU both compete for the same cores and
    # the overlap is slower (perf/code_eval_overlap.py), so "auto" overlaps only with a GPU.
    overlap = spec.grader == "code" and protocol == "truncation" and _overlap_grading()
    pool = None
    pending: tuple[int, Any] | None = None
    try:
        with _progress_bar(len(chunks), f"eval {run.run_id} {spec.name}") as advance:
            if overlap:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grade")
            for idx, chunk in enumerate(chunks):
                shard = progress / f"part-{idx:05d}.parquet"
                if not shard.exists():
                    if ctx.generator is None:
                        ctx.generator = load_generator()
                    if pool is not None:
                        out = _generate_chunk(ctx, chunk)
                        if pending is not None:
                            _write_shard(progress, pending[0], *pending[1].result())
                            advance()
                        pending = (idx, pool.submit(_score_chunk, ctx, chunk, out))
                        continue
                    _write_shard(progress, idx, *_evaluate_chunk(ctx, chunk))
                advance()
            if pending is not None:
                _write_shard(progress, pending[0], *pending[1].result())
                advance()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if own_generator and ctx.generator is not None:
            ctx.generator.close()
    info = _finalize(out_dir, progress, len(chunks))
    info.update(
        problems=len(problems),
        samples_per_problem=int(settings.samples_per_problem),
        budgets=budgets,
        protocol=protocol,
        wall_s=round(time.monotonic() - t0, 3),
        model_path=str(model_path),
    )
    if spec.grader == "code":
        info.update(grader="code", unsandboxed=bool(unsandboxed), **_window_info(spec))
    mark_done(out_dir, info)
    shutil.rmtree(progress, ignore_errors=True)
    return info


@dataclass
class _Context:
    run: Any
    spec: Any
    settings: Any
    budgets: list[int]
    protocol: str
    generator: Any
    tokenizer: Any
    unsandboxed: bool = False


def _overlap_grading() -> bool:
    """OVERLAP_GRADING: True, False, or "auto" (when CUDA is available)."""
    if OVERLAP_GRADING != "auto":
        return bool(OVERLAP_GRADING)
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _problem_texts(run: Any, spec: Any, settings: Any) -> list[tuple[str, str, str | None, str]]:
    """(id, user text, system text or None, gold) per problem of the benchmark."""
    if spec.grader == "code":
        from ..codebench import code_problems

        return [(p.id, p.user, p.system, p.gold) for p in code_problems(spec, max_problems=settings.max_problems)]
    out = []
    for r in load_problems(to_dataset_spec(spec, max_rows=settings.max_problems)):
        pid = str(r["id"])
        if spec.grader == "choice":
            text, gold = format_choice_problem(r, spec, seed=run.seed, problem_id=pid)
        else:
            text, gold = r["problem"], gold_answer(r.get(spec.answer_column, r["answer"]), spec)
        out.append((pid, text, None, gold))
    return out


def _check_sandbox(spec: Any, settings: Any) -> bool:
    """Refuse (one line) to run model code when the sandbox cannot start, unless the recipe says
    ``eval.code.allow_unsandboxed: true``; returns True when the code will run unsandboxed."""
    from ..sandbox import sandbox_problem  # lazily: only code benchmarks need it

    why = sandbox_problem()
    if why is None:
        return False
    if not settings.code.allow_unsandboxed:
        raise JobError(f"benchmark {spec.name}: the code sandbox cannot start ({why}); install bubblewrap "
                       "(docs/evaluation.md), or set eval.code.allow_unsandboxed: true to run model code unisolated")
    print(f"evaluate: WARNING {spec.name}: running model code WITHOUT a sandbox ({why}); the report flags it",
          file=sys.stderr)
    return True


def _window_info(spec: Any) -> dict[str, Any]:
    return {k: getattr(spec, k) for k in ("release", "start_date", "end_date") if getattr(spec, k, None)}


def _grade(ctx: _Context, responses: list[str], golds: list[str], *, think_end: str, require_think_end: bool) -> list:
    """grade.grade_many (math, choice) or codegrade.grade_code_many (code: each gold's own per-test
    limit, LCB's 6 s; ``os.cpu_count()`` sandboxed executions at a time)."""
    if ctx.spec.grader == "code":
        from ..codegrade import grade_code_many  # lazily: only code benchmarks need the sandbox

        return grade_code_many(responses, golds, think_end=think_end, require_think_end=require_think_end,
                               timeout_s=None, allow_unsandboxed=ctx.unsandboxed)
    return grade_many(responses, golds, kind=ctx.spec.grader, timeout_s=ctx.settings.grade_timeout_s,
                      think_end=think_end, require_think_end=require_think_end)


def _evaluate_chunk(ctx: _Context, chunk: list[_Problem]) -> tuple[list[dict], list[dict]]:
    """Generate once at the largest budget, then derive every budget's rows."""
    return _score_chunk(ctx, chunk, _generate_chunk(ctx, chunk))


def _generate_chunk(ctx: _Context, chunk: list[_Problem]) -> list:
    """One generate call at the largest budget for the chunk's problems x samples."""
    s = ctx.settings
    return ctx.generator.generate(
        [p.prompt_ids for p in chunk],
        n=int(s.samples_per_problem),
        max_tokens=ctx.budgets[-1],
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        seed=[p.seed for p in chunk],
    )


def _score_chunk(ctx: _Context, chunk: list[_Problem], out: list) -> tuple[list[dict], list[dict]]:
    """Grade a generated chunk and derive every budget's rows (safe in a worker thread unless the
    protocol is budget forcing, which generates)."""
    s, run, tok = ctx.settings, ctx.run, ctx.tokenizer
    k = int(s.samples_per_problem)
    think_end = run.model.think_end
    think_end_id = _token_id(tok, think_end)
    think_start_id = _token_id(tok, run.model.think_start)
    require_end = bool(s.enable_thinking) and run.model.thinking != "none"
    # one grade per sample that finished (the same text for every budget it finished within)
    finished = [(i, j) for i, p in enumerate(chunk) for j in range(k) if out[i][j].finished]
    grades = _grade(
        ctx,
        [out[i][j].text for i, j in finished],
        [chunk[i].gold for i, j in finished],
        think_end=think_end,
        require_think_end=require_end,
    )
    full_grade = dict(zip(finished, grades))

    # budget forcing: close thinking at B and let the model answer (one batched call per chunk)
    forced: dict[tuple[int, int, int], tuple[str, int, Any]] = {}
    if ctx.protocol == "budget_forcing":
        forced = _force_answers(ctx, chunk, out, think_end_id, require_end)

    records: list[dict] = []
    texts: list[dict] = []
    for i, p in enumerate(chunk):
        # a non-thinking model (or thinking switched off) spends no thinking tokens
        open_at_start = require_end and thinking_open_after(
            p.prompt_ids, think_start_id=think_start_id, think_end_id=think_end_id
        )
        for j in range(k):
            sample = out[i][j]
            ids = sample.token_ids
            texts.append(dict(problem_id=p.id, sample=j, budget_tokens=0, text=sample.text))
            for sl in slice_budgets(len(ids), sample.finished, ctx.budgets):
                think = count_thinking_tokens(ids[: sl.scored_tokens], think_end_id, open_at_start=open_at_start)
                if sl.finished:
                    g = full_grade[(i, j)]
                    response, decoded = sl.scored_tokens, sl.decoded_tokens
                elif (i, j, sl.budget_tokens) in forced:
                    text, extra, g = forced[(i, j, sl.budget_tokens)]
                    response, decoded = sl.scored_tokens + extra, sl.decoded_tokens + extra
                    texts.append(dict(problem_id=p.id, sample=j, budget_tokens=sl.budget_tokens, text=text))
                else:
                    g = None
                    response, decoded = sl.scored_tokens, sl.decoded_tokens
                records.append(
                    dict(
                        run_id=run.run_id,
                        model=run.model.label or run.size,
                        size=run.size,
                        checkpoint=run.checkpoint,
                        benchmark=ctx.spec.name,
                        problem_id=p.id,
                        sample=j,
                        budget_tokens=sl.budget_tokens,
                        finished=sl.finished,
                        correct=bool(g.correct) if g is not None else False,
                        grade=g.status if g is not None else "truncated",
                        response_tokens=int(response),
                        thinking_tokens=int(think),
                        decoded_tokens=int(decoded),
                        answer=g.answer if g is not None else "",
                    )
                )
    return records, texts


def _force_answers(ctx: _Context, chunk: list[_Problem], out: list, think_end_id: int | None, require_end: bool) -> dict:
    """For each (problem, sample, budget) not finished within B: prefix[:B] + close + answer.

    The close text is ``\\n</think>`` + ``interventions.ANSWER_CUE`` when thinking is still open
    at B, else nothing (the answer simply continues). Returns {(i, j, B): (graded text, extra
    decoded tokens, Grade)}."""
    s, tok = ctx.settings, ctx.tokenizer
    think_end = ctx.run.model.think_end
    close_ids = tok.encode("\n" + think_end + ANSWER_CUE, add_special_tokens=False)
    keys, prompts, seeds, heads = [], [], [], []
    for i, p in enumerate(chunk):
        for j, sample in enumerate(out[i]):
            ids = sample.token_ids
            for b in ctx.budgets:
                if sample.finished and len(ids) <= b:
                    continue
                prefix = ids[:b]
                closed = think_end_id is not None and think_end_id in prefix
                add = [] if closed else close_ids
                keys.append((i, j, b))
                prompts.append(p.prompt_ids + prefix + add)
                seeds.append(sample_seed(p.seed, "force", j, b))
                heads.append((prefix, add))
    if not keys:
        return {}
    cont = ctx.generator.generate(
        prompts, n=1, max_tokens=int(s.answer_tokens), temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, seed=seeds
    )
    decode = lambda ids: tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)  # noqa: E731
    graded_texts = [decode(prefix + add) + c[0].text for (prefix, add), c in zip(heads, cont)]
    extras = [len(add) + len(c[0].token_ids) for (prefix, add), c in zip(heads, cont)]
    grades = _grade(ctx, graded_texts, [chunk[i].gold for i, _, _ in keys], think_end=think_end,
                    require_think_end=require_end)
    return {key: (text, extra, g) for key, text, extra, g in zip(keys, graded_texts, extras, grades)}


def _token_id(tokenizer: Any, text: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(text)
    if isinstance(tid, int) and tid >= 0 and tid != getattr(tokenizer, "unk_token_id", None):
        return tid
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


# ------------------------------------------------------------------------ shards and output
_TEXT_COLUMNS = ("problem_id", "sample", "budget_tokens", "text")


def _texts_table(texts: list[dict]) -> Any:
    import pyarrow as pa

    schema = pa.schema(
        [("problem_id", pa.string()), ("sample", pa.int64()), ("budget_tokens", pa.int64()), ("text", pa.large_string())],
        metadata={"schema_version": SCHEMA_VERSION, "record": "EvalText"},
    )
    return pa.Table.from_pydict({c: [t[c] for t in texts] for c in _TEXT_COLUMNS}, schema=schema)


def _write_shard(progress: Path, idx: int, records: list[dict], texts: list[dict]) -> None:
    atomic_write_table(progress / f"texts-{idx:05d}.parquet", _texts_table(texts))
    atomic_write_table(progress / f"part-{idx:05d}.parquet", to_table(records, EvalRecord))  # last: marks the chunk


def _check_progress_plan(progress: Path, ids: list[str], chunk: int, budgets: list[int], settings: Any, seed: int) -> None:
    """Shards from an earlier attempt are reused only if they were cut the same way."""
    plan = json.dumps(
        {"ids": ids, "chunk": chunk, "budgets": budgets, "seed": seed, "eval": to_dict(settings)}, sort_keys=True, default=str
    )
    marker = progress / "plan.json"
    if marker.exists() and marker.read_text() != plan:
        shutil.rmtree(progress, ignore_errors=True)
    progress.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        atomic_write_text(marker, plan)


def _finalize(out_dir: Path, progress: Path, n_chunks: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = [pq.read_table(progress / f"part-{i:05d}.parquet") for i in range(n_chunks)]
    texts = [pq.read_table(progress / f"texts-{i:05d}.parquet") for i in range(n_chunks)]
    schema = arrow_schema(EvalRecord)
    records = pa.concat_tables(parts).cast(schema) if parts else schema.empty_table()
    records = records.replace_schema_metadata(schema.metadata)
    all_texts = pa.concat_tables(texts) if texts else _texts_table([])
    atomic_write_table(out_dir / "texts.parquet", all_texts)
    atomic_write_table(out_dir / "records.parquet", records)
    decoded = int(pa.compute.sum(records.column("decoded_tokens")).as_py() or 0) if records.num_rows else 0
    return {"records": records.num_rows, "decoded_tokens": decoded}


class _progress_bar:
    """A rich progress bar on a terminal, plain lines otherwise (Slurm logs)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self._p = total, label, 0, None

    def __enter__(self) -> Any:
        if sys.stderr.isatty():
            from rich.progress import Progress

            self._p = Progress(transient=False)
            self._p.start()
            task = self._p.add_task(self.label, total=self.total)
            return lambda: self._p.advance(task)

        def advance() -> None:
            self.done += 1
            print(f"{self.label}: chunk {self.done}/{self.total}", file=sys.stderr, flush=True)

        return advance

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.stop()


if __name__ == "__main__":
    job_main(main, __doc__.splitlines()[2].strip(), max_args=2, usage_exit=2)
