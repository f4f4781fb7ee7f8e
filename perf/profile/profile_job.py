"""Profile one job (its real entry point) with pyinstrument; prints wall and CPU seconds.

    pip install pyinstrument
    taskset -c 1 python perf/profile/profile_job.py scaling.jobs.sft:main RUN_YAML OUT_PREFIX [ITEM]

Writes OUT_PREFIX.txt (call tree) and OUT_PREFIX.html.
"""
import sys
import time

if __name__ == "__main__":
    from pyinstrument import Profiler

    entry, run_yaml, out = sys.argv[1], sys.argv[2], sys.argv[3]
    item = sys.argv[4] if len(sys.argv) > 4 else None
    import torch  # import cost kept outside the measured span

    from scaling.supervise import run_entry

    p = Profiler(interval=0.005)
    w0, c0 = time.perf_counter(), time.process_time()
    p.start()
    run_entry(entry, run_yaml, item)
    p.stop()
    w, c = time.perf_counter() - w0, time.process_time() - c0
    print(f"PROFILE wall={w:.1f}s cpu={c:.1f}s threads={torch.get_num_threads()}", flush=True)
    open(out + ".txt", "w").write(p.output_text(unicode=False, color=False, show_all=False))
    open(out + ".html", "w").write(p.output_html())
