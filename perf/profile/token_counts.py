"""Tokens per SFT example of the tiny task under a tokenizer size: prompt (chat template + the
method's suffix) and completion, by number of re-checks.

    python perf/profile/token_counts.py 474 3     # TINY_VOCAB, max_rechecks
"""
import statistics as st
import sys
from collections import defaultdict

if __name__ == "__main__":
    import scaling.jobs.tiny as T
    from scaling.task import load_task

    T.TINY_VOCAB, rechecks = int(sys.argv[1]), int(sys.argv[2])
    tok = T.build_tokenizer()
    rows = load_task(f"task://arith?split=train&n=4000&steps=2&digits=1&max_rechecks={rechecks}&seed=0")
    suffix = "Let's think step by step and output the final answer within \\boxed{}."
    prompts, by_rechecks = [], defaultdict(list)
    for r in rows[:1000]:
        text = tok.apply_chat_template([{"role": "user", "content": r["problem"] + " " + suffix}], tokenize=False,
                                       add_generation_prompt=True)
        prompts.append(len(tok(text)["input_ids"]))
        by_rechecks[r["rechecks"]].append(len(tok(r["completion"])["input_ids"]))
    completions = [n for v in by_rechecks.values() for n in v]
    print(f"vocab {T.TINY_VOCAB}: prompt mean {st.mean(prompts):.1f} max {max(prompts)}; completion mean "
          f"{st.mean(completions):.1f} max {max(completions)}; by re-checks "
          + ", ".join(f"{k}: {min(v)}-{max(v)} (mean {st.mean(v):.1f})" for k, v in sorted(by_rechecks.items())))
