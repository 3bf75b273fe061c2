"""Tiny random diffusers autoencoders (AutoencoderKL, VQModel) and latent pipelines (LDMPipeline),
with diffusers' outputs, for diffuse's latent-diffusion parity tests (issue 26).

Writes tests/fixtures/autoencoders/<name>/: the model folder as `save_pretrained` writes it
(config.json, diffusion_pytorch_model.safetensors; float16 or bfloat16 weights for the `_f16` /
`_bf16` models, whose expected outputs come from those rounded weights in float32), and beside it
input.npy (x, [N, C, H, W]), mean.npy and, for KL models, logvar.npy (`vae.encode(x)`: the
posterior's mean and clamped log-variance, or a VQ model's latents before the codebook),
latents.npy (z, a random draw) and decoded.npy (`vae.decode(z).sample`).

And tests/fixtures/ldm/<name>/: an `LDMPipeline` folder (model_index.json, vqvae/, unet/,
scheduler/), with noise.npy (the latent x_T) and ddim20.npy: diffusers' LDMPipeline loop from that
noise, 20 DDIM steps with eta 0, then `vqvae.decode(latents / scaling_factor).sample` (the output
before `/ 2 + 0.5` and the clamp). The script checks that this loop is what `LDMPipeline.__call__`
computes (same noise through its generator), and that the float64 loop agrees with the float32 one
within 2e-4 (a fifth of the tests' 1e-3), so a fixture is never chaotic; it also checks that no
final latent of a VQ pipeline is within 1e-2 as near to a second codebook entry as to its own (the
difference of the two distances; 1e-3 for the decoder fixtures' exact latents), where a rounding
could switch the entry. VQ codebooks are perturbed by N(0, 1), not 0.1, to spread as the latents.

`--unseen SEED DIR` writes one more AutoencoderKL and one more LDMPipeline, from a seed and layout
the tests never saw, into DIR (for the issue's check by hand: `diffuse encode` / `decode` /
`sample --pipeline` against the .npy files beside them).

CI never runs this; rerun by hand:

    pip install torch diffusers numpy
    python3 scripts/reference/autoencoders.py
"""

import argparse
import pathlib

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"

# name: (class, config, input side)
AUTOENCODERS = {
    # One level, the mid block's attention, 3 channels, 4 latent channels (diffusers' defaults).
    "kl_one_level": (AutoencoderKL, dict(block_out_channels=(8,), norm_num_groups=4), 6),
    # Two levels with attention in the second encoder and first decoder block, grayscale, two
    # layers per block, 2 latent channels, a shift factor.
    "kl_attn_two_levels": (AutoencoderKL, dict(
        in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=2, latent_channels=2,
        down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
        up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=4,
        scaling_factor=0.5, shift_factor=0.1), 8),
    # Three levels, no quant convolutions, no mid-block attention, float16 weights.
    "kl_three_levels_f16": (AutoencoderKL, dict(
        in_channels=3, out_channels=3, block_out_channels=(8, 8, 16), latent_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
        mid_block_add_attention=False), 8),
    # A VQ model whose codebook is narrower than its latents (vq_embed_dim 2 of 3).
    "vq_two_levels": (VQModel, dict(
        in_channels=1, out_channels=1, block_out_channels=(8, 16), latent_channels=3, vq_embed_dim=2,
        num_vq_embeddings=16, norm_num_groups=4, scaling_factor=1.0,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2), 8),
    # bfloat16 weights, attention blocks, one level.
    "vq_attn_bf16": (VQModel, dict(
        block_out_channels=(8,), num_vq_embeddings=32, norm_num_groups=4,
        down_block_types=("AttnDownEncoderBlock2D",), up_block_types=("AttnUpDecoderBlock2D",)), 6),
}

UNET = dict(
    block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, attention_head_dim=4,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)

# name: (autoencoder fixture name, scheduler kwargs)
PIPELINES = {
    # CompVis/ldm-celebahq-256's shape: a VQModel, DDIM with diffusers' defaults but no clipping.
    "ldm_vq": ("vq_two_levels", dict(clip_sample=False)),
    # An AutoencoderKL in the vqvae slot (what a diffuse latent run writes), v prediction.
    "ldm_kl": ("kl_attn_two_levels", dict(prediction_type="v_prediction", clip_sample=False)),
}


