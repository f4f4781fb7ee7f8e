"""Study -> Plan: one RunSpec per size and stage, a JobSpec graph, GPU-hours and provenance.

What it does
    ``make_plan(study)`` resolves every size of a ``recipe.Study`` through the rules
    (``rules.derive_size_settings``: learning rate, L_R/L_T, batch, full FT vs LoRA, ZeRO stage,
    vLLM mode and tensor parallelism, GPUs, nodes, time limits) and expands it into runs::

        <size>/curate        (curate.enabled)  base-model pass rates -> the easy-prompt set
        <size>/sft           (sft.enabled)     supervised traces before RL (Paper B)
        <size>/train                           GRPO with the length-aware reward
        <size>/eval-base     (eval.checkpoints) the model training starts from, an array over benchmarks
        <size>/eval-trained                    the trained model, an array over benchmarks, after train
        <size>/eval-step-<N> (eval.checkpoints step-N / 'every N') train's checkpoint-N, an array, after
                                               train (scaling/schedule.py; + eval.select_step's benchmark)

    Each ``RunSpec`` is fully resolved (no ``None`` left in what its job reads) and carries the
    provenance of every leaf: the recipe file, ``--set``, ``default`` or ``rule:<name>``.
    Incompatible settings raise ``PlanError`` with the fix, before anything is submitted:
    ``_check`` is the one home of every cross-field rule (``whole_groups_problem`` is shared with
    jobs/train_config.py, which re-checks a hand-edited run.yaml).

How to run it
    ``scaling plan recipes/qwen3-ladder.yaml [--sizes 0.6B,8b] [--profile small_4x24gb]
    [--explain 8b] [--json plan.json]``

The GPU-hours are estimates (capacity.py states the model and its labelled utilisations); the
paper reports none, so they are ours. This module imports the standard library only (rich
lazily, inside ``print_plan``).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .capacity import stop_lead_s, tp_candidates
from .errors import PlanError, RecipeError, RecordError
from .records import (
    GROUP_SHAPINGS,
    SCHEMA_VERSION,
    ClusterProfile,
    EvalSettings,
    Finetune,
    JobSpec,
    Plan,
    Resources,
    RunSpec,
    SftSettings,
    Shaping,
    Stage,
    TrainSettings,
    VllmMode,
    to_dict,
)
from .records.convert import flatten, from_plain
from .rules import VLLM_IS_MODES, derive_size_settings
from .schedule import expand_checkpoints, schedule_problem, scheduled_steps, selection_problem
from .sizes import size_key

if TYPE_CHECKING:  # the type only: plan runs on any object with Study's fields (tests pass small ones)
    from .recipe import Study

ENTRIES = {
    "curate": "scaling.jobs.curate:main",
    "sft": "scaling.jobs.sft:main",
    "train": "scaling.jobs.train:main",
    "eval": "scaling.jobs.evaluate:main",
}


def job_name(study: str, run_id: str) -> str:
    """Slurm job name ``<study>.<size>.<stage>``, restricted to [A-Za-z0-9_.-]."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{study}.{run_id.replace('/', '.')}")


def whole_groups_problem(shaping: Shaping, prompts: int, world: int) -> str | None:
    """A group-normalised shaping (records.GROUP_SHAPINGS) scores each completion against its
    prompt's whole group, so every training process must hold whole groups: ``prompts`` (per
    rollout batch) a multiple of the ``world`` training processes. The refusal, or None."""
    if Shaping(shaping) in GROUP_SHAPINGS and prompts % world:
        return (f"shaping {Shaping(shaping).value} needs whole groups per process: "
                f"train.prompts_per_step={prompts} must be a multiple of {world} processes")
    return None


def length_problem(train: TrainSettings, model: Any) -> tuple[str, str] | None:
    """The two length rules, (key, message) of the first broken one or None; values still None
    (a rule decides them) are skipped. L_T <= L_R: a target beyond the rollout limit penalises no
    rollout. Prompt + L_R within the model's context (``model.max_position``)."""
    lt, lr = train.reward.target_length, train.rollout_limit
    if lt is not None and lr is not None and lt > lr:
        return "train.reward.target_length", (f"L_T={lt} exceeds L_R=train.rollout_limit={lr}: no rollout could be "
                                              "penalised; set target_length <= rollout_limit")
    ctx = model.max_position
    if lr is not None and ctx and lr + train.max_prompt_length > ctx:
        return "train.rollout_limit", (f"prompt {train.max_prompt_length} + L_R {lr} tokens exceed the model's "
                                       f"context {ctx} (model.max_position); lower train.rollout_limit")
    return None


