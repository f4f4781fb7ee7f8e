"""torch.profiler operator breakdown of 10 SFT steps of one tiny ladder model (1 thread).

    MODELS=<study dir>/.models python perf/profile/sft_op_profile.py 3m fp32|bf16
"""
import sys, os, time, random, torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
from scaling.jobs.data import load_problems, build_prompt
from scaling.records import DatasetSpec
size, bf = sys.argv[1], sys.argv[2] == "bf16"
path = f"{os.environ.get('MODELS', '/tmp/prof/runs/tiny-ladder/.models')}/{size}"
tok = AutoTokenizer.from_pretrained(path)
rows = load_problems(DatasetSpec(source="task://arith?split=train&n=400&steps=2&digits=1&max_rechecks=4&seed=0"))
seqs = [tok(build_prompt(tok, r["problem"], suffix="Let's think step by step and output the final answer within \\boxed{}.", enable_thinking=True) + r["completion"] + "<|im_end|>")["input_ids"] for r in rows]
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
def batch(b):
    ids = seqs[b*8:(b+1)*8]; L = max(map(len, ids))
    x = torch.full((8, L), tok.pad_token_id); m = torch.zeros((8, L), dtype=torch.long)
    for j, s in enumerate(ids): x[j, :len(s)] = torch.tensor(s); m[j, :len(s)] = 1
    return dict(input_ids=x, attention_mask=m, labels=x.masked_fill(m == 0, -100))
def step(b):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
        with torch.profiler.record_function("forward"):
            loss = model(**batch(b)).loss
    with torch.profiler.record_function("backward"):
        loss.backward()
    with torch.profiler.record_function("optimizer"):
        opt.step(); opt.zero_grad()
step(0)
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for b in range(1, 11): step(b)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=40))
ka = {e.key: e for e in prof.key_averages()}
for k in ("forward", "backward", "optimizer"):
    if k in ka: print(k, f"{ka[k].cpu_time_total/1e3/10:.0f} ms/step")