def perturb(model, scale=0.1):
    """Every parameter moved, so that norms, biases and zero-initialised layers all matter."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


def dtype_of(name):
    return torch.float16 if name.endswith("_f16") else torch.bfloat16 if name.endswith("_bf16") else None


def codebook_margin(model, h):
    """The smallest gap between a latent vector's distances to its nearest and second-nearest
    entries: a rounding of the latents smaller than half of it cannot switch an entry."""
    z = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).double()
    d = torch.cdist(z, model.quantize.embedding.weight.double())
    two = d.topk(2, dim=1, largest=False).values
    return (two[:, 1] - two[:, 0]).min().item()


def make_autoencoder(name, cls, cfg, side, out_dir, seed):
    torch.manual_seed(seed)
    model = cls(**cfg).eval()
    perturb(model)
    if cls is VQModel:
        perturb(model.quantize, scale=1.0)
    dtype = dtype_of(name)
    if dtype is not None:
        model = model.to(dtype)
        model.save_pretrained(out_dir, safe_serialization=True)
        model = model.float()
    else:
        model.save_pretrained(out_dir, safe_serialization=True)
    c_in = cfg.get("in_channels", 3)
    x = torch.randn(2, c_in, side, side)
    with torch.no_grad():
        enc = model.encode(x)
        if cls is AutoencoderKL:
            mean, logvar = enc.latent_dist.mean, enc.latent_dist.logvar
        else:
            mean, logvar = enc.latents, None
        # Latents of the encoded shape, spread as the encoder's own; for a VQ model, a draw with
        # no vector within 1e-4 (relative) of a tie between two entries.
        for _ in range(100):
            z = mean + 0.5 * torch.randn_like(mean)
            if cls is AutoencoderKL or codebook_margin(model, z) > 1e-3:
                break
        else:
            raise AssertionError(f"{name}: every draw of latents is near a codebook tie")
        decoded = model.decode(z).sample
        # The same in float64: these fixtures must not hang on rounding.
        m64 = cls.from_pretrained(out_dir).double().eval()
        mean64 = m64.encode(x.double())
        mean64 = mean64.latent_dist.mean if cls is AutoencoderKL else mean64.latents
        dec64 = m64.decode(z.double()).sample
    gap = max((mean.double() - mean64).abs().max().item(), (decoded.double() - dec64).abs().max().item())
    assert gap < 2e-5, f"{name}: float32 and float64 differ by {gap}"
    np.save(out_dir / "input.npy", x.numpy().astype(np.float32))
    np.save(out_dir / "mean.npy", mean.numpy().astype(np.float32))
    if logvar is not None:
        np.save(out_dir / "logvar.npy", logvar.numpy().astype(np.float32))
    np.save(out_dir / "latents.npy", z.numpy().astype(np.float32))
    np.save(out_dir / "decoded.npy", decoded.numpy().astype(np.float32))
    print(name, sum(p.numel() for p in model.parameters()), "params; f32/f64 gap", gap,
          "decoded std", float(decoded.std()))
    return model


def ddim_loop(unet, vqvae, scheduler, noise, steps=20):
    """LDMPipeline.__call__'s loop, from given noise; returns the decoder's output (no clamp)."""
    latents = noise * scheduler.init_noise_sigma
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(latents, t)
        latents = scheduler.step(unet(x_in, t).sample, t, latents, eta=0.0).prev_sample
    latents = latents / vqvae.config.scaling_factor
    margin = codebook_margin(vqvae, latents) if isinstance(vqvae, VQModel) else float("inf")
    return vqvae.decode(latents).sample, margin


def make_pipeline(name, vae_dir, sched_kwargs, out_dir, seed, latent_side=4):
    torch.manual_seed(seed)
    vqvae = (VQModel if "VQModel" in (vae_dir / "config.json").read_text() else AutoencoderKL).from_pretrained(vae_dir).float().eval()
    channels = vqvae.config.get("vq_embed_dim") or vqvae.config.latent_channels
    unet = UNet2DModel(sample_size=latent_side, in_channels=channels, out_channels=channels, **UNET).eval()
    perturb(unet)
    scheduler = DDIMScheduler(**sched_kwargs)
    pipe = LDMPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    pipe = LDMPipeline.from_pretrained(out_dir)
    # The first noise seed whose final latents are no nearer than 1e-2 to a codebook tie.
    for seed in range(seed, seed + 50):
        noise = torch.randn(2, channels, latent_side, latent_side, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            out, margin = ddim_loop(pipe.unet, pipe.vqvae, DDIMScheduler.from_config(pipe.scheduler.config), noise)
        if margin > 1e-2:
            break
    else:
        raise AssertionError(f"{name}: every noise draw ends near a codebook tie")
    with torch.no_grad():
        # The pipeline itself draws the same noise from the same generator.
        images = pipe(batch_size=2, generator=torch.Generator().manual_seed(seed), num_inference_steps=20,
                      eta=0.0, output_type="np").images
        ours = (out / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        assert np.abs(images - ours).max() < 1e-5, "the loop is not LDMPipeline's"
        out64, _ = ddim_loop(pipe.unet.double(), pipe.vqvae.double(),
                          DDIMScheduler.from_config(pipe.scheduler.config), noise.double())
    gap = (out.double() - out64).abs().max().item()
    assert gap < 2e-4, f"{name}: float32 and float64 loops differ by {gap}"
    np.save(out_dir / "noise.npy", noise.numpy().astype(np.float32))
    np.save(out_dir / "ddim20.npy", out.numpy().astype(np.float32))
    print(name, "noise seed", seed, "codebook margin", margin, "f32/f64 gap", gap, "output std", float(out.std()))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--unseen", nargs=2, metavar=("SEED", "DIR"))
    args = parser.parse_args()
    if args.unseen:
        seed, root = int(args.unseen[0]), pathlib.Path(args.unseen[1])
        cfg = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16, 16), layers_per_block=2,
                   latent_channels=3, norm_num_groups=8, scaling_factor=0.3,
                   down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D", "DownEncoderBlock2D"),
                   up_block_types=("UpDecoderBlock2D", "AttnUpDecoderBlock2D", "UpDecoderBlock2D"))
        make_autoencoder("unseen_kl", AutoencoderKL, cfg, 16, root / "vae", seed)
        make_pipeline("unseen_ldm", root / "vae", dict(clip_sample=False, timestep_spacing="trailing"),
                      root / "ldm", seed, latent_side=4)
        return
    for i, (name, (cls, cfg, side)) in enumerate(AUTOENCODERS.items()):
        make_autoencoder(name, cls, cfg, side, ROOT / "autoencoders" / name, seed=i)
    for i, (name, (vae, sched)) in enumerate(PIPELINES.items()):
        make_pipeline(name, ROOT / "autoencoders" / vae, sched, ROOT / "ldm" / name, seed=100 + i)


if __name__ == "__main__":
    main()
