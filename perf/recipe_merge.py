"""What merging a recipe through omegaconf would cost, against what ``load_study`` costs now.

    python perf/recipe_merge.py [--recipe recipes/qwen3-ladder.yaml] [--repeat 5]

Prints, for one recipe (medians of ``--repeat`` runs):

* ``load_study`` as it is (layers merged by ``layers.merge_into``, each size built by
  ``validate.structured``: direct construction when every value already has its declared type,
  omegaconf's structured merge otherwise);
* the same layers merged and validated by omegaconf alone, per size
  ``OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SizeSettings), *layers))``, with the
  schema built once and reused;
* ``import omegaconf`` in a fresh interpreter (``scaling plan`` does not import it today unless a
  value needs omegaconf's decision or ``--set`` is given).

This is the measurement behind docs/architecture.md "Why recipes are merged by hand": issue 15
asked for omegaconf merging and for ``perf/plan_speed.py`` to be no slower; both cannot hold.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "qwen3-ladder.yaml"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from scaling.layers import SECTIONS, Loader
    from scaling.recipe import load_study
    from scaling.records import RecipeFile, SizeFile, SizeSettings

    study = load_study(args.recipe)
    ours = _median_ms(lambda: load_study(args.recipe), args.repeat)

    imp = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); import omegaconf; "
                              "print(time.perf_counter()-t)"], capture_output=True, text=True, check=True)
        imp.append(float(out.stdout) * 1000)
    from omegaconf import OmegaConf

    t0 = time.perf_counter()
    schema = OmegaConf.structured(SizeSettings)
    schema_ms = (time.perf_counter() - t0) * 1000
    loader = Loader()
    chain = loader.chain(Path(args.recipe), RecipeFile)
    fam_dir = ROOT / "recipes" / "families" / study.family

    def layers_of(size: str) -> list[dict]:
        files = [la.data for la in chain[:-1]] + [la.data for la in loader.chain(fam_dir / f"{size}.yaml", SizeFile)]
        files.append(chain[-1].data)
        block = (chain[-1].data.get("sizes") or {}).get(size)
        if block:
            files.append(block)
        return [{s: d[s] for s in SECTIONS if d.get(s) is not None} for d in files]

    def omegaconf_all() -> None:
        for size in study.sizes:
            OmegaConf.to_object(OmegaConf.merge(schema, *layers_of(size)))

    omega = _median_ms(omegaconf_all, args.repeat)
    n = len(study.sizes)
    print(f"recipe {Path(args.recipe).name}: {n} sizes")
    print(f"  load_study now (hand merge + typed build)      {ours:8.1f} ms")
    print(f"  omegaconf merge + to_object of the same layers {omega:8.1f} ms  ({omega / n:.1f} ms per size)")
    print(f"  OmegaConf.structured(SizeSettings), once       {schema_ms:8.1f} ms")
    print(f"  import omegaconf (fresh interpreter)           {statistics.median(imp):8.1f} ms")
    extra = omega - ours + schema_ms + statistics.median(imp)
    print(f"  => merging through omegaconf instead would add ~{extra:.0f} ms to `scaling plan` of this recipe")
    return 0


if __name__ == "__main__":
    sys.exit(main())
