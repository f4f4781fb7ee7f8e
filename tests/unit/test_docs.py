"""The docs tell the truth (issue 16): every `scaling ...` command in a fenced block of README.md
and docs/*.md runs and exits as the doc implies, every recipe key and repository path the docs
name exists, every option of every subcommand is documented, and every hint the CLI prints runs
as printed.

Marker convention (an HTML comment, invisible on GitHub, on the line right before a fence):

    <!-- needs: cluster -->    submits to Slurm, or needs GPUs or a launched study on a cluster
    <!-- needs: cpu-run -->    launches real CPU work (the tiny ladder: minutes) or needs its study
    <!-- needs: files -->      names your own files (path/to/..., a checkpoint, a data file)
    <!-- needs: network -->    downloads from the model hub (prefetch, derive from hub ids)
    <!-- exit: 2 -->           the block's commands are shown failing: they must exit 2

A marked block is not run, but each of its commands is still checked: it must parse with the
real argument parser (options that exist), a recipe it names must load and plan with the same
--set/--sizes/--profile (`scaling check`), and the marker must be needed (a `cluster` or
`cpu-run` block must hold a command that launches work or reads a launched study; plan, check
and --dry-run run anywhere and must not hide behind a marker). Unmarked commands are run
in-process from a scratch directory that links to the repository's recipes/, slurm/ and tests/;
a command whose doc comment promises `#SBATCH` lines must print them.

    python -m pytest tests/unit/test_docs.py -q
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*(needs|exit):\s*([\w-]+)\s*-->\s*$")
NEEDS = {"cluster", "cpu-run", "files", "network"}
# what a `needs: cluster` / `needs: cpu-run` block must contain for the marker to be needed
LAUNCHING = {"launch", "resume", "status", "logs", "cancel", "report", "prefetch"}


@dataclass
class Command:
    doc: Path
    line: int  # 1-based line in the doc
    text: str  # the command as written (continuations joined, comment removed)
    comment: str  # the trailing "# ..." comment, if any
    marks: dict[str, str]

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)[1:]


def _split_comment(line: str) -> tuple[str, str]:
    """`scaling plan x   # note` -> ("scaling plan x", "note"); a '#' inside quotes stays."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=False)
    lex.whitespace_split = True
    lex.commenters = ""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def doc_commands() -> list[Command]:
    out: list[Command] = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        i, marks = 0, {}
        while i < len(lines):
            m = MARKER.match(lines[i].strip())
            if m:
                marks[m.group(1)] = m.group(2)
                i += 1
                continue
            if lines[i].lstrip().startswith("```"):
                lang = lines[i].strip()[3:].strip()
                j = i + 1
                while j < len(lines) and not lines[j].lstrip().startswith("```"):
                    j += 1
                if lang in ("", "bash", "sh", "shell", "console"):
                    k = i + 1
                    while k < j:
                        raw, start = lines[k].strip(), k
                        while raw.endswith("\\") and k + 1 < j:
                            k += 1
                            raw = raw[:-1].rstrip() + " " + lines[k].strip()
                        for part in re.split(r"\s*&&\s*", raw.removeprefix("$ ")):
                            text, comment = _split_comment(part)
                            if text.startswith("scaling ") or text == "scaling":
                                out.append(Command(doc, start + 1, text, comment, dict(marks)))
                        k += 1
                marks = {}
                i = j + 1
                continue
            if lines[i].strip():
                marks = {} if not lines[i].strip().startswith("<!--") else marks
            i += 1
    return out


COMMANDS = doc_commands()