def _check_recipe_lengths(size: str, train: TrainSettings, model: Any, prov: dict[str, str]) -> None:
    """``length_problem`` on the recipe's own values, before any rule runs (a context overflow must
    not be reported as "does not fit"): the error names the file that set the key."""
    problem = length_problem(train, model)
    if problem:
        key, message = problem
        raise RecipeError(message, path=prov.get(key), key=f"sizes.{size}.{key}")


def _check(size: str, profile: ClusterProfile, train: TrainSettings, ev: EvalSettings, model: Any,
           res: dict[str, Resources], stages: list[str]) -> None:
    """Incompatible or infeasible settings -> PlanError naming the key and the fix. The one home
    of each cross-field rule: the rules (rules.py, capacity.py) derive, they do not refuse."""
    if train.finetune is Finetune.lora and train.zero_stage == 3:
        raise PlanError(f"{size}: finetune=lora with zero_stage=3 is not supported; set "
                        f"sizes.{size}.train.finetune=full or sizes.{size}.train.zero_stage=2")
    gpu = profile.gpus_per_node > 0
    if not gpu and train.vllm_mode not in (VllmMode.none, None):
        raise PlanError(f"{size}: train.vllm_mode={train.vllm_mode.value} needs GPUs but profile {profile.name} has "
                        "none; set train.vllm_mode=none or use a GPU profile (--profile h100_8x80gb)")
    if not gpu and train.zero_stage:
        raise PlanError(f"{size}: train.zero_stage={train.zero_stage} needs GPUs (DeepSpeed) but profile "
                        f"{profile.name} has none; set train.zero_stage=0")
    lengths = length_problem(train, model)
    if lengths:
        raise PlanError(f"{size}: {lengths[1]}")
    if train.vllm_is_mode not in VLLM_IS_MODES or not train.vllm_is_cap > 0:
        raise PlanError(f"{size}: train.vllm_is_mode={train.vllm_is_mode!r}, vllm_is_cap={train.vllm_is_cap}: TRL accepts "
                        f"the modes {', '.join(VLLM_IS_MODES)} and a positive cap; set vllm_is_mode: null (rule)")
    schedule = schedule_problem(ev.checkpoints, save_steps=train.save_steps, max_steps=train.max_steps,
                                lora=train.finetune is Finetune.lora)
    selection = schedule or selection_problem(ev, list(ev.budgets), scheduled_steps(ev.checkpoints, train.max_steps))
    if selection:
        raise PlanError(f"{size}: {selection}")
    if ev.budgets and max(ev.budgets) > model.max_position:
        raise PlanError(f"{size}: eval budget {max(ev.budgets)} exceeds the model's context {model.max_position}; "
                        "drop the larger budgets (eval.budgets)")
    if train.mini_batch_prompts * train.off_policy_staleness != train.prompts_per_step:
        # jobs/train_config.py builds one rollout batch per S optimiser steps of mini_batch_prompts each
        raise PlanError(f"{size}: train.mini_batch_prompts={train.mini_batch_prompts} x off_policy_staleness="
                        f"{train.off_policy_staleness} must equal train.prompts_per_step={train.prompts_per_step} "
                        "(one rollout batch feeds S optimiser steps); set mini_batch_prompts: null (rule)")
    for stage in stages:
        r = res[stage]
        where = f"sizes.{size}.resources.{stage}"
        if r.nodes > profile.max_nodes:
            raise PlanError(f"{size}: {where}.nodes={r.nodes} exceeds profile {profile.name} max_nodes "
                            f"{profile.max_nodes}; lower it or use a larger profile")
        if r.gpus_per_node > profile.gpus_per_node:
            raise PlanError(f"{size}: {where}.gpus_per_node={r.gpus_per_node} exceeds the {profile.gpus_per_node} "
                            f"GPUs per node of profile {profile.name}; lower it or add nodes")
        if r.timeout_min > profile.max_time_min:
            raise PlanError(f"{size}: {where}.timeout_min={r.timeout_min} exceeds the partition limit "
                            f"{profile.max_time_min} of profile {profile.name}; lower it")
        if r.mem_gb > profile.mem_per_node_gb:
            raise PlanError(f"{size}: {where}.mem_gb={r.mem_gb} exceeds the {profile.mem_per_node_gb} GB per "
                            f"node of profile {profile.name}; lower it")
        if gpu and r.tensor_parallel > 1:
            valid = tp_candidates(model, profile.gpus_per_node)
            if r.tensor_parallel not in valid:
                raise PlanError(f"{size}: {where}.tensor_parallel={r.tensor_parallel} is not valid for "
                                f"{model.num_heads} heads / {model.num_kv_heads} KV heads on {profile.gpus_per_node}-GPU "
                                f"nodes; use one of {valid}")
            if r.tensor_parallel * r.data_parallel > r.gpus_per_node * r.nodes and stage != "train":
                raise PlanError(f"{size}: {where}: tensor_parallel x data_parallel = "
                                f"{r.tensor_parallel * r.data_parallel} exceeds the job's {r.gpus_per_node * r.nodes} "
                                "GPUs; lower them or raise gpus_per_node")
    world = max(1, res["train"].nodes * res["train"].gpus_per_node)
    if gpu and train.vllm_mode is VllmMode.server:
        world -= res["train"].tensor_parallel
    completions = train.prompts_per_step * train.num_generations // train.off_policy_staleness
    if gpu and (world < 1 or completions % world):
        raise PlanError(f"{size}: {completions} completions per optimiser step do not split over {world} training "
                        "processes; change resources.train (nodes/gpus_per_node/tensor_parallel) or train.prompts_per_step")
    groups = whole_groups_problem(train.reward.shaping, train.prompts_per_step, world) if gpu else None
    if groups:
        raise PlanError(f"{size}: {groups}")
    if gpu and train.vllm_mode is VllmMode.colocate:
        r = res["train"]
        if (r.nodes * r.gpus_per_node) % r.tensor_parallel:
            raise PlanError(f"{size}: colocated vLLM with tensor_parallel={r.tensor_parallel} needs a GPU count it "
                            f"divides, got {r.nodes * r.gpus_per_node}; change resources.train.tensor_parallel")


