"""CPU seconds of N SFT steps of one tiny size under batching variants, through the SFT job's own
code path (scaling.jobs.sft.main), on a run.yaml written by perf/profile/write_runs.py.

    python perf/profile/write_runs.py recipes/tiny-ladder.yaml /tmp/bench/runs sft.max_steps=60
    taskset -c 0 python perf/profile/sft_variants.py /tmp/bench/runs/tiny-ladder 3m base
    taskset -c 1 python perf/profile/sft_variants.py /tmp/bench/runs/tiny-ladder 3m acc8

VARIANT: base (what the job does), accN (micro-batches of N sequences, 8/N of them accumulated per
step: acc4 = 2 x 4, acc8 = the step in one batch),
rebalN (accN with transformers' batch_rebalance sampler), group (train_sampling_strategy=
group_by_length). Prints the trainer's CPU and wall seconds and the last logged loss.
"""
import os
import shutil
import sys
import time

if __name__ == "__main__":
    import transformers

    import scaling.jobs.sft as S
    from scaling.supervise import run_entry

    study, size, variant = sys.argv[1], sys.argv[2], sys.argv[3]
    make = S.make_sft_config

    def patched(run, out_dir, device):
        c = make(run, out_dir, device)
        if variant == "group":
            c.train_sampling_strategy = "group_by_length"
        elif variant.startswith(("acc", "rebal")):
            per_device = int("".join(ch for ch in variant if ch.isdigit()))
            c.per_device_train_batch_size, c.gradient_accumulation_steps = per_device, 8 // per_device
            if variant.startswith("rebal"):
                c.train_sampling_strategy = "batch_rebalance"
        c.save_strategy = "no"
        return c

    S.make_sft_config = patched
    train = transformers.Trainer.train

    def timed(self, *a, **k):
        c0, w0 = time.process_time(), time.perf_counter()
        out = train(self, *a, **k)
        loss = [x["loss"] for x in self.state.log_history if "loss" in x][-1]
        print(f"{size} {variant}: train cpu {time.process_time() - c0:.1f} s, wall {time.perf_counter() - w0:.1f} s, "
              f"{self.state.global_step} steps, loss {loss:.3f}", flush=True)
        return out

    transformers.Trainer.train = timed
    src = os.path.join(study, size, "sft")
    dst = f"{src}_{variant}"  # one run dir per variant: each job takes its run's writer lock
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "run.yaml"), dst)
    run_entry("scaling.jobs.sft:main", os.path.join(dst, "run.yaml"))
