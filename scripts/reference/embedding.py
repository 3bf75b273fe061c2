"""Reference for diffuse_nn::embedding::timestep_embedding, from diffusers' get_timestep_embedding.

Writes tests/fixtures/timestep_embedding.json. CI never runs this; rerun by hand:

    pip install torch diffusers
    python3 scripts/reference/embedding.py
"""

import json
import pathlib

import diffusers
import torch
from diffusers.models.embeddings import get_timestep_embedding

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "timestep_embedding.json"


def main():
    t = torch.tensor([0.0, 1.0, 10.0, 257.0, 999.0])
    cases = []
    for dim, flip, shift in [(64, True, 0.0), (32, False, 1.0), (33, True, 1.0), (8, False, 0.0)]:
        emb = get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift, max_period=10000)
        cases.append({"dim": dim, "flip_sin_to_cos": flip, "freq_shift": shift, "t": t.tolist(),
                      "embedding": [float(v) for v in emb.reshape(-1).tolist()]})
    OUT.write_text(json.dumps({"generated_by": "scripts/reference/embedding.py", "torch": torch.__version__,
                               "diffusers": diffusers.__version__, "cases": cases}))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
