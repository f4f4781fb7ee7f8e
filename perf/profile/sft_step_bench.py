"""CPU ms per SFT step of a tiny ladder model under one numeric mode (the SFT batch, 8 traces).

    MODELS=<study dir>/.models NT=1 python perf/profile/sft_step_bench.py 3m pad|group|packed[_bf16] 40

MODE: pad (padded batches, what SFT does), group (length-grouped order), packed (padding-free
rows with position ids); a _bf16 suffix runs the step under CPU bf16 autocast. The models come
from a launched or written study (perf/profile/write_runs.py, then one SFT job builds them).
"""
import os, sys, time, random, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(int(os.environ.get("NT", "1")))
size = sys.argv[1]; mode = sys.argv[2]; steps = int(sys.argv[3])
path = f"{os.environ.get('MODELS', '/tmp/prof/runs/tiny-ladder/.models')}/{size}"
tok = AutoTokenizer.from_pretrained(path)
from scaling.jobs.data import load_problems, build_prompt
from scaling.records import DatasetSpec
spec = DatasetSpec(source="task://arith?split=train&n=4000&steps=2&digits=1&max_rechecks=4&seed=0")
rows = load_problems(spec)
seqs = [tok(build_prompt(tok, r["problem"], suffix="Let's think step by step and output the final answer within \\boxed{}.", enable_thinking=True) + r["completion"] + "<|im_end|>")["input_ids"] for r in rows]
lens = [len(s) for s in seqs]
print("tokens: mean", sum(lens)/len(lens), "max", max(lens), "min", min(lens))
torch.manual_seed(0); random.seed(0)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
idx = list(range(len(seqs))); random.shuffle(idx)
if mode.startswith("group"):
    # megabatches of 50 batches sorted by length (transformers' LengthGroupedSampler idea)
    mb = 8 * 50
    idx = [i for k in range(0, len(idx), mb) for i in sorted(idx[k:k+mb], key=lambda i: -lens[i])]
def batch(b):
    ids = [seqs[i] for i in idx[b*8:(b+1)*8]]
    if mode.startswith("packed"):
        flat = torch.tensor([t for s in ids for t in s])[None]
        pos = torch.tensor([p for s in ids for p in range(len(s))])[None]
        return dict(input_ids=flat, position_ids=pos, labels=flat.clone()), flat.numel(), flat.numel()
    L = max(len(s) for s in ids)
    x = torch.full((8, L), tok.pad_token_id); m = torch.zeros((8, L), dtype=torch.long)
    for j, s in enumerate(ids):
        x[j, :len(s)] = torch.tensor(s); m[j, :len(s)] = 1
    lab = x.masked_fill(m == 0, -100)
    return dict(input_ids=x, attention_mask=m, labels=lab), x.numel(), int(m.sum())
bf = mode.endswith("bf16")
tot = real = 0
c0 = time.process_time(); w0 = time.perf_counter()
for b in range(steps):
    inp, n, r = batch(b); tot += n; real += r
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
        loss = model(**inp).loss
    loss.backward(); opt.step(); opt.zero_grad()
c = time.process_time() - c0; w = time.perf_counter() - w0
print(f"{size} {mode}: cpu/step {c/steps*1000:.0f} ms wall/step {w/steps*1000:.0f} ms tokens/step {tot/steps:.0f} real {real/steps:.0f} loss {loss.item():.7f} sum {sum(p.double().sum().item() for p in model.parameters()):.10f}")
