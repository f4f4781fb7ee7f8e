"""The `scaling` command line.

    scaling check   RECIPE [--set k=v ...] [--sizes 0.6B,8b]    validate a recipe
    scaling plan    RECIPE [--set ...] [--sizes ...] [--profile P] [--json OUT] [--explain SIZE]
    scaling launch  RECIPE [--set ...] [--sizes ...] [--executor slurm|local|debug] [--runs-dir DIR]
                    [--dry-run] [--wait] [--no-report] [--force]
    scaling status  STUDY [--runs-dir DIR] [--watch] [--wide]
    scaling logs    STUDY RUN[/ITEM] [--runs-dir DIR] [--tail N]
    scaling resume  STUDY [--runs-dir DIR] [--executor ...] [--dry-run] [--wait] [--no-report]
    scaling cancel  STUDY [--runs-dir DIR]
    scaling report  STUDY [STUDY ...] [--predict 70b] [-o DIR]
    scaling recipe derive --family NAME --model ID_OR_PATH [--model ...] [-o DIR] [--force]
    scaling prefetch RECIPE
    scaling --version                                            torch/transformers/trl/... versions

Every stage is imported lazily inside its command, so `scaling --help` and `scaling plan`
never import torch, transformers, trl, vllm or matplotlib. A ``ScalingError`` (and an OSError
at a named path: full or read-only disk, a file where a directory belongs) becomes one line on
stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import ScalingError, storage_error


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="study recipe YAML, e.g. recipes/qwen3-ladder.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="omegaconf dotlist override, repeatable, applied last (e.g. sizes.8b.train.learning_rate=5e-7)",
    )
    p.add_argument("--sizes", default=None, help="comma-separated subset of sizes: keys (0_6b) or labels (0.6B)")
    p.add_argument("--profile", default=None, help="cluster profile name or YAML path (default: the recipe's)")


def _sizes(args: argparse.Namespace) -> list[str] | None:
    # `--sizes ,` or `--sizes ''` is a list of no sizes (refused by load_study), never "every size"
    return [s.strip() for s in args.sizes.split(",") if s.strip()] if args.sizes is not None else None


def _load_plan(args: argparse.Namespace):
    from .plan import make_plan
    from .recipe import load_study

    study = load_study(args.recipe, overrides=args.overrides, sizes=_sizes(args), profile=args.profile)
    return study, make_plan(study)


# ------------------------------------------------------------------------------ check
def _cmd_check(args: argparse.Namespace) -> int:
    study, plan = _load_plan(args)
    warnings = [w for k, w in plan.notes.items() if ":warning:" in k]
    print(f"ok: {args.recipe}: study {plan.study!r}, {len(study.sizes)} sizes ({', '.join(study.sizes)}), "
          f"{len(plan.runs)} runs, {len(plan.jobs)} jobs, ~{plan.gpu_hours:,.0f} GPU-h on profile {plan.profile.name}"
          + (f", {len(warnings)} warning(s): see scaling plan" if warnings else ""))
    return 0


# ------------------------------------------------------------------------------- plan
def _cmd_plan(args: argparse.Namespace) -> int:
    from .plan import plan_to_json, print_plan

    study, plan = _load_plan(args)
    print_plan(plan, explain=args.explain)
    if args.json:
        from .durable import atomic_write_text  # not at module level: socket, tempfile, hashlib on every --help

        atomic_write_text(args.json, plan_to_json(plan))
        print(f"plan written to {args.json}")
    return 0


# ----------------------------------------------------------------------------- launch
def _cmd_launch(args: argparse.Namespace) -> int:
    from .launch import launch

    study, plan = _load_plan(args)
    rc = launch(
        study,
        plan,
        executor=args.executor,
        runs_dir=args.runs_dir,
        dry_run=args.dry_run,
        wait=args.wait,
        force=args.force,
    )
    if rc == 0 and args.wait and args.report and not args.dry_run:
        from .launch import resolve_runs_dir
        from .studydir import study_dir

        return _report_after_wait(study_dir(plan.study, resolve_runs_dir(study, args.runs_dir)))
    return rc


def _report_after_wait(sdir: Path) -> int:
    """A waited-for study ended with every run DONE: aggregate it now and say where the report is."""
    from .report import report_command

    return report_command([str(sdir)], runs_dir=sdir.parent)


def _cmd_status(args: argparse.Namespace) -> int:
    from .status import status

    return status(args.study, runs_dir=args.runs_dir, watch=args.watch, wide=args.wide)


def _cmd_logs(args: argparse.Namespace) -> int:
    from .status import logs

    return logs(args.study, args.run, runs_dir=args.runs_dir, tail=args.tail)


def _cmd_resume(args: argparse.Namespace) -> int:
    from .launch import resume

    rc = resume(args.study, runs_dir=args.runs_dir, executor=args.executor, dry_run=args.dry_run, wait=args.wait)
    if rc == 0 and args.wait and args.report and not args.dry_run:
        from .studydir import study_dir

        return _report_after_wait(study_dir(args.study, args.runs_dir))
    return rc


def _cmd_cancel(args: argparse.Namespace) -> int:
    from .launch import cancel

    return cancel(args.study, runs_dir=args.runs_dir)


# ----------------------------------------------------------------------------- report
def _cmd_report(args: argparse.Namespace) -> int:
    from .report import report_command

    reference = "" if args.reference == "none" else args.reference
    return report_command(args.studies, runs_dir=args.runs_dir, out=args.out, predict=args.predict,
                          params=args.params, reference=reference)


# ----------------------------------------------------------------------------- derive
def _cmd_derive(args: argparse.Namespace) -> int:
    from .derive import derive_command

    return derive_command(family=args.family, models=args.model, profile=args.profile, out=args.out, force=args.force)


# --------------------------------------------------------------------------- prefetch
def _cmd_prefetch(args: argparse.Namespace) -> int:
    from .prefetch import prefetch

    study, plan = _load_plan(args)
    return prefetch(plan, cache_dir=args.cache_dir)


class _VersionAction(argparse.Action):
    """``scaling --version``: package metadata only (no heavy imports), then exit 0."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from .versions import version_text

        print(version_text())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaling",
        description="Efficient-reasoning scaling studies: recipe -> plan -> jobs -> records -> fits -> report.",
    )
    parser.add_argument("--version", action=_VersionAction,
                        help="print the versions of scaling, torch, transformers, trl, accelerate, peft, vllm, deepspeed")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate a recipe and its plan")
    _add_recipe_args(p)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("plan", help="expand a recipe into jobs with resources and GPU-hours")
    _add_recipe_args(p)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the plan as JSON")
    p.add_argument("--explain", default=None, metavar="SIZE", help="print every resolved value of a size with its source")
    p.set_defaults(func=_cmd_plan)

    runs_help = "directory holding study directories (default: runs)"
    p = sub.add_parser("launch", help="submit a study (Slurm when available, else local)")
    _add_recipe_args(p)
    p.add_argument("--executor", choices=["auto", "slurm", "local", "debug"], default="auto",
                   help="slurm when sbatch is on PATH (auto), else local; debug runs jobs in this process")
    p.add_argument("--runs-dir", default=None, help="directory holding study directories (default: the recipe's "
                   "study.runs_dir, runs)")
    p.add_argument("--dry-run", action="store_true", help="print every job with the #SBATCH lines it would be "
                   "submitted with (GPU profiles show them even where there is no cluster); submit nothing")
    p.add_argument("--wait", action="store_true", help="block until every job ends, with progress (a live view on a "
                   "terminal, one line per job state change otherwise); then, when every run is DONE, write the "
                   "report (scaling report) and print where it is")
    p.add_argument("--no-report", dest="report", action="store_false", help="with --wait: do not write the report")
    p.add_argument("--force", action="store_true", help="run a GPU profile's jobs on this machine even though it "
                   "has fewer GPUs than they ask (default: refuse before anything starts)")
    p.set_defaults(func=_cmd_launch)

    p = sub.add_parser("status", help="table of a study's jobs")
    p.add_argument("study", help="study name or directory")
    p.add_argument("--runs-dir", default="runs", help=runs_help)
    p.add_argument("--watch", action="store_true", help="refresh until every job ends")
    p.add_argument("--wide", action="store_true", help="every column (job id, attempts) and whole cells, however "
                   "wide the terminal (default: fit the terminal, truncating cells)")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("logs", help="print a run's log files (stdout and stderr of its newest attempt)")
    p.add_argument("study", help="study name or directory")
    p.add_argument("run", help="run id as scaling status shows it (e.g. 1m/sft); an array's item: RUN/ITEM "
                   "(e.g. 1m/eval-trained/tiny_arith); an array without ITEM: every item")
    p.add_argument("--runs-dir", default="runs", help=runs_help)
    p.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines of each file")
    p.set_defaults(func=_cmd_logs)

    p = sub.add_parser("resume", help="resubmit what failed or never ran; never rerun finished jobs")
    p.add_argument("study", help="study name or directory")
    p.add_argument("--runs-dir", default="runs", help=runs_help)
    p.add_argument("--executor", choices=["auto", "slurm", "local", "debug"], default="auto",
                   help="where to resubmit (default auto: the executor the study was launched with)")
    p.add_argument("--dry-run", action="store_true", help="print which runs would be resubmitted; submit nothing")
    p.add_argument("--wait", action="store_true", help="block until every job ends, with progress; then, when every "
                   "run is DONE, write the report and print where it is")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="with --wait: do not write the report when every run is DONE")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("cancel", help="cancel a study's live jobs")
    p.add_argument("study", help="study name or directory")
    p.add_argument("--runs-dir", default="runs", help=runs_help)
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser("report", help="aggregate records, fit trends, write report.md and report.html")
    p.add_argument("studies", nargs="+", help="one study, or several to compare on the same axes")
    p.add_argument("--runs-dir", default="runs", help=runs_help)
    p.add_argument("-o", "--out", default=None, help="output directory (default: <study>/report)")
    p.add_argument("--predict", action="append", default=[], metavar="SIZE", help="predict a size not in the study, e.g. 70b")
    p.add_argument("--params", choices=["active", "total"], default="active", help="MoE parameter convention for fits")
    p.add_argument("--reference", default=None, metavar="FILE", help="YAML of published per-size numbers to overlay, with "
                   "measured minus reference (default for an art-paper study: recipes/references/art-aime25.yaml; "
                   "'none': no reference)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("recipe", help="recipe tools")
    rsub = p.add_subparsers(dest="recipe_command", required=True, metavar="TOOL")
    d = rsub.add_parser("derive", help="derive a family recipe from config.json files")
    d.add_argument("--family", required=True, help="family name (recipe key), e.g. llama3")
    d.add_argument("--model", action="append", required=True, help="hub id or local path with config.json; repeatable")
    d.add_argument("--profile", default=None, help="cluster profile for the resource rules")
    d.add_argument("-o", "--out", default=None, help="output directory (default: recipes/families/<family>)")
    d.add_argument("--force", action="store_true", help="replace an existing output directory (default: refuse)")
    d.set_defaults(func=_cmd_derive)

    p = sub.add_parser("prefetch", help="download a study's models and benchmarks into the cache (login node)")
    _add_recipe_args(p)
    p.add_argument("--cache-dir", default=None, help="HF cache directory (default: HF_HOME)")
    p.set_defaults(func=_cmd_prefetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScalingError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # an OSError without a path: before the OSError branch
        return _closed_pipe()
    except OSError as err:
        # A file-system error at a named path (a write outside studydir's atomic helpers, e.g. a
        # report's figures folder under a file): the user's environment, not a bug, so one line
        # naming the path and the fix. OSErrors without a path keep their traceback.
        if err.filename is None:
            raise
        print(f"error: {storage_error(err, err.filename, 'cannot access')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _closed_pipe() -> int:
    """The reader of our stdout went away (``scaling launch ... --dry-run | head``): stop quietly.
    stdout is pointed at /dev/null so the interpreter's final flush cannot raise again; the exit
    status is the shell's for a process ended by SIGPIPE (128 + 13), as ``yes | head`` gives."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
