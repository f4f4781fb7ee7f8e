"""Code that runs on the allocation. The only place torch, transformers, trl, vllm, peft and
accelerate are imported (inside functions, so importing this package stays cheap)."""