def make_plan(study: Study) -> Plan:
    """Expand a ``recipe.Study`` into a ``records.Plan`` (see the module docstring)."""
    profile: ClusterProfile = study.profile
    runs: list[RunSpec] = []
    jobs: list[JobSpec] = []
    notes: dict[str, str] = {}
    total = 0.0
    for size in study.sizes:
        s = study.settings[size]
        facts = s.model
        prov = dict(study.size_provenance(size))
        _check_recipe_lengths(size, s.train, facts, prov)
        derived = derive_size_settings(facts, profile, s)
        prov.update(derived.provenance)
        train, curate = derived.train, derived.curate
        sft: SftSettings = s.sft
        ev: EvalSettings = s.eval
        stages = ["train"]
        if curate.enabled:
            stages.insert(0, "curate")
        if sft.enabled:
            stages.insert(0, "sft")
        if ev.checkpoints and ev.benchmarks:
            stages.append("eval")
        res = {st: derived.resources[st] for st in stages}
        _check(size, profile, train, ev, facts, res, stages)
        est = derived.estimates
        for key, why in derived.reasons.items():
            notes[f"{size}:{key}"] = why
        notes[f"{size}:train_hours"] = f"{est.train_hours:.2f}"
        for stage, warning in est.warnings.items():
            notes[f"{size}:warning:{stage}"] = f"{size}/{warning}"
        notes[f"{size}:train_mem_per_gpu_gb"] = f"{est.train_mem_per_gpu_gb:.1f}"
        notes[f"{size}:train_ref_mem_gb"] = f"{est.train_ref_mem_gb:.1f}"  # issue 22: the reference model

        def spec(stage: str, run_id: str, **kw: Any) -> RunSpec:
            keep = ("model.", f"resources.{stage}.", "seed")
            sections = {"curate": ("curate.", "train.", "eval."), "sft": ("sft.",), "train": ("train.", "curate."),
                        "eval": ("eval.",)}[stage] + (("eval.",) if stage == "train" and "eval" in kw else ())
            rp = {}
            for key, src in prov.items():
                if key.startswith(keep + sections):
                    rp[key.replace(f"resources.{stage}.", "resources.", 1)] = src
            rp.setdefault("seed", study.provenance.get("study.seed", "default"))
            return RunSpec(study=study.name, run_id=run_id, size=size, stage=Stage(stage), model=facts,
                           model_source=facts.hf_id, seed=study.seed, resources=res[stage], provenance=rp, **kw)

        start_from = f"{size}/sft" if sft.enabled else ""
        gpus = {st: res[st].nodes * res[st].gpus_per_node for st in stages}

        def add_job(run: RunSpec, stage: str, after: list[str], hours: float, array: list[str] | None = None,
                    checkpointable: bool = False, signal_delay_s: int = 0) -> float:
            gh = hours * gpus[stage]
            jobs.append(JobSpec(name=job_name(study.name, run.run_id), run_id=run.run_id, entry=ENTRIES[stage],
                                after=after, array=list(array or []), resources=run.resources,
                                gpu_hours=round(gh, 3), checkpointable=checkpointable, hours=round(hours, 4),
                                signal_delay_s=signal_delay_s))
            runs.append(run)
            return gh

        if sft.enabled:
            total += add_job(spec("sft", f"{size}/sft", sft=sft), "sft", [], est.sft_hours or 0.0,
                             checkpointable=True)
        if curate.enabled:
            total += add_job(spec("curate", f"{size}/curate", init_from=start_from, train=train, curate=curate, eval=ev),
                             "curate", [start_from] if start_from else [], est.curate_hours or 0.0)
        after = [r for r in (f"{size}/sft" if sft.enabled else "", f"{size}/curate" if curate.enabled else "") if r]
        # the warning's lead: the longest step + the checkpoint's write (issue 22, finding 6)
        lead, notes[f"{size}:stop_lead"] = stop_lead_s(
            facts, finetune=train.finetune, zero_stage=train.zero_stage, nodes=res["train"].nodes,
            hours=est.train_hours, max_steps=train.max_steps, staleness=train.off_policy_staleness,
            timeout_min=res["train"].timeout_min, lora_rank=train.lora_rank, lora_targets=list(train.lora_targets))
        steps = scheduled_steps(ev.checkpoints, train.max_steps) if "eval" in stages else []
        # a schedule: the train run carries eval (its job keeps every checkpoint, jobs/train_config.py)
        total += add_job(spec("train", f"{size}/train", init_from=start_from, train=train, curate=curate,
                              **({"eval": ev} if steps else {})), "train",
                         after, est.train_hours, checkpointable=True, signal_delay_s=lead)
        if "eval" in stages:
            eval_hours = sum(est.eval_hours.values())
            held_out = [ev.select_step.benchmark] if ev.select_step is not None and steps else []
            if steps:
                notes[f"{size}:eval.checkpoints"] = (
                    f"steps {', '.join(map(str, steps))} from {size}/train/checkpoints/checkpoint-<step> (multiples of "
                    f"train.save_steps={train.save_steps} below max_steps={train.max_steps})"
                    + (f"; select_step on {held_out[0]}" if held_out else ""))
            for ck in expand_checkpoints(ev.checkpoints, train.max_steps):
                init = start_from if ck == "base" else f"{size}/train"
                dep = ([f"{size}/sft"] if sft.enabled else []) if ck == "base" else [f"{size}/train"]
                items = list(ev.benchmarks) + (held_out if ck != "base" else [])
                total += add_job(spec("eval", f"{size}/eval-{ck}", init_from=init, checkpoint=ck, eval=ev), "eval",
                                 dep, eval_hours * (len(items) / len(ev.benchmarks) if held_out and ck != "base" else 1),
                                 array=items)
    return Plan(study=study.name, profile=profile, runs=runs, jobs=jobs, gpu_hours=round(total, 1),
                sources=list(study.sources), notes=notes)