# ------------------------------------------------------------------------------ running
@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A working directory like a fresh clone's: recipes/, slurm/, tests/ linked from the repository;
    runs/ and anything a command writes stay here."""
    d = tmp_path_factory.mktemp("docs-cwd")
    for name in ("recipes", "slurm", "tests", "perf", "scaling", "docs"):
        (d / name).symlink_to(ROOT / name)
    return d


@pytest.fixture
def in_scratch(scratch, off_cluster, monkeypatch):
    """Off-cluster, as a newcomer's laptop, whatever this machine has: PATH holds no Slurm client
    (``off_cluster``: a real PATH without sbatch/squeue/srun/sinfo, not a mocked lookup)."""
    monkeypatch.chdir(scratch)
    for var in ("SLURM_CONF", "SCALING_PROFILES", "SCALING_RECIPES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "120")
    return scratch


def _run(argv: list[str], capsys) -> tuple[int, str]:
    from scaling.cli import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse: a bad option
        rc = exc.code if isinstance(exc.code, int) else 2
    out = capsys.readouterr()
    return rc, out.out + out.err


def _runnable(c: Command) -> bool:
    return "needs" not in c.marks


def _ids(cmds: list[Command]) -> list[str]:
    return [f"{c.where} {c.text}" for c in cmds]


def test_the_docs_show_commands_and_markers_are_known():
    assert len(COMMANDS) >= 40, "the command extractor found too few commands"
    for c in COMMANDS:
        assert set(c.marks) <= {"needs", "exit"}, c.where
        if "needs" in c.marks:
            assert c.marks["needs"] in NEEDS, f"{c.where}: unknown marker needs: {c.marks['needs']} (known: {NEEDS})"
        if "exit" in c.marks:
            assert c.marks["exit"].isdigit(), c.where


RUNNABLE = [c for c in COMMANDS if _runnable(c)]


@pytest.mark.parametrize("cmd", RUNNABLE, ids=_ids(RUNNABLE))
def test_every_documented_command_runs_and_exits_as_the_doc_implies(cmd, in_scratch, capsys):
    expect = int(cmd.marks.get("exit", 0))
    if cmd.argv[:1] in (["launch"], ["resume"]) and "--dry-run" not in cmd.argv:  # never start work here
        pytest.fail(f"{cmd.where}: `{cmd.text}` starts jobs; mark its block <!-- needs: cluster --> "
                    "(GPU work) or <!-- needs: cpu-run --> (the tiny ladder)")
    rc, out = _run(cmd.argv, capsys)
    assert rc == expect, (f"{cmd.where}: `{cmd.text}` exited {rc}, the doc implies {expect} "
                          f"(fix the doc, or mark the block <!-- needs: ... -->):\n{out[-1500:]}")
    if re.search(r"#SBATCH|sbatch", cmd.comment):
        assert "#SBATCH" in out, f"{cmd.where}: the doc promises #SBATCH lines; `{cmd.text}` printed none:\n{out[-800:]}"


MARKED = [c for c in COMMANDS if not _runnable(c)]


def _recipe_args(argv: list[str]) -> tuple[str | None, list[str], str | None, str | None]:
    """(recipe, --set items, --sizes, --profile) of a parsed recipe command."""
    from scaling.cli import build_parser

    args = build_parser().parse_args(argv)
    recipe = getattr(args, "recipe", None)
    return recipe, list(getattr(args, "overrides", []) or []), getattr(args, "sizes", None), getattr(args, "profile", None)


@pytest.mark.parametrize("cmd", MARKED, ids=_ids(MARKED))
def test_marked_commands_parse_plan_and_need_their_marker(cmd, in_scratch, capsys):
    from scaling.cli import build_parser

    if cmd.marks["needs"] == "files" and re.search(r"path/to|/data/|<|\bID_OR_PATH\b|\.\.\.", cmd.text):
        try:
            build_parser().parse_args(cmd.argv)
        except SystemExit:
            pytest.fail(f"{cmd.where}: `{cmd.text}` does not parse (unknown option?)")
        return
    try:
        recipe, sets, sizes, profile = _recipe_args(cmd.argv)
    except SystemExit:
        pytest.fail(f"{cmd.where}: `{cmd.text}` does not parse with `scaling` (unknown option?)")
    sub = cmd.argv[0]
    if cmd.marks["needs"] == "network":
        assert sub in ("prefetch", "recipe"), f"{cmd.where}: `{cmd.text}` downloads nothing; remove <!-- needs: network -->"
    if cmd.marks["needs"] in ("cluster", "cpu-run"):
        dry = "--dry-run" in cmd.argv
        assert sub in LAUNCHING and not dry, (f"{cmd.where}: `{cmd.text}` runs anywhere; remove the "
                                              f"<!-- needs: {cmd.marks['needs']} --> marker so the test runs it")
    if recipe and (ROOT / recipe).exists():
        argv = ["check", recipe] + [x for s in sets for x in ("--set", s)]
        argv += ["--sizes", sizes] if sizes else []
        argv += ["--profile", profile] if profile else []
        rc, out = _run(argv, capsys)
        assert rc == 0, f"{cmd.where}: `{cmd.text}`: its recipe, --set, --sizes and --profile fail `scaling check`:\n{out}"
    elif recipe:
        assert cmd.marks["needs"] == "files", f"{cmd.where}: {recipe} does not exist"


# --------------------------------------------------------------------------- keys, paths
SECTION_ROOTS = ("study", "model", "train", "curate", "sft", "eval", "resources")
KEY = re.compile(r"`((?:sizes\.[A-Za-z0-9_<>]+\.)?(?:" + "|".join(SECTION_ROOTS)
                 + r")\.[A-Za-z0-9_<>.]+)(?:[=:][^`]*)?`")
PLACEHOLDER = re.compile(r"^<[^>]+>$")


def _field_type(cls: type, name: str) -> typing.Any:
    hints = typing.get_type_hints(cls)
    return hints.get(name)


def _unwrap(tp: typing.Any) -> typing.Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return tp


def key_exists(key: str) -> bool:
    """A dotted recipe key against the schema (scaling.records.RecipeFile and the records
    dataclasses); `<...>` matches any field or size key."""
    from scaling.records import RecipeFile

    parts = key.split(".")
    if parts[0] == "sizes":
        parts = parts[2:]
    cls: typing.Any = RecipeFile
    for p in parts:
        cls = _unwrap(cls)
        if typing.get_origin(cls) is dict:
            cls = typing.get_args(cls)[1]
            continue
        if not dataclasses.is_dataclass(cls):
            return False
        names = [f.name for f in dataclasses.fields(cls)]
        if PLACEHOLDER.match(p):
            cls = _field_type(cls, names[0]) if names else None
            continue
        if p not in names:
            return False
        cls = _field_type(cls, p)
    return True


def _doc_keys() -> list[tuple[str, int, str]]:
    found = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for m in KEY.finditer(line):
                if re.search(r"\.(ya?ml|json|parquet|md|py|html|txt|safetensors|bin|pt|pkl|png|jsonl)$", m.group(1)):  # a file name (study.yaml)
                    continue
                found.append((f"{doc.relative_to(ROOT)}:{n}", n, m.group(1).rstrip(".")))
            for m in re.finditer(r"--set\s+'?([a-z_]+\.[A-Za-z0-9_.<>]+)=", line):
                found.append((f"{doc.relative_to(ROOT)}:{n}", n, m.group(1)))
    return found


def test_every_recipe_key_the_docs_name_exists():
    bad = [f"{where}: `{key}`" for where, _, key in _doc_keys() if not key_exists(key)]
    assert len(_doc_keys()) > 30
    assert not bad, "recipe keys the schema (scaling/records/settings.py RecipeFile and the records it holds) does not have:\n" + \
        "\n".join(bad)


PATH = re.compile(r"`((?:\.ci|recipes|docs|scaling|tests|slurm|perf)/[A-Za-z0-9_./-]*)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_repository_path_the_docs_name_exists():
    bad = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            paths = [m.group(1) for m in PATH.finditer(line)]
            paths += [str((doc.parent / m.group(1)).resolve().relative_to(ROOT)) for m in LINK.finditer(line)
                      if "://" not in m.group(1) and (doc.parent / m.group(1)).resolve().is_relative_to(ROOT)]
            for p in paths:
                if re.search(r"[<>*{}]|\.\.\.", p) or p.rstrip("/").endswith(("mine.yaml", "my-study.yaml")):
                    continue
                if not (ROOT / p).exists():
                    bad.append(f"{doc.relative_to(ROOT)}:{n}: {p}")
    assert not bad, "paths the docs name that are not in the repository:\n" + "\n".join(bad)


# ------------------------------------------------------------------------------- options
def test_every_option_of_every_subcommand_is_documented():
    """Each option appears on a docs line (or table row) that names its subcommand."""
    from scaling.cli import build_parser

    text_lines = [ln for doc in DOCS for ln in doc.read_text().splitlines()]
    parser = build_parser()
    missing = []
    for a in parser._actions:  # the top-level options: `scaling --version`
        for o in a.option_strings:
            if o.startswith("--") and o != "--help" and not any(f"scaling {o}" in ln for ln in text_lines):
                missing.append(f"scaling {o}")
    sub_action = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub_action.choices.items():
        subs = {name: sp}
        for a in sp._actions:
            if a.dest == "recipe_command":
                subs = {f"{name} {k}": v for k, v in a.choices.items()}
        for full, p in subs.items():
            for a in p._actions:
                opts = [o for o in a.option_strings if o.startswith("--") and o != "--help"]
                if not opts:
                    continue
                if not any(f"scaling {full}" in ln and any(re.search(re.escape(o) + r"\b", ln) for o in opts)
                           for ln in text_lines):
                    missing.append(f"scaling {full} {opts[0]}")
    assert not missing, "options no docs line names together with their subcommand:\n" + "\n".join(missing)


def test_every_option_has_help_text():
    from scaling.cli import build_parser

    parser = build_parser()
    sub_action = next(a for a in parser._actions if a.dest == "command")
    bare = [f"{name} {'/'.join(a.option_strings)}" for name, sp in sub_action.choices.items()
            for a in sp._actions if a.option_strings and not a.help]
    assert not bare, f"options without help text: {bare}"


# --------------------------------------------------------------------------------- hints
def test_every_hint_the_cli_prints_runs_as_printed(tmp_path, monkeypatch, capsys):
    """A study launched with --runs-dir elsewhere fails; each `scaling ...` the output tells the
    user to run must run as printed, from the directory the user is in."""
    from scaling import launch as L
    from scaling.cli import main
    from tests.slurm import bodies as B

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)
    plan = B.plan("hinted", [B.job("a/train", "boom", study="hinted"),
                             B.job("a/eval", "item", after=["a/train"], array=["x"], study="hinted")])
    assert L.launch(B.FakeStudy("hinted"), plan, executor="debug", runs_dir=tmp_path / "elsewhere", poll_s=0.0) == 1
    out = capsys.readouterr().out
    hints = re.findall(r"`(scaling [^`]+)`", " ".join(out.split()))
    assert hints, out
    for hint in hints:
        rc = main(shlex.split(hint)[1:])
        printed = capsys.readouterr()
        # resume reruns the failing job (exit 1); a hint that cannot find the study exits 2
        assert rc in (0, 1) and "no manifest" not in printed.err, (
            f"the hint `{hint}` does not run as printed (exit {rc}): {printed.err or printed.out}")


# ------------------------------------------------------------------- drift (issue 26, item 6)
def _explain_rows(recipe: str, size: str) -> list[tuple[str, str, str]]:
    """(key, value, source) of every row `scaling plan RECIPE --explain SIZE` prints."""
    import io
    from contextlib import redirect_stdout

    from scaling.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["plan", recipe, "--explain", size]) == 0
    return re.findall(r"^│ (\S+)\s+│ (.*?)\s+│ (\S+)\s+│$", buf.getvalue(), re.M)


@pytest.mark.parametrize("recipe,size", [("recipes/tiny-ladder.yaml", "1m"), ("recipes/qwen3-ladder.yaml", "8b")])
def test_every_key_explain_prints_is_accepted_by_set(recipe, size, monkeypatch):
    """A key pasted from `--explain` into `--set` works: the plan loads with `--set KEY=VALUE` (the
    printed value) and the loader never calls the key unknown (it once printed `resources.nodes`,
    which is `resources.<stage>.nodes` in a recipe, and `seed` for `study.seed`)."""
    from scaling.errors import ScalingError
    from scaling.recipe import load_study

    monkeypatch.chdir(ROOT)
    rows = {k: v for k, v, _ in _explain_rows(recipe, size)}
    assert len(rows) > 50 and any(k.startswith("resources.") for k in rows)
    refused = []
    for key, value in rows.items():
        try:
            load_study(recipe, overrides=[f"{key}={value}"], sizes=[size])
        except ScalingError as err:
            if "unknown key" in str(err):
                refused.append(f"{key}: {err}")
    assert not refused, "--explain prints keys --set rejects:\n" + "\n".join(refused)


def _rule_names_explain_prints() -> set[str]:
    """Every `rule:<name>` that `scaling plan --explain` prints for every size of the shipped study
    recipes on their own profiles."""
    import io
    from contextlib import redirect_stdout

    from scaling.plan import make_plan, print_plan
    from scaling.recipe import load_study

    names: set[str] = set()
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        plan = make_plan(load_study(recipe))
        for size in sorted({r.size for r in plan.runs}):
            buf = io.StringIO()
            with redirect_stdout(buf):
                print_plan(plan, explain=size)
            names |= set(re.findall(r"\brule:(\w+)", buf.getvalue()))
    return names


def test_every_rule_the_docs_name_is_one_explain_prints():
    known = _rule_names_explain_prints()
    assert {"lr_by_size", "train_layout", "rollout_limit"} <= known
    bad = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for m in re.finditer(r"\brule:(\w+)|\brule `(\w+)`", line):
                name = m.group(1) or m.group(2)
                if name not in known:
                    bad.append(f"{doc.relative_to(ROOT)}:{n}: rule {name}")
    assert not bad, ("rules the docs name that no `--explain` prints (known: " + ", ".join(sorted(known)) + "):\n"
                     + "\n".join(bad))


def test_benchmark_problem_counts_agree_with_the_planner():
    """A benchmark file's "N problems" is the count the planner estimates with
    (rules.BENCHMARK_PROBLEMS; OlympiadBench once said 674 against the planner's 675), or the n of its
    task:// URI."""
    import urllib.parse

    import yaml

    from scaling.rules import BENCHMARK_PROBLEMS

    checked, bad = 0, []
    for f in sorted((ROOT / "recipes" / "benchmarks").glob("*.yaml")):
        text = f.read_text()
        data = yaml.safe_load(text)
        source = str(data.get("source", ""))
        planned = (int(dict(urllib.parse.parse_qsl(urllib.parse.urlparse(source).query))["n"])
                   if source.startswith("task://") else BENCHMARK_PROBLEMS.get(f.stem))
        for m in re.finditer(r"\b(\d{1,3}(?:,\d{3})+|\d+) (?:[A-Za-z][\w-]* )*?problems", text):
            said = int(m.group(1).replace(",", ""))
            checked += 1
            if planned is not None and said != planned:
                bad.append(f"{f.relative_to(ROOT)}: says {said} problems, the planner counts {planned}")
    assert checked >= 8 and not bad, "\n".join(bad)


def test_the_documented_task_command_writes_the_tiny_ladders_rows(tmp_path):
    """docs/tiny-ladder.md's `python -m scaling.task ...` writes the rows the recipe's URIs generate
    (its SFT set, its two benchmarks): the bare `--out DIR` writes 0-4 re-checks, the recipe 0-3."""
    import json

    import yaml

    from scaling import task
    from scaling.benchmarks import load_benchmark

    text = (ROOT / "docs" / "tiny-ladder.md").read_text()
    m = re.search(r"`python -m scaling\.task (--out DIR[^`]*)`", " ".join(text.split()))
    assert m, "docs/tiny-ladder.md names no `python -m scaling.task --out DIR ...` command"
    argv = shlex.split(m.group(1).replace("DIR", str(tmp_path)))
    assert task.main(argv) == 0
    recipe = yaml.safe_load((ROOT / "recipes" / "tiny-ladder.yaml").read_text())
    want = {"train": task.load_task(recipe["sft"]["dataset"]["source"]),
            "test": task.load_task(load_benchmark("tiny_arith").source),
            "ood": task.load_task(load_benchmark("tiny_arith_ood").source)}
    for split, rows in want.items():
        got = [json.loads(ln) for ln in (tmp_path / f"{split}.jsonl").read_text().splitlines()]
        assert got == rows, f"{split}.jsonl differs from the recipe's rows ({len(got)} vs {len(rows)} rows)"


def test_the_profile_copy_step_names_every_fact_a_profile_must_state():
    """getting-started.md's "Describe your cluster" step names every field in which the profile it
    tells you to copy differs from the schema's defaults (what you must restate for your cluster)."""
    from scaling.profiles import load_profile
    from scaling.records import ClusterProfile

    text = (ROOT / "docs" / "getting-started.md").read_text()
    m = re.search(r"1\. Describe your cluster: copy `(slurm/profiles/[\w.]+)`(.*?)\n2\. ", text, re.S)
    assert m, "getting-started.md has no 'Describe your cluster' step"
    prof, default = load_profile(str(ROOT / m.group(1))), ClusterProfile()
    must = [f.name for f in dataclasses.fields(prof) if getattr(prof, f.name) != getattr(default, f.name)]
    missing = [k for k in must if f"`{k}`" not in m.group(2)]
    assert len(must) >= 5 and not missing, f"the step omits {missing}"


def test_test_times_in_the_docs_are_readmes():
    """A tier's test time the docs state is the one README.md lists (one measurement, one number)."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    tiers = dict(re.findall(r"\b(unit|integration|slurm|slow|vllm) (\d+ min \d+ s)", readme))
    assert {"unit", "vllm"} <= set(tiers), tiers
    found, bad = 0, []
    for doc in DOCS[1:]:
        flat = " ".join(doc.read_text().split())
        for tier, took in re.findall(r"\b(unit|integration|slurm|slow|vllm) tier (?:takes|took) (\d+ min \d+ s)", flat):
            found += 1
            if took != tiers.get(tier):
                bad.append(f"{doc.relative_to(ROOT)}: the {tier} tier took {took}; README says {tiers.get(tier)}")
    assert found >= 1 and not bad, "\n".join(bad) or "no doc states a tier's time"
