"""Cost of one decoding forward against the query tokens it carries, with a KV cache of prompt length.

Why: a constrained step carries ~14 query tokens per row (literal + the candidate tree exact
probabilities need), a free step one. Whether that costs time depends on the machine: on a CPU each
query token pays attention over the whole cached prompt; on a GPU a 7B forward is bound by reading
the weights up to a few hundred tokens. This measures the curve for a model (default: the tiny random
Qwen2-Audio built here) so the decode benchmark's ratios can be read, and the look-ahead's token budget
(``lmm_apa.infer.generate.LOOKAHEAD_TOKEN_BUDGET``) set.

    python benchmarks/bench_decode_step.py [--model DIR] [--device cpu] [--past 700] [--batch 1,16] [--queries 1,4,14,30,60]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--past", type=int, default=700, help="cached prompt positions (a `full` prompt is ~600-800)")
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--queries", default="1,4,14,30,60")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from lmm_apa.infer.generate import model_device
    from lmm_apa.models.compat import cache_kwargs, output_cache
    from lmm_apa.models.loading import load_model

    model = args.model
    if model is None:
        from lmm_apa.models.tiny import save_tiny_model

        model = str(save_tiny_model(Path(tempfile.mkdtemp(prefix="bench_step_")) / "tiny", arch="qwen2-audio", seed=0))
    m = load_model(model, None, args.device).model
    device = model_device(m)
    vocab = m.get_output_embeddings().weight.shape[0]
    rows = []
    print(f"{'batch':>5} {'query tokens':>12} {'ms / forward':>13} {'ms / query token':>17}")
    for batch in [int(b) for b in args.batch.split(",")]:
        ids = torch.randint(10, vocab - 10, (batch, args.past), device=device)
        with torch.no_grad():
            cache = output_cache(m(input_ids=ids, use_cache=True))
        for q in [int(x) for x in args.queries.split(",")]:
            mask = torch.zeros(batch, 1, q, args.past + q, device=device)
            mask[:, :, :, args.past:] = torch.triu(torch.full((q, q), torch.finfo(torch.float32).min, device=device), 1)
            x = torch.randint(10, vocab - 10, (batch, q), device=device)
            pos = torch.arange(args.past, args.past + q, device=device).expand(batch, q)

            def step():
                with torch.no_grad():
                    m(input_ids=x, attention_mask=mask.to(m.dtype), position_ids=pos, use_cache=True, **cache_kwargs(m, cache))
                cache.crop(-q)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            for _ in range(3):
                step()
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                step()
            ms = (time.perf_counter() - t0) / args.repeats * 1e3
            if cache.get_seq_length() != args.past:  # every point must see the same past
                raise RuntimeError(f"KV cache holds {cache.get_seq_length()} positions, expected {args.past}")
            print(f"{batch:>5} {q:>12} {ms:>13.2f} {ms / q:>17.3f}")
            rows.append({"batch": batch, "query_tokens": q, "ms": ms})
    return rows


if __name__ == "__main__":
    main()
