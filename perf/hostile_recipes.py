"""How long `scaling check` takes on hostile recipe files (issue 14 item 1): prints one line per
case with the wall time of ``scaling check`` in a fresh process and its first 100 characters.

    python perf/hostile_recipes.py

The documented bound (docs/recipes.md, "Guarantees"): on the 2-core CI machine every recipe file
returns within 2 s or is refused. The cases sit at the caps (a file just under
recipe.MAX_RECIPE_BYTES, a nesting just under MAX_YAML_DEPTH) and beyond them (an alias bomb,
a 50 MB file, 5,000 levels of brackets), and include the largest well-formed shapes a 1 MiB
file can take (a long budget list, thousands of benchmarks, a 1 MB string).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = "include: [method/efficient_reasoning.yaml]\nstudy: {name: bad, family: qwen3, sizes: [0_6b]}\n"


def cases() -> dict[str, str]:
    from scaling.yamlscan import MAX_RECIPE_BYTES, MAX_YAML_DEPTH

    bomb = ["&a [" + ", ".join(["2048"] * 9) + "]"]
    prev = "a"
    for n in "bcdefghi":
        bomb.append(f"&{n} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = n
    pad = MAX_RECIPE_BYTES - 2000
    return {
        "alias bomb, 9 levels": HEAD + "eval:\n  benchmarks: [aime25]\n  budgets: [" + ", ".join(bomb) + "]\n",
        "50 MB of comments": HEAD + "eval: {benchmarks: [aime25]}\n" + ("# x\n" * (50 * 1024 * 1024 // 4)),
        "1 MiB - 2 KB of comments": HEAD + "eval: {benchmarks: [aime25]}\n" + ("#" * 79 + "\n") * (pad // 80),
        "5,000 nested brackets": HEAD + "eval: {benchmarks: [aime25], budgets: " + "[" * 5000 + "1" + "]" * 5000 + "}\n",
        f"{MAX_YAML_DEPTH - 4} nested brackets": HEAD + "eval: {benchmarks: [aime25], budgets: "
        + "[" * (MAX_YAML_DEPTH - 4) + "1" + "]" * (MAX_YAML_DEPTH - 4) + "}\n",
        "~1 MiB budget list": HEAD + "eval: {benchmarks: [aime25], budgets: ["
        + ", ".join(str(1000 + i) for i in range(pad // 8)) + "]}\n",
        "9,000-item budget list": HEAD + "eval: {benchmarks: [aime25], budgets: ["
        + ", ".join(str(1000 + i) for i in range(9000)) + "]}\n",
        "~1 MiB benchmark list": HEAD + "eval: {benchmarks: [" + ", ".join(["aime25"] * (pad // 8)) + "]}\n",
        "9,000 benchmarks": HEAD + "eval: {benchmarks: [" + ", ".join(["aime25"] * 9000) + "]}\n",
        "9,000 size blocks": HEAD + "eval: {benchmarks: [aime25]}\nsizes:\n"
        + "".join(f"  x{i}: {{}}\n" for i in range(9000)),
        "4,900 size blocks (under the node cap)": HEAD + "eval: {benchmarks: [aime25]}\nsizes:\n"
        + "".join(f"  x{i}: {{}}\n" for i in range(4900)),
        "4,900 train keys (under the node cap)": HEAD + "eval: {benchmarks: [aime25]}\ntrain:\n"
        + "".join(f"  k{i}: 1\n" for i in range(4900)),
        "64 budgets x 60 benchmark files, 6 sizes": "include: [method/efficient_reasoning.yaml]\n"
        "study: {name: bad, family: qwen3, sizes: [0_6b, 1_7b, 4b, 8b, 14b, 32b]}\n"
        "eval: {budgets: [" + ", ".join(str(512 * (i + 1)) for i in range(64)) + "], benchmarks: ["
        + ", ".join(f"{BENCH}/b{i}.yaml" for i in range(60)) + "]}\n",
        "~1 MiB string": "include: [method/efficient_reasoning.yaml]\neval: {benchmarks: [aime25]}\n"
        "study: {name: bad, family: qwen3, sizes: [0_6b], description: '" + "x" * pad + "'}\n",
        "~1 MiB of size blocks": HEAD + "eval: {benchmarks: [aime25]}\nsizes:\n"
        + "".join(f"  x{i}: {{train: {{max_steps: 5}}}}\n" for i in range(pad // 34)),
        "~1 MiB of --set-like keys": HEAD + "eval: {benchmarks: [aime25]}\ntrain:\n"
        + "".join(f"  k{i}: 1\n" for i in range(pad // 10)),
    }


BENCH = tempfile.mkdtemp(prefix="hostile-bench-")


def main() -> int:
    worst = 0.0
    for i in range(60):  # 60 distinct, valid benchmark files (the cap is 64 per list)
        Path(BENCH, f"b{i}.yaml").write_text("source: math-ai/aime25\nsplit: test\n")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in cases().items():
            path = Path(tmp) / "r.yaml"
            path.write_text(text)
            t0 = time.monotonic()
            res = subprocess.run([sys.executable, "-m", "scaling", "check", str(path)], capture_output=True,
                                 text=True, timeout=600)
            dt = time.monotonic() - t0
            worst = max(worst, dt)
            line = (res.stderr or res.stdout).strip().splitlines()
            first = line[0] if line else ""
            print(f"{dt:6.2f} s  exit {res.returncode}  {len(text) / 1024:9.0f} KiB  {name}: {first[:100]}")
    print(f"worst: {worst:.2f} s (bound: 2 s on the 2-core CI machine)")
    import shutil

    shutil.rmtree(BENCH, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
