"""PyTorch (transformers) on a CUDA GPU, measured as `cargo bench --bench embed` measures imagelens.

The model has openai/clip-vit-base-patch32's architecture with seeded random weights (speed does
not depend on the values), as the embed bench's. Each timed call starts from pixel values (or
token ids) in host memory and ends with the features back in host memory, as the bench's does.
Run by scripts/gpu-check; alone:
    python3 scripts/gpu_peer.py [--batches 1,32,256] [--dtypes float32,float16,bfloat16]
Prints one JSON object: images/s per dtype and batch, and the latency of one text.
"""
import argparse
import copy
import json
import time

import torch
from transformers import CLIPConfig, CLIPModel

ap = argparse.ArgumentParser()
ap.add_argument("--batches", default="1,32,256")
ap.add_argument("--dtypes", default="float32,float16,bfloat16")
ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per case")
a = ap.parse_args()
torch.manual_seed(0)
dev = torch.device("cuda")
base = CLIPModel(CLIPConfig(text_config={}, vision_config={"patch_size": 32})).eval()
size = base.config.vision_config.image_size
out = {
    "torch": torch.__version__,
    "device": torch.cuda.get_device_name(0),
    "attention": getattr(base.config, "_attn_implementation", None),
}


def timed(fn, seconds):
    """Mean seconds per call: warm-up calls, then as many as fit in `seconds` (at least 5)."""
    for _ in range(3):
        fn()
    n, start = 0, time.perf_counter()
    while n < 5 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def features(y):
    return y.pooler_output if hasattr(y, "pooler_output") else y


with torch.inference_mode():
    for name in a.dtypes.split(","):
        dtype = getattr(torch, name)
        model = copy.deepcopy(base).to(dev, dtype)
        row = {}
        for b in (int(x) for x in a.batches.split(",")):
            x = torch.randn(b, 3, size, size)

            def vision():
                px = x.to(dev, dtype, non_blocking=False)
                return features(model.get_image_features(pixel_values=px)).float().cpu()

            row[f"images_per_s_b{b}"] = round(b / timed(vision, a.seconds), 1)
        for n_tok in (10, 77):
            ids = torch.randint(1, 1000, (1, n_tok))
            ids[0, -1] = model.config.text_config.vocab_size - 1

            def text():
                t = ids.to(dev)
                return features(model.get_text_features(input_ids=t)).float().cpu()

            row[f"text_ms_{n_tok}_tokens"] = round(1e3 * timed(text, a.seconds / 2), 3)
        out[name] = row
print(json.dumps(out))