# ------------------------------------------------------------------------------ print
def _console() -> Any:
    import shutil

    from rich.console import Console

    width = shutil.get_terminal_size((140, 24)).columns
    return Console(width=max(width, 120), highlight=False, soft_wrap=False)


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:,.1f}"


def print_plan(plan: Plan, explain: str | None = None) -> None:
    """A rich table of the plan's jobs and the total GPU-hours; with ``explain`` (a size key or
    label), every resolved value of that size with its source instead."""
    from rich.table import Table

    console = _console()
    if explain:
        _print_explain(console, plan, explain)
        return
    p = plan.profile
    gpu = p.gpus_per_node > 0
    hardware = (f"{p.gpus_per_node}x{p.gpu_name}, {p.gpu_mem_gb:g} GB, up to {p.max_nodes} node(s)" if gpu
                else f"CPU only, {p.cpus_per_node} cores, {p.mem_per_node_gb} GB")
    table = Table(title=f"study {plan.study}  ·  profile {p.name} ({hardware})", title_justify="left")
    for col, just in (("size", "left"), ("stage", "left"), ("mode", "left"), ("nodes×GPUs", "right"), ("TP×DP", "right"),
                      ("tasks", "right"), ("mem GB", "right"), ("GPU GB", "right"), ("time", "right"), ("GPU-h", "right"),
                      ("after", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for job in plan.jobs:
        r = job.resources
        size, stage = job.run_id.split("/", 1)
        run = plan.run(job.run_id)
        mode = gpu_mem = ""
        if run.train is not None and run.stage is Stage.train:
            mode = f"{run.train.finetune.value} Z{run.train.zero_stage} {run.train.vllm_mode.value}"
            # per-GPU training memory (host memory on a CPU profile); "+ref": of it, TRL's reference model
            ref = float(plan.notes.get(f"{size}:train_ref_mem_gb", "0") or 0)
            gpu_mem = plan.notes.get(f"{size}:train_mem_per_gpu_gb", "") + (f" (ref {ref:.1f})" if ref else "")
        table.add_row(
            size, stage, mode, f"{r.nodes}×{r.gpus_per_node}" if gpu else f"{r.nodes}×cpu{r.cpus_per_task}",
            f"{r.tensor_parallel}×{r.data_parallel}", str(len(job.array) or 1), str(r.mem_gb), gpu_mem,
            f"{r.timeout_min // 60}:{r.timeout_min % 60:02d}" + (" ↻" if job.checkpointable else ""),
            _hours(job.gpu_hours) if gpu else "-", ", ".join(job.after) or "-",
        )
    table.add_section()
    sizes = len({r.size for r in plan.runs})
    table.add_row("total", f"{sizes} sizes", f"{len(plan.runs)} runs", "", "", "", "", "", "",
                  _hours(plan.gpu_hours) if gpu else "-", "")
    console.print(table)
    for line in benchmark_lines(plan):  # issue 24: every benchmark with its budgets (a code benchmark: its window)
        console.print(line)
    for key, warning in plan.notes.items():
        if ":warning:" in key:
            console.print(f"[yellow]warning[/yellow]: {warning}")
    console.print("mem GB = host memory of the job's node(s); GPU GB = estimated training memory per GPU, (ref X) of "
                  "it TRL's reference model (beta > 0).  time = Slurm time limit (h:mm); ↻ = checkpointable, requeues "
                  "past the limit. GPU-h are estimates (scaling/rules.py, docs/recipes.md).  --explain SIZE shows where "
                  "every value came from.")


def benchmark_lines(plan: Plan, size: str | None = None) -> list[str]:
    """One line per evaluated benchmark: its budgets per size and, for a code benchmark, its
    LiveCodeBench release and contest-date window (``codebench.window_text``)."""
    from .benchmarks import load_benchmark  # here, not at the top: only the printed plan reads benchmark files
    from .codebench import window_text

    seen: dict[str, list[str]] = {}
    for run in plan.runs:
        if run.eval is None or (size is not None and run.size != size):
            continue
        for b in run.eval.benchmarks:
            budgets = ", ".join(f"{int(x):,}" for x in sorted(run.eval.budgets))
            seen.setdefault(b, [])
            if budgets not in seen[b]:
                seen[b].append(budgets)
    lines = []
    for b, budgets in seen.items():
        try:
            spec = load_benchmark(b)
        except RecipeError:  # validation names a bad benchmark; the listing does not
            spec = None
        window = window_text(spec) if spec is not None else ""
        kind = f" ({spec.grader} grader)" if spec is not None and spec.grader != "math" else ""
        lines.append(f"benchmark {b}{kind}: budgets {' | '.join(budgets)}" + (f"; {window}" if window else ""))
    return lines


def _print_explain(console: Any, plan: Plan, size: str) -> None:
    from rich.table import Table


    key = size_key(size)
    runs = [r for r in plan.runs if r.size == key or r.model.label.lower() == size.lower()]
    if not runs:
        sizes = sorted({r.size for r in plan.runs})
        raise PlanError(f"--explain {size}: not a size of study {plan.study}; sizes: {', '.join(sizes)}")
    key = runs[0].size
    m = runs[0].model
    console.print(f"[bold]{key}[/bold] ({m.label}, {m.hf_id}): every resolved value and its source "
                  f"(profile {plan.profile.name})")
    shown: set[str] = set()
    for run in runs:
        table = Table(title=f"{run.run_id}  entry {next(j.entry for j in plan.jobs if j.run_id == run.run_id)}",
                      title_justify="left")
        table.add_column("key")
        table.add_column("value", overflow="fold")
        table.add_column("source")
        data = to_dict(run)
        flat: dict[str, Any] = {}
        for section in ("model", "train", "curate", "sft", "eval", "resources"):
            if data.get(section) is not None:
                flat.update(flatten(data[section], section + "."))
        flat["seed"] = run.seed
        rows = 0
        why: dict[str, list[str]] = {}
        for k, v in flat.items():
            if k.startswith(("model.", "train.", "curate.", "eval.", "sft.")) and k in shown:
                continue  # printed with an earlier run of this size
            if not k.startswith("resources."):
                shown.add(k)
            src = run.provenance.get(k, "default")
            if src.startswith("rule:"):
                note = plan.notes.get(f"{key}:{k}") or (
                    plan.notes.get(f"{key}:resources.{run.stage.value}", "") if k.startswith("resources.") else "")
                if note:
                    why.setdefault(note, [])
                    if src not in why[note]:
                        why[note].append(src)
            # each key as the recipe spells it, so that a key pasted from here into --set works: a run's
            # resources are its stage's (resources.train.nodes, not resources.nodes), the seed is the study's
            shown_key = (f"resources.{run.stage.value}.{k.removeprefix('resources.')}" if k.startswith("resources.")
                         else "study.seed" if k == "seed" else k)
            table.add_row(shown_key, repr(v) if isinstance(v, str) else str(v), src)
            rows += 1
        if rows:
            console.print(table)
            for note, rules in why.items():
                console.print(f"  {', '.join(rules)}: {note}")
    for line in benchmark_lines(plan, size=key):  # issue 24: budgets, and a code benchmark's window
        console.print(line)
    if f"{key}:eval.checkpoints" in plan.notes:  # the schedule's steps and where their models come from
        console.print(f"eval.checkpoints schedule: {plan.notes[key + ':eval.checkpoints']}")
    job_hours = {j.run_id: j.gpu_hours for j in plan.jobs if j.run_id.startswith(key + "/")}
    console.print("estimated GPU-hours: " + ", ".join(f"{k} {_hours(v)}" for k, v in job_hours.items())
                  + f"; training est. {plan.notes.get(key + ':train_hours', '?')} h wall, "
                  f"{plan.notes.get(key + ':train_mem_per_gpu_gb', '?')} GB "
                  + ("per GPU" if plan.profile.gpus_per_node > 0 else "of host memory")
                  + (f"; stop warning lead (rule:stop_lead): {plan.notes[key + ':stop_lead']}"
                     if key + ":stop_lead" in plan.notes else ""))


def plan_to_json(plan: Plan) -> str:
    """The plan as JSON (records.to_dict + schema_version); ``plan_from_json`` reverses it."""
    data = {"schema_version": SCHEMA_VERSION, **to_dict(plan)}
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def plan_from_json(text: str) -> Plan:
    """Rebuild a ``Plan`` from ``plan_to_json`` output (refuses an unknown schema major version)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PlanError(f"plan.json is not valid JSON (line {err.lineno}: {err.msg}); re-run scaling plan --json") from None
    if not isinstance(data, dict):
        raise PlanError("plan.json must hold a JSON object; re-run scaling plan --json")
    version = str(data.pop("schema_version", SCHEMA_VERSION))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise PlanError(f"plan.json schema_version {version} is not supported (this scaling writes {SCHEMA_VERSION}); "
                        "re-plan with this version")
    try:
        return from_plain(Plan, data, "plan")
    except RecordError as err:
        raise PlanError(f"plan.json: {err.reason}; re-plan with this version") from None


__all__ = ["make_plan", "print_plan", "plan_to_json", "plan_from_json", "job_name", "whole_groups_problem", "ENTRIES"]
