"""Independent reference loops for ALG, one per pipeline family, written from SPEC.md.

Each loop reproduces the pipeline's own setup with the pipeline's helper methods (prompt
handling, image preprocessing, prepare_latents, timesteps), then runs its own denoising loop
where every CFG term is a separate, unbatched denoiser call and the guidance is the SPEC
formula, written out:

    s == 0: eps = U(I) + w * (C(I) - U(I))
    s  > 0: eps = U(I) + w * (C(LP I) - U(LP I))      (no CFG: eps = C(LP I))

The low-pass filter is the SPEC's down/up definition written directly with F.interpolate, and
the window is the SPEC's step switch on p = i / max(N - 1, 1); nothing here imports the
guidance_kit filters, schedules or controller.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def downup(x: torch.Tensor, factor: float) -> torch.Tensor:
    """SPEC down/up at full strength on the last two axes."""
    height, width = x.shape[-2:]
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    y = x.reshape(-1, 1, height, width)
    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=True)
    y = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return y.reshape(x.shape)


def window(i: int, n: int, end: float) -> bool:
    return 0.0 <= i / max(n - 1, 1) <= end


def cfg_step(d, image, filtered, on, pos, neg, w):  # noqa: ANN001
    """One CFG step from unbatched calls ``d(condition, text)``: with the filter on,
    U(I) + w * (C(LP I) - U(LP I)); off, U(I) + w * (C(I) - U(I))."""
    u0 = d(image, neg)
    if on:
        return u0 + w * (d(filtered, pos) - d(filtered, neg))
    return u0 + w * (d(image, pos) - u0)


@torch.no_grad()
def wan(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """Wan 2.1 / 2.2 A14B / 2.2 TI2V (WanImageToVideoPipeline) and SkyReels-V2 I2V."""
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    w1 = kw["guidance_scale"]
    w2 = kw.get("guidance_scale_2", w1)
    image_embeds = None
    if pipe.transformer.config.image_dim is not None:
        image_embeds = pipe.encode_image(image, "cpu").to(dtype)
    pipe.scheduler.set_timesteps(steps)
    timesteps = pipe.scheduler.timesteps
    pixels = pipe.video_processor.preprocess(image, height=kw["height"], width=kw["width"]).to(torch.float32)
    z = pipe.vae.config.z_dim
    out = pipe.prepare_latents(
        pixels, 1, z, kw["height"], kw["width"], kw["num_frames"], torch.float32, "cpu", gen
    )
    expand = pipe.config.get("expand_timesteps", False)
    if expand:
        latents, condition, first_frame_mask = out
    else:
        latents, condition = out
    ratio = pipe.config.get("boundary_ratio")
    boundary = None if ratio is None else ratio * pipe.scheduler.config.num_train_timesteps

    def model_input(cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if expand:
            mask = first_frame_mask.to(dtype)
            hidden = (1 - mask) * cond + mask * latents.to(dtype)
            ts = (first_frame_mask[0][0][:, ::2, ::2] * t).flatten().unsqueeze(0)
            return hidden, ts
        return torch.cat([latents.to(dtype), cond], dim=1), t.expand(1)

    full = condition.to(dtype)
    if expand:
        filtered = downup(full, factor)
    else:
        filtered = torch.cat([full[:, :-z], downup(full[:, -z:], factor)], dim=1)
    for i, t in enumerate(timesteps):
        model, w = (pipe.transformer, w1) if boundary is None or t >= boundary else (pipe.transformer_2, w2)

        def d(cond, text):  # noqa: ANN001
            hidden, ts = model_input(cond)
            return model(
                hidden_states=hidden,
                timestep=ts,
                encoder_hidden_states=text,
                encoder_hidden_states_image=image_embeds,
                return_dict=False,
            )[0]

        eps = cfg_step(d, full, filtered, window(i, steps, end), pos, neg, w)
        latents = pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
    if expand:
        latents = (1 - first_frame_mask) * condition + first_frame_mask * latents
    return latents


@torch.no_grad()
def cogvideox(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    w = kw["guidance_scale"]
    pipe.scheduler.set_timesteps(steps, device="cpu")
    timesteps = pipe.scheduler.timesteps
    pixels = pipe.video_processor.preprocess(image, height=kw["height"], width=kw["width"]).to(dtype=dtype)
    latents, image_latents = pipe.prepare_latents(
        pixels,
        1,
        pipe.transformer.config.in_channels // 2,
        kw["num_frames"],
        kw["height"],
        kw["width"],
        dtype,
        "cpu",
        gen,
    )
    extra = pipe.prepare_extra_step_kwargs(gen, 0.0)
    rotary = pipe._prepare_rotary_positional_embeddings(kw["height"], kw["width"], latents.size(1), "cpu")
    filtered = downup(image_latents, factor)
    for i, t in enumerate(timesteps):
        x = pipe.scheduler.scale_model_input(latents, t)

        def d(cond, text):  # noqa: ANN001
            return pipe.transformer(
                hidden_states=torch.cat([x, cond], dim=2),
                encoder_hidden_states=text,
                timestep=t.expand(1),
                ofs=None,
                image_rotary_emb=rotary,
                return_dict=False,
            )[0].float()  # the pipeline casts each prediction to float32

        eps = cfg_step(d, image_latents, filtered, window(i, steps, end), pos, neg, w)
        latents = pipe.scheduler.step(eps, t, latents, **extra, return_dict=False)[0].to(dtype)
    return latents


@torch.no_grad()
def ltx(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    from diffusers.pipelines.ltx.pipeline_ltx_image2video import calculate_shift, retrieve_timesteps

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    pos_mask, neg_mask = kw["prompt_attention_mask"].to(dtype), kw["negative_prompt_attention_mask"].to(dtype)
    w = kw["guidance_scale"]
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(dtype=dtype)
    latents, mask = pipe.prepare_latents(
        pixels, 1, pipe.transformer.config.in_channels, height, width, frames, torch.float32, "cpu", gen
    )
    lf = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
    lh, lw = height // pipe.vae_spatial_compression_ratio, width // pipe.vae_spatial_compression_ratio
    sigmas = np.linspace(1.0, 1 / steps, steps)
    cfg = pipe.scheduler.config
    mu = calculate_shift(
        lf * lh * lw,
        cfg.get("base_image_seq_len", 256),
        cfg.get("max_image_seq_len", 4096),
        cfg.get("base_shift", 0.5),
        cfg.get("max_shift", 1.15),
    )
    timesteps, _ = retrieve_timesteps(pipe.scheduler, steps, "cpu", None, sigmas=sigmas, mu=mu)
    rope = (
        pipe.vae_temporal_compression_ratio / 25,
        pipe.vae_spatial_compression_ratio,
        pipe.vae_spatial_compression_ratio,
    )
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size

    def with_first_frame(packed, first):  # noqa: ANN001
        video = pipe._unpack_latents(packed, lf, lh, lw, p, pt)
        return pipe._pack_latents(torch.cat([first, video[:, :, 1:]], dim=2), p, pt)

    for i, t in enumerate(timesteps):
        x = latents.to(dtype)
        timestep = t.expand(1).unsqueeze(-1) * (1 - mask)
        first = pipe._unpack_latents(x, lf, lh, lw, p, pt)[:, :, :1]
        x_f = with_first_frame(x, downup(first, factor))

        def d(hidden, text, text_mask):  # noqa: ANN001
            return pipe.transformer(
                hidden_states=hidden,
                encoder_hidden_states=text,
                timestep=timestep,
                encoder_attention_mask=text_mask,
                num_frames=lf,
                height=lh,
                width=lw,
                rope_interpolation_scale=rope,
                return_dict=False,
            )[0].float()

        eps = cfg_step(
            lambda h, text: d(h, *text), x, x_f, window(i, steps, end), (pos, pos_mask), (neg, neg_mask), w
        )
        eps = pipe._unpack_latents(eps, lf, lh, lw, p, pt)
        video = pipe._unpack_latents(latents, lf, lh, lw, p, pt)
        pred = pipe.scheduler.step(eps[:, :, 1:], t, video[:, :, 1:], return_dict=False)[0]
        latents = pipe._pack_latents(torch.cat([video[:, :, :1], pred], dim=2), p, pt)
    return latents


@torch.no_grad()
def hunyuan(pipe, kw, image, steps, factor, end, seed, true_cfg=None):  # noqa: ANN001
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    kind = pipe.transformer.config.image_condition_type
    pixels = pipe.video_processor.preprocess(image, height, width).to("cpu", pipe.vae.dtype)
    channels = pipe.transformer.config.in_channels
    z = (channels - 1) // 2 if kind == "latent_concat" else channels
    latents, image_latents = pipe.prepare_latents(
        pixels, 1, z, height, width, frames, torch.float32, "cpu", gen, None, kind
    )
    if kind == "latent_concat":
        image_latents[:, :, 1:] = 0
        mask = image_latents.new_ones(image_latents.shape[0], 1, *image_latents.shape[2:])
        mask[:, :, 1:] = 0
    text = (
        kw["prompt_embeds"].to(dtype),
        kw["prompt_attention_mask"].to(dtype),
        kw["pooled_prompt_embeds"].to(dtype),
    )
    sigmas = np.linspace(1.0, 0.0, steps + 1)[:-1]
    pipe.scheduler.set_timesteps(sigmas=sigmas, device="cpu")
    timesteps = pipe.scheduler.timesteps
    guidance = torch.tensor([kw["guidance_scale"]], dtype=dtype) * 1000.0
    filtered = downup(image_latents.to(dtype), factor)  # the denoiser sees the condition in its dtype
    for i, t in enumerate(timesteps):

        def d(cond, embeds):  # noqa: ANN001
            if kind == "latent_concat":
                hidden = torch.cat([latents, cond, mask], dim=1).to(dtype)
            else:  # token_replace: latent frame 0 is the image latent
                hidden = torch.cat([cond.to(dtype), latents[:, :, 1:].to(dtype)], dim=2)
            return pipe.transformer(
                hidden_states=hidden,
                timestep=t.expand(1).to(latents.dtype),
                encoder_hidden_states=embeds[0],
                encoder_attention_mask=embeds[1],
                pooled_projections=embeds[2],
                guidance=guidance,
                return_dict=False,
            )[0]

        on = window(i, steps, end)
        if true_cfg is None:  # embedded guidance only: ALG is one pass
            eps = d(filtered if on else image_latents, text)
        else:
            w, negative = true_cfg
            eps = cfg_step(d, image_latents, filtered, on, text, negative, w)
        if kind == "latent_concat":
            latents = pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
        else:
            latents = pipe.scheduler.step(eps[:, :, 1:], t, latents[:, :, 1:], return_dict=False)[0]
            latents = torch.cat([image_latents, latents], dim=2)
    return latents[:, :, 1:] if kind == "latent_concat" else latents  # as the pipeline's latent output


@torch.no_grad()
def svd(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
        _append_dims,
        retrieve_timesteps,
    )

    gen = torch.Generator().manual_seed(seed)
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    fps, motion_bucket_id, noise_aug = 7, 127, 0.02
    pipe._guidance_scale = kw["max_guidance_scale"]
    embeds = pipe._encode_image(image, "cpu", 1, False)  # conditional CLIP embedding; uncond is zeros
    pixels = pipe.video_processor.preprocess(image, height=height, width=width)
    pixels = pixels + noise_aug * torch.randn(pixels.shape, generator=gen, dtype=pixels.dtype)
    image_latents = pipe._encode_vae_image(pixels, "cpu", 1, False).to(embeds.dtype)
    image_latents = image_latents.unsqueeze(1).repeat(1, frames, 1, 1, 1)
    time_ids = pipe._get_add_time_ids(fps - 1, motion_bucket_id, noise_aug, embeds.dtype, 1, 1, False)
    timesteps, _ = retrieve_timesteps(pipe.scheduler, steps, "cpu", None, None)
    latents = pipe.prepare_latents(
        1, frames, pipe.unet.config.in_channels, height, width, embeds.dtype, "cpu", gen
    )
    w = (
        torch.linspace(kw["min_guidance_scale"], kw["max_guidance_scale"], frames)
        .unsqueeze(0)
        .to(latents.dtype)
    )
    w = _append_dims(w, latents.ndim)
    filtered = downup(image_latents, factor)
    for i, t in enumerate(timesteps):
        x = pipe.scheduler.scale_model_input(latents, t)

        def d(cond, clip):  # noqa: ANN001
            return pipe.unet(
                torch.cat([x, cond], dim=2),
                t,
                encoder_hidden_states=clip,
                added_time_ids=time_ids,
                return_dict=False,
            )[0]

        # The unconditional branch sees a zero image latent and a zero CLIP embedding, and
        # LP(0) = 0, so U(LP I) = U(I): ALG is eps = U + w * (C(LP I) - U).
        u0 = d(torch.zeros_like(image_latents), torch.zeros_like(embeds))
        cond = filtered if window(i, steps, end) else image_latents
        eps = u0 + w * (d(cond, embeds) - u0)
        latents = pipe.scheduler.step(eps, t, latents).prev_sample
    return latents


@torch.no_grad()
def sana(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """Sana-Video I2V: latent frame 0 is the image latent (timestep 0 there), frames 1: are stepped."""
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    pos_mask, neg_mask = kw["prompt_attention_mask"], kw["negative_prompt_attention_mask"]
    w = kw["guidance_scale"]
    height, width, frames = kw["height"], kw["width"], kw["frames"]
    pipe.scheduler.set_timesteps(steps, device="cpu")
    timesteps = pipe.scheduler.timesteps
    channels = pipe.transformer.config.in_channels
    pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(torch.float32)
    latents = pipe.prepare_latents(pixels, 1, channels, height, width, frames, torch.float32, "cpu", gen)
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    mask = latents.new_zeros(1, 1, latents.shape[2] // pt, latents.shape[3] // p, latents.shape[4] // p)
    mask[:, :, 0] = 1.0
    image_latent = latents[:, :, :1].to(dtype)
    filtered = downup(image_latent, factor)
    for i, t in enumerate(timesteps):
        timestep = t.expand(mask.shape) * (1 - mask)

        def d(first, text, text_mask):  # noqa: ANN001
            hidden = torch.cat([first, latents[:, :, 1:].to(dtype)], dim=2)
            return pipe.transformer(
                hidden,
                encoder_hidden_states=text,
                encoder_attention_mask=text_mask,
                timestep=timestep,
                return_dict=False,
            )[0].float()  # the pipeline casts the prediction to float32 before CFG

        on = window(i, steps, end)
        eps = cfg_step(
            lambda h, text: d(h, *text), image_latent, filtered, on, (pos, pos_mask), (neg, neg_mask), w
        )
        if pipe.transformer.config.out_channels // 2 == channels:  # learned sigma
            eps = eps.chunk(2, dim=1)[0]
        stepped = pipe.scheduler.step(eps[:, :, 1:], t, latents[:, :, 1:], return_dict=False)[0]
        latents = torch.cat([latents[:, :, :1], stepped], dim=2)
    return latents


@torch.no_grad()
def hunyuan_skyreels(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """SkyReels-V1 I2V: [latents, image latents (frame 0, zeros after)] on channels; true CFG when
    true_cfg_scale > 1 (split calls, conditional first), embedded guidance always."""
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    w = kw.get("true_cfg_scale", 6.0)
    text = tuple(kw[k].to(dtype) for k in ("prompt_embeds", "prompt_attention_mask", "pooled_prompt_embeds"))
    negative = tuple(
        kw[k].to(dtype)
        for k in ("negative_prompt_embeds", "negative_prompt_attention_mask", "negative_pooled_prompt_embeds")
    )
    sigmas = np.linspace(1.0, 0.0, steps + 1)[:-1]
    pipe.scheduler.set_timesteps(sigmas=sigmas, device="cpu")
    pixels = pipe.video_processor.preprocess(image, height=height, width=width).to("cpu", pipe.vae.dtype)
    z = pipe.transformer.config.in_channels // 2
    latents, image_latents = pipe.prepare_latents(
        pixels, 1, z, height, width, frames, torch.float32, "cpu", gen
    )
    condition = image_latents.to(dtype)
    filtered = downup(condition, factor)
    guidance = torch.tensor([kw.get("guidance_scale", 1.0)], dtype=dtype) * 1000.0
    for i, t in enumerate(pipe.scheduler.timesteps):

        def d(cond, embeds):  # noqa: ANN001
            return pipe.transformer(
                hidden_states=torch.cat([latents.to(dtype), cond], dim=1),
                timestep=t.expand(1).to(latents.dtype),
                encoder_hidden_states=embeds[0],
                encoder_attention_mask=embeds[1],
                pooled_projections=embeds[2],
                guidance=guidance,
                return_dict=False,
            )[0]

        on = window(i, steps, end)
        if w <= 1:  # embedded guidance only: ALG is one pass
            eps = d(filtered if on else condition, text)
        else:
            eps = cfg_step(d, condition, filtered, on, text, negative, w)
        latents = pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def chronoedit(pipe, kw, image, steps, factor, end, seed, reasoning_steps=None):  # noqa: ANN001
    """ChronoEdit: Wan 2.1 I2V layout ([latents, mask, image latents] on channels, CLIP embedding).
    With temporal reasoning (``reasoning_steps``) latent frames [0, -1] are kept from that step on,
    together with the scheduler's multistep history."""
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    w = kw["guidance_scale"]
    frames = kw["num_frames"] if reasoning_steps is not None else 5
    image_embeds = pipe.encode_image(image, "cpu").to(dtype)
    pipe.scheduler.set_timesteps(steps, device="cpu")
    pixels = pipe.video_processor.preprocess(image, height=kw["height"], width=kw["width"]).to(torch.float32)
    z = pipe.vae.config.z_dim
    latents, condition = pipe.prepare_latents(
        pixels, 1, z, kw["height"], kw["width"], frames, torch.float32, "cpu", gen
    )
    for i, t in enumerate(pipe.scheduler.timesteps):
        if i == reasoning_steps:
            latents, condition = latents[:, :, [0, -1]], condition[:, :, [0, -1]]
            s = pipe.scheduler
            s.model_outputs = [m if m is None else m[:, :, [0, -1]] for m in s.model_outputs]
            s.last_sample = s.last_sample[:, :, [0, -1]]
        full = condition.to(dtype)
        filtered = torch.cat([full[:, :-z], downup(full[:, -z:], factor)], dim=1)

        def d(cond, text):  # noqa: ANN001
            return pipe.transformer(
                hidden_states=torch.cat([latents.to(dtype), cond], dim=1),
                timestep=t.expand(1),
                encoder_hidden_states=text,
                encoder_hidden_states_image=image_embeds,
                return_dict=False,
            )[0]

        eps = cfg_step(d, full, filtered, window(i, steps, end), pos, neg, w)
        latents = pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def kandinsky5(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """Kandinsky 5 I2V: channels-last [B, F, h, w, C + C + 1] latents, frame 0 of the first C
    channels is the image latent; frames 1: are stepped; each branch has its own text positions."""
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    w = kw["guidance_scale"]
    c = pipe.transformer.config.in_visual_dim
    pipe.scheduler.set_timesteps(steps, device="cpu")
    latents = pipe.prepare_latents(image, 1, c, height, width, frames, dtype, "cpu", gen)
    lf = (frames - 1) // pipe.vae_scale_factor_temporal + 1
    rope = [
        torch.arange(lf),
        torch.arange(height // pipe.vae_scale_factor_spatial // 2),
        torch.arange(width // pipe.vae_scale_factor_spatial // 2),
    ]
    branches = {
        name: (
            kw[f"{prefix}prompt_embeds_qwen"].to(dtype),
            kw[f"{prefix}prompt_embeds_clip"].to(dtype),
            torch.arange(int(kw[f"{prefix}prompt_cu_seqlens"].diff().max())),
        )
        for name, prefix in (("pos", ""), ("neg", "negative_"))
    }
    scale = pipe._get_scale_factor(height, width)
    image_latent = latents[:, :1, :, :, :c].clone()
    filtered = downup(image_latent.permute(0, 4, 1, 2, 3), factor).permute(0, 2, 3, 4, 1)
    for i, t in enumerate(pipe.scheduler.timesteps):

        def d(first, branch):  # noqa: ANN001
            hidden = latents.clone()
            hidden[:, :1, :, :, :c] = first
            text, pooled, text_rope = branches[branch]
            return pipe.transformer(
                hidden_states=hidden,
                encoder_hidden_states=text,
                pooled_projections=pooled,
                timestep=t.unsqueeze(0).to(dtype),
                visual_rope_pos=rope,
                text_rope_pos=text_rope,
                scale_factor=scale,
                sparse_params=None,
                return_dict=True,
            ).sample

        eps = cfg_step(d, image_latent, filtered, window(i, steps, end), "pos", "neg", w)
        latents[:, 1:, :, :, :c] = pipe.scheduler.step(
            eps[:, 1:], t, latents[:, 1:, :, :, :c], return_dict=False
        )[0]
    return pipe.normalize_first_frame(latents[..., :c])


@torch.no_grad()
def cosmos2(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """Cosmos-Predict2 Video2World: clean conditioning latents on the leading frames (timestep
    t_cond there), predictions turned into x0 = c_skip x + c_out D with the conditioning frames
    restored, and the "original" CFG x0_c + w (x0_c - x0_u) = x0_u + (1 + w)(x0_c - x0_u)."""
    from diffusers.pipelines.cosmos.pipeline_cosmos2_video2world import retrieve_timesteps

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    w = kw["guidance_scale"]
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    timesteps, _ = retrieve_timesteps(
        pipe.scheduler, device="cpu", sigmas=torch.linspace(0, 1, steps, dtype=torch.float64)
    )
    pipe.scheduler.sigmas[-1] = pipe.scheduler.sigmas[-2]  # final_sigmas_type "sigma_min"
    video = pipe.video_processor.preprocess(image, height, width).unsqueeze(2).to(pipe.vae.dtype)
    latents, clean, indicator, _, mask, _ = pipe.prepare_latents(
        video,
        1,
        pipe.transformer.config.in_channels - 1,
        height,
        width,
        frames,
        True,
        torch.float32,
        "cpu",
        gen,
    )
    n = int(indicator.sum())
    mask = mask.to(dtype)
    filtered = torch.cat([downup(clean[:, :, :n].to(dtype), factor), clean[:, :, n:].to(dtype)], dim=2)
    padding = latents.new_zeros(1, 1, height, width, dtype=dtype)
    t_cond = torch.tensor(0.0001) / (torch.tensor(0.0001) + 1)
    for i, t in enumerate(timesteps):
        sigma = pipe.scheduler.sigmas[i]
        current = sigma / (sigma + 1)
        c_in = c_skip = 1 - current
        c_out = -current
        timestep = indicator * t_cond + (1 - indicator) * current.view(1, 1, 1, 1, 1).expand(
            1, -1, latents.size(2), -1, -1
        )

        def x0(condition, text):  # noqa: ANN001
            hidden = indicator * condition + (1 - indicator) * (latents * c_in)
            d = pipe.transformer(
                hidden_states=hidden.to(dtype),
                timestep=timestep.to(dtype),
                encoder_hidden_states=text,
                fps=16,
                condition_mask=mask,
                padding_mask=padding,
                return_dict=False,
            )[0]
            pred = (c_skip * latents + c_out * d.float()).to(dtype)  # the pipeline rounds D to float32 here
            return indicator * clean + (1 - indicator) * pred

        pred = cfg_step(x0, clean, filtered, window(i, steps, end), pos, neg, 1 + w)
        latents = pipe.scheduler.step((latents - pred) / sigma, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def hunyuan15(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """HunyuanVideo 1.5 I2V: [latents, image latent condition (frame 0), mask] on channels and a
    SigLIP image embedding; the guider (ClassifierFreeGuidance) runs the conditional then the
    unconditional batch on the steps in its [start, stop) range, combining u + w (c - u), or
    c + w (c - u) in its original formulation."""
    import math

    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import retrieve_timesteps

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    guider = pipe.guider.config
    w = guider.guidance_scale
    original = guider.use_original_formulation
    a = 1 + w if original else w  # as u + a (c - u)
    text = {
        branch: tuple(
            kw[f"{prefix}{name}"].to(dtype)
            for name in ("prompt_embeds", "prompt_embeds_mask", "prompt_embeds_2", "prompt_embeds_mask_2")
        )
        for branch, prefix in (("pos", ""), ("neg", "negative_"))
    }
    height, width = pipe.video_processor.calculate_default_height_width(
        image.size[1], image.size[0], pipe.transformer.config.target_size
    )
    image = pipe.video_processor.resize(image, height=height, width=width, resize_mode="crop")
    image_embeds = pipe.encode_image(image, 1, "cpu", dtype)
    timesteps, _ = retrieve_timesteps(
        pipe.scheduler, steps, "cpu", sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1]
    )
    latents = pipe.prepare_latents(
        1, pipe.vae.config.latent_channels, height, width, kw["num_frames"], dtype, "cpu", gen
    )
    condition, mask = pipe.prepare_cond_latents_and_mask(latents, image, 1, height, width, dtype, "cpu")
    filtered = downup(condition, factor)
    for i, t in enumerate(timesteps):
        timestep_r = None
        if pipe.transformer.config.use_meanflow:  # the end of the step's interval
            timestep_r = (
                (timesteps[i + 1] if i + 1 < len(timesteps) else torch.tensor(0.0)).expand(1).to(dtype)
            )

        def d(cond, branch):  # noqa: ANN001
            embeds, embeds_mask, embeds_2, embeds_mask_2 = text[branch]
            return pipe.transformer(
                hidden_states=torch.cat([latents, cond, mask], dim=1),
                image_embeds=image_embeds,
                timestep=t.expand(1).to(dtype),
                timestep_r=timestep_r,
                encoder_hidden_states=embeds,
                encoder_attention_mask=embeds_mask,
                encoder_hidden_states_2=embeds_2,
                encoder_attention_mask_2=embeds_mask_2,
                return_dict=False,
            )[0]

        on = window(i, steps, end)
        cfg = (
            guider.enabled
            and int(guider.start * steps) <= i < int(guider.stop * steps)
            and not math.isclose(w, 0.0 if original else 1.0)
        )
        if not cfg:  # one pass
            eps = d(filtered if on else condition, "pos")
        else:
            eps = cfg_step(d, condition, filtered, on, "pos", "neg", a)
        latents = pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def skyreels_df(pipe, kw, image, steps, factor, end, seed, ar_step=0, last_image=None):  # noqa: ANN001
    """SkyReels-V2 diffusion forcing I2V, one chunk: the clean image latent is latent frame 0 (and
    last_image's the last frame), every frame has its own timestep (a row of the pipeline's step
    matrix per iteration) and its own scheduler. ALG's window is over the iterations (rows)."""
    import copy

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    w = kw["guidance_scale"]
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    pipe.scheduler.set_timesteps(steps, device="cpu")
    timesteps = pipe.scheduler.timesteps

    def pixels(img):  # noqa: ANN001
        return pipe.video_processor.preprocess(img, height=height, width=width).to(torch.float32)

    last = None if last_image is None else pixels(last_image)
    latents, n, condition, prefix = pipe.prepare_latents(
        pixels(image), 1, pipe.vae.config.z_dim, height, width, frames, torch.float32, "cpu", gen, None, last
    )
    rows = condition.shape[0]
    latents[:, :, :prefix] = condition[: (rows + 1) // 2].to(dtype)
    base = n
    if last is not None:
        latents = torch.cat([latents, condition[rows // 2 :].to(dtype)], dim=2)
        n, base = n + prefix, base + prefix
    schedulers = []
    for _ in range(n):
        schedulers.append(copy.deepcopy(pipe.scheduler))
        schedulers[-1].set_timesteps(steps, device="cpu")
    step_matrix, _, update, intervals = pipe.generate_timestep_matrix(n, timesteps, base, ar_step, prefix, 1)
    image_frames = [0]
    if last is not None:
        step_matrix[:, -prefix:] = 0
        update[:, -prefix:] = False
        image_frames.append(n - 1)
    iterations = len(step_matrix)
    for i, t in enumerate(step_matrix):
        start, stop = intervals[i]
        x = latents[:, :, start:stop].to(dtype)
        image_latents = x[:, :, image_frames]  # clean: never stepped
        filtered = downup(image_latents, factor)

        def d(image_part, text):  # noqa: ANN001
            hidden = x.clone()
            hidden[:, :, image_frames] = image_part
            return pipe.transformer(
                hidden_states=hidden,
                timestep=t[None, start:stop],
                encoder_hidden_states=text,
                enable_diffusion_forcing=True,
                fps=[1],  # the pipeline's flag for fps != 16
                return_dict=False,
            )[0]

        on = window(i, iterations, end)
        if w <= 1:  # no CFG: one pass
            eps = d(filtered if on else image_latents, pos)
        else:
            eps = cfg_step(d, image_latents, filtered, on, pos, neg, w)
        for idx in range(start, stop):
            if update[i, idx]:
                latents[:, :, idx] = schedulers[idx].step(
                    eps[:, :, idx - start], t[idx], latents[:, :, idx], return_dict=False
                )[0]
    return latents


@torch.no_grad()
def motif(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """Motif-Video I2V: [latents, image latent condition (frame 0), mask] on channels; the guider
    (ClassifierFreeGuidance) runs the conditional then the unconditional batch on the steps in its
    [start, stop) range, combining u + w (c - u), or c + w (c - u) in its original formulation."""
    from diffusers.pipelines.motif_video.pipeline_motif_video_image2video import (
        calculate_shift,
        retrieve_timesteps,
    )

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    guider = pipe.guider.config
    w = guider.guidance_scale
    a = 1 + w if guider.use_original_formulation else w  # as u + a (c - u)
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    text = {
        "pos": (kw["prompt_embeds"].to(dtype), kw["prompt_attention_mask"].to(dtype)),
        "neg": (kw["negative_prompt_embeds"].to(dtype), kw["negative_prompt_attention_mask"].to(dtype)),
    }
    video = (
        pipe.video_processor.preprocess_video([image], height=height, width=width)
        .permute(0, 2, 1, 3, 4)
        .to(dtype)
    )
    latents = pipe.prepare_latents(1, pipe.vae.config.z_dim, height, width, frames, dtype, "cpu", gen)
    condition, mask, _ = pipe._prepare_first_frame_conditioning(video, latents, True, gen)
    filtered = downup(condition, factor)
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    seq = (latents.shape[2] // pt) * (latents.shape[3] // p) * (latents.shape[4] // p)
    cfg = pipe.scheduler.config
    mu = calculate_shift(
        seq,
        cfg.get("base_image_seq_len", 256),
        cfg.get("max_image_seq_len", 4096),
        cfg.get("base_shift", 0.5),
        cfg.get("max_shift", 1.15),
    )
    timesteps, _ = retrieve_timesteps(
        pipe.scheduler, steps, "cpu", None, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu
    )
    for i, t in enumerate(timesteps):

        def d(cond, branch):  # noqa: ANN001
            return pipe.transformer(
                hidden_states=torch.cat([latents, cond, mask], dim=1),
                timestep=t.expand(1),
                encoder_hidden_states=text[branch][0],
                encoder_attention_mask=text[branch][1],
                image_embeds=None,
                return_dict=False,
            )[0]

        on = window(i, steps, end)
        if not int(guider.start * steps) <= i < int(guider.stop * steps):  # CFG off: one pass
            eps = d(filtered if on else condition, "pos")
        else:
            eps = cfg_step(d, condition, filtered, on, "pos", "neg", a)
        latents = pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
    return latents


def _ltx2_texts(pipe, kw, dtype):  # noqa: ANN001
    """LTX-2's connector outputs (video text, audio text, mask) per prompt: "pos" and "neg"."""
    return {
        name: pipe.connectors(
            kw[f"{key}_embeds"].to(dtype), kw[f"{key}_attention_mask"].to(dtype), padding_side="left"
        )
        for name, key in (("pos", "prompt"), ("neg", "negative_prompt"))
    }


def _ltx2_audio(pipe, frames, fps, noise_scale, gen):  # noqa: ANN001
    """The initial audio latents (drawn after the video's, from the same generator), their frame
    count and mel bins."""
    per_second = pipe.audio_sampling_rate / pipe.audio_hop_length / pipe.audio_vae_temporal_compression_ratio
    af = round(frames / fps * per_second)
    mel = pipe.audio_vae.config.mel_bins
    audio = pipe.prepare_audio_latents(
        1, pipe.audio_vae.config.latent_channels, af, mel, noise_scale, torch.float32, "cpu", gen
    )
    return audio, af, mel


def _ltx2_mu(pipe, tokens, calculate_shift):  # noqa: ANN001
    cfg = pipe.scheduler.config
    return calculate_shift(
        tokens,
        cfg.get("base_image_seq_len", 1024),
        cfg.get("max_image_seq_len", 4096),
        cfg.get("base_shift", 0.95),
        cfg.get("max_shift", 2.05),
    )


def _ltx2_guided_x0(x0, u0, c, u, stg, mod, w, s, m, r):  # noqa: ANN001
    """LTX-2's x0-space guidance with ALG's terms: x0(U(I)) + w (x0(C) - x0(U(LP I))) + s (x0(C) -
    x0(STG)) + (m - 1)(x0(C) - x0(MOD)), rescaled (factor r) against the conditional term the
    pipeline holds, x0(U(I)) + x0(C) - x0(U(LP I))."""
    g = x0(u0) + w * (x0(c) - x0(u)) + s * (x0(c) - x0(stg)) + (m - 1) * (x0(c) - x0(mod))
    held = x0(u0) + x0(c) - x0(u)
    dims = list(range(1, g.ndim))
    return r * g * held.std(dim=dims, keepdim=True) / g.std(dim=dims, keepdim=True) + (1 - r) * g


def _ltx2_outputs(pipe, latents, audio, size, af, mel):  # noqa: ANN001
    """Packed video latents and audio latents -> denormalised video and audio latents."""
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    video = pipe._unpack_latents(latents, *size, p, pt)
    video = pipe._denormalize_latents(
        video, pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor
    )
    audio = pipe._denormalize_audio_latents(audio, pipe.audio_vae.latents_mean, pipe.audio_vae.latents_std)
    return video, pipe._unpack_audio_latents(
        audio, af, num_mel_bins=mel // pipe.audio_vae_mel_compression_ratio
    )


@torch.no_grad()
def ltx2(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """LTX-2 I2V: video and audio predictions. Per step the pipeline runs a CFG pair and, on the
    positive prompt, a spatio-temporal-guidance pass (perturbed blocks) and a modality-isolation
    pass, and combines them in x0 space, x0(v) = x - sigma v:

        g = x0(U) + w (x0(C) - x0(U)) + s (x0(C) - x0(STG)) + (m - 1) (x0(C) - x0(MOD))

    ALG: U on the image, C, U, STG and MOD on the low-passed image (the CFG term is the SPEC's;
    the STG and modality terms are differences of the low-passed image's predictions). Guidance
    rescale r: g' = r g std(x0(c)) / std(g) + (1 - r) g, where x0(c) is the conditional term the
    pipeline holds, x0(U(I)) + x0(C(LP I)) - x0(U(LP I)) under ALG."""
    import copy

    from diffusers.pipelines.ltx2.pipeline_ltx2_image2video import calculate_shift, retrieve_timesteps

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    height, width, frames, fps = kw["height"], kw["width"], kw["num_frames"], kw["frame_rate"]
    scales = [  # (w, s, m) for the video and the audio output
        (kw["guidance_scale"], kw["stg_scale"], kw["modality_scale"]),
        (kw["audio_guidance_scale"], kw["audio_stg_scale"], kw["audio_modality_scale"]),
    ]
    rescale = kw["guidance_rescale"]
    with_cfg = kw["guidance_scale"] > 1 or kw["audio_guidance_scale"] > 1
    texts = _ltx2_texts(pipe, kw, dtype)
    pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(dtype)
    latents, mask = pipe.prepare_latents(
        pixels, 1, pipe.transformer.config.in_channels, height, width, frames, 0.0, torch.float32, "cpu", gen
    )
    lf = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
    lh, lw = height // pipe.vae_spatial_compression_ratio, width // pipe.vae_spatial_compression_ratio
    audio, af, mel = _ltx2_audio(pipe, frames, fps, 0.0, gen)
    mu = _ltx2_mu(pipe, latents.shape[1], calculate_shift)
    sigmas = np.linspace(1.0, 1 / steps, steps)
    timesteps, _ = retrieve_timesteps(pipe.scheduler, steps, "cpu", None, sigmas=sigmas, mu=mu)
    audio_scheduler = copy.deepcopy(pipe.scheduler)
    video_coords = pipe.transformer.rope.prepare_video_coords(1, lf, lh, lw, "cpu", fps=fps)
    audio_coords = pipe.transformer.audio_rope.prepare_audio_coords(1, af, "cpu")
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size

    def with_first_frame(packed, first):  # noqa: ANN001
        video = pipe._unpack_latents(packed, lf, lh, lw, p, pt)
        return pipe._pack_latents(torch.cat([first, video[:, :, 1:]], dim=2), p, pt)

    for i, t in enumerate(timesteps):
        sigma = pipe.scheduler.sigmas[i].double()
        tt = t.expand(1)

        def d(hidden, text, stg_blocks=None, isolate=False):  # noqa: ANN001
            video_text, audio_text, text_mask = texts[text]
            out = pipe.transformer(
                hidden_states=hidden.to(dtype),
                audio_hidden_states=audio.to(dtype),
                encoder_hidden_states=video_text,
                audio_encoder_hidden_states=audio_text,
                timestep=tt.unsqueeze(-1) * (1 - mask),
                audio_timestep=tt,
                sigma=tt,
                encoder_attention_mask=text_mask,
                audio_encoder_attention_mask=text_mask,
                num_frames=lf,
                height=lh,
                width=lw,
                fps=fps,
                audio_num_frames=af,
                video_coords=video_coords,
                audio_coords=audio_coords,
                isolate_modalities=isolate,
                spatio_temporal_guidance_blocks=stg_blocks,
                perturbation_mask=None,
                use_cross_timestep=True,
                return_dict=False,
            )
            return [o.double() for o in out]

        x = latents
        if window(i, steps, end):
            first = pipe._unpack_latents(latents.to(dtype), lf, lh, lw, p, pt)[:, :, :1]
            x = with_first_frame(latents.to(dtype), downup(first, factor))
        c = d(x, "pos")
        if with_cfg:
            u0 = d(latents, "neg")
            u = d(x, "neg") if x is not latents else u0
        else:  # no unconditional pass; the CFG term drops out (ALG without CFG: C(LP I))
            u0 = u = c
        stg = d(x, "pos", stg_blocks=kw["spatio_temporal_guidance_blocks"])
        mod = d(x, "pos", isolate=True)
        velocities = []
        for k, (sample, (w, s, m)) in enumerate(zip((latents, audio), scales)):
            sample = sample.double()

            def x0(pred):  # noqa: ANN001
                return sample - pred[k] * sigma  # noqa: B023

            g = _ltx2_guided_x0(x0, u0, c, u, stg, mod, w, s, m, rescale)
            velocities.append(((sample - g) / sigma).float())
        video = pipe._unpack_latents(latents, lf, lh, lw, p, pt)
        v = pipe._unpack_latents(velocities[0], lf, lh, lw, p, pt)
        pred = pipe.scheduler.step(v[:, :, 1:], t, video[:, :, 1:], return_dict=False)[0]
        latents = pipe._pack_latents(torch.cat([video[:, :, :1], pred], dim=2), p, pt)
        audio = audio_scheduler.step(velocities[1], t, audio, return_dict=False)[0]
    return _ltx2_outputs(pipe, latents, audio, (lf, lh, lw), af, mel)


@torch.no_grad()
def cosmos25(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """Cosmos-Predict2.5, the image passed as a one-frame video: the video is the image repeated
    to num_frames; clean conditioning latents on the leading latent frames (condition mask), at
    timestep ``conditional_frame_timestep`` there and sigma elsewhere; velocity predictions whose
    conditioning frames get the ground-truth velocity (x_0 - clean) * mask; the "original" CFG
    c + w (c - u) = u + (1 + w)(c - u)."""
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    w = kw["guidance_scale"]
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    video = pipe.video_processor.preprocess_video([image], height, width)
    video = video.repeat(1, 1, frames, 1, 1).to(pipe.vae.dtype)
    latents, clean, mask, indicator = pipe.prepare_latents(
        video,
        1,
        pipe.transformer.config.in_channels - 1,
        height,
        width,
        1,
        frames,
        True,
        torch.float32,
        "cpu",
        gen,
    )
    pipe.scheduler.set_timesteps(steps, device="cpu")
    mask = mask.to(dtype)
    gt_velocity = (latents - clean) * mask
    n = int(indicator.sum())
    filtered = torch.cat([downup(clean[:, :, :n], factor), clean[:, :, n:]], dim=2)
    padding = latents.new_zeros(1, 1, height, width, dtype=dtype)
    for i, t in enumerate(pipe.scheduler.timesteps):
        sigma = pipe.scheduler.sigmas[i].expand(1).to(torch.float32)
        timestep = indicator * 0.0001 + (1 - indicator) * sigma.view(1, 1, 1, 1, 1)

        def v(condition, text):  # noqa: ANN001
            hidden = (mask * condition + (1 - mask) * latents).to(dtype)
            d = pipe.transformer(
                hidden_states=hidden,
                condition_mask=mask,
                timestep=timestep,
                encoder_hidden_states=text,
                padding_mask=padding,
                return_dict=False,
            )[0]
            return gt_velocity + d * (1 - mask)

        pred = cfg_step(v, clean, filtered, window(i, steps, end), pos, neg, 1 + w)
        latents = pipe.scheduler.step(pred, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def framepack(  # noqa: ANN001
    pipe,
    kw,
    image,
    steps,
    factor,
    end,
    seed,
    true_cfg=None,
    sampling_type="inverted_anti_drifting",
    last_image=None,
    pixel=False,
):
    """HunyuanVideo Framepack: sections, each a full loop of ``steps`` over its own window; the
    image latent is frame 0 of the clean context frames (``latents_clean``). Returns the
    pipeline's latent output: the history after each section. ``last_image`` (inverted
    anti-drifting): the end keyframe, a clean frame of the first section that stays sharp.
    ``pixel``: the filtered condition is the pipeline's encode of the low-passed image, with the
    generator state of the image's own encode."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import calculate_shift

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    height, width, frames, size = kw["height"], kw["width"], kw["num_frames"], kw["latent_window_size"]
    pixels = pipe.video_processor.preprocess(image, height, width)
    image_embeds = pipe.encode_image(pixels, device="cpu").to(dtype)
    window_frames = (size - 1) * pipe.vae_scale_factor_temporal + 1
    sections = max(1, (frames + window_frames - 1) // window_frames)
    if last_image is not None:
        last_pixels = pipe.video_processor.preprocess(last_image, height, width)
        # diffusers 0.42 averages the two SigLIP embeddings into last_image_embeds and never uses it
    state = gen.get_state()
    image_latents = pipe.prepare_image_latents(pixels, dtype=torch.float32, device="cpu", generator=gen)
    if last_image is not None:
        last_latents = pipe.prepare_image_latents(
            last_pixels, dtype=torch.float32, device="cpu", generator=gen
        )
    if pixel:
        replay = torch.Generator().set_state(state)
        filtered = pipe.prepare_image_latents(downup(pixels, factor), torch.float32, "cpu", replay).to(dtype)
    else:
        filtered = downup(image_latents.to(dtype), factor)  # the denoiser sees the clean frames in its dtype
    z, h, w_ = pipe.transformer.config.in_channels, height // 8, width // 8
    inverted = sampling_type == "inverted_anti_drifting"
    sizes = [1, 2, 16] if inverted else [16, 2, 1]
    history = torch.zeros(1, z, sum(sizes), h, w_)
    total = 0
    if not inverted:
        history, total = torch.cat([history, image_latents], dim=2), 1
    text = (
        kw["prompt_embeds"].to(dtype),
        kw["prompt_attention_mask"].to(dtype),
        kw["pooled_prompt_embeds"].to(dtype),
    )
    guidance = torch.tensor([kw["guidance_scale"]], dtype=dtype) * 1000.0
    outputs = []
    for k in range(sections):
        if inverted:
            paddings = (
                list(reversed(range(sections))) if sections <= 4 else [3] + [2] * (sections - 3) + [1, 0]
            )
            pad = paddings[k] * size
            idx = torch.arange(0, 1 + pad + size + sum(sizes))
            prefix, _, idx_latents, idx_1x, idx_2x, idx_4x = idx.split([1, pad, size, *sizes])
            h1, h2, h4 = history[:, :, : sum(sizes)].split(sizes, dim=2)
            if last_image is not None and k == 0:
                h1 = last_latents
        else:
            idx = torch.arange(0, 1 + sum(sizes) + size)
            prefix, idx_4x, idx_2x, idx_1x, idx_latents = idx.split([1, *sizes, size])
            h4, h2, h1 = history[:, :, -sum(sizes) :].split(sizes, dim=2)
        idx_clean = torch.cat([prefix, idx_1x])
        image_frame = image_latents.to(dtype)
        latents = pipe.prepare_latents(1, z, height, width, window_frames, torch.float32, "cpu", gen)
        mu = calculate_shift(
            latents.shape[2] * h * w_ / pipe.transformer.config.patch_size**2, 256, 4096, 0.5, 1.15
        )
        pipe.scheduler.set_timesteps(
            sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1], device="cpu", mu=min(mu, np.log(7.0))
        )
        for i, t in enumerate(pipe.scheduler.timesteps):

            def d(first, embeds):  # noqa: ANN001
                return pipe.transformer(
                    hidden_states=latents.to(dtype),
                    timestep=t.expand(1),
                    encoder_hidden_states=embeds[0],
                    encoder_attention_mask=embeds[1],
                    pooled_projections=embeds[2],
                    image_embeds=image_embeds,
                    indices_latents=idx_latents,
                    guidance=guidance,
                    latents_clean=torch.cat([first, h1.to(dtype)], dim=2),
                    indices_latents_clean=idx_clean,
                    latents_history_2x=h2.to(dtype),
                    indices_latents_history_2x=idx_2x,
                    latents_history_4x=h4.to(dtype),
                    indices_latents_history_4x=idx_4x,
                    return_dict=False,
                )[0]

            on = window(i, steps, end)
            if true_cfg is None:  # embedded guidance only: ALG is one pass
                eps = d(filtered if on else image_frame, text)
            else:
                w, negative = true_cfg
                eps = cfg_step(d, image_frame, filtered, on, text, negative, w)
            latents = pipe.scheduler.step(eps.float(), t, latents, return_dict=False)[0]
        if inverted:
            if k == sections - 1:
                latents = torch.cat([image_latents, latents], dim=2)
            total += latents.shape[2]
            history = torch.cat([latents, history], dim=2)
            outputs.append(history[:, :, :total])
        else:
            total += latents.shape[2]
            history = torch.cat([history, latents], dim=2)
            outputs.append(history[:, :, -total:])
    return outputs


@torch.no_grad()
def ltx_condition(  # noqa: ANN001
    pipe, kw, image, steps, factor, end, seed, noise_scale=0.15, rescale=0.0, pixel=False
):
    """LTXConditionPipeline with one image condition at frame 0 (strength 1). The frame-0 tokens
    of the packed latents are hard-conditioning tokens (mask 1, timestep 0, never stepped); before
    every step they are re-noised from the clean initial latents, x = init + a * n * (t / 1000)^2
    with a = ``noise_scale`` and n fresh noise from the generator. ALG low-passes the clean image
    latent only: the conditioning tokens become LP(init) + a * n * (t / 1000)^2. Guidance rescale r
    rescales g = U(I) + w (C(LP I) - U(LP I)) against the conditional term the pipeline holds,
    U(I) + C(LP I) - U(LP I): g' = r g std(held) / std(g) + (1 - r) g. ``pixel``: LP(init) is the
    pipeline's encode of the low-passed preprocessed image, with the generator state of its own."""
    from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule, retrieve_timesteps
    from diffusers.utils.torch_utils import randn_tensor

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    pos_mask, neg_mask = kw["prompt_attention_mask"].to(dtype), kw["negative_prompt_attention_mask"].to(dtype)
    w = kw["guidance_scale"]
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    pixels = pipe.video_processor.preprocess(image, height, width).unsqueeze(2).to(pipe.vae.dtype)
    timesteps, _ = retrieve_timesteps(pipe.scheduler, steps, "cpu", linear_quadratic_schedule(steps) * 1000)

    def prepare(condition, generator):  # noqa: ANN001
        return pipe.prepare_latents(
            [condition],
            [1.0],
            [0],
            batch_size=1,
            num_channels_latents=pipe.transformer.config.in_channels,
            height=height,
            width=width,
            num_frames=frames,
            generator=generator,
            device="cpu",
            dtype=torch.float32,
        )

    state = gen.get_state()
    latents, mask, coords, _ = prepare(pixels, gen)
    coords = coords.float()
    coords[:, 0] = coords[:, 0] * (1.0 / kw.get("frame_rate", 25))
    init = latents.clone()
    lf = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
    lh, lw = height // pipe.vae_spatial_compression_ratio, width // pipe.vae_spatial_compression_ratio
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    clean = pipe._unpack_latents(init, lf, lh, lw, p, pt)[:, :, :1].to(dtype)
    if pixel:
        replayed = prepare(downup(pixels, factor), torch.Generator().set_state(state))[0]
        lowpassed = pipe._unpack_latents(replayed, lf, lh, lw, p, pt)[:, :, :1].to(dtype)
    else:
        lowpassed = downup(clean, factor)
    hard = (mask > 1.0 - 1e-6).unsqueeze(-1)

    for i, t in enumerate(timesteps):
        if noise_scale > 0:
            noise = randn_tensor(latents.shape, generator=gen, dtype=latents.dtype)
            latents = torch.where(hard, init + noise_scale * noise * (t / 1000.0) ** 2, latents)
        x = latents.to(dtype)
        video = pipe._unpack_latents(x, lf, lh, lw, p, pt)
        x_f = pipe._pack_latents(
            torch.cat([video[:, :, :1] - clean + lowpassed, video[:, :, 1:]], dim=2), p, pt
        )
        timestep = torch.min(t.expand(1).unsqueeze(-1).float(), (1 - mask) * 1000.0)

        def d(hidden, text, text_mask):  # noqa: ANN001, B023
            return pipe.transformer(
                hidden_states=hidden,
                encoder_hidden_states=text,
                timestep=timestep,  # noqa: B023
                encoder_attention_mask=text_mask,
                video_coords=coords,
                return_dict=False,
            )[0]

        on = window(i, steps, end)
        if w > 1:
            u0 = d(x, neg, neg_mask)
            c, u = (d(x_f, pos, pos_mask), d(x_f, neg, neg_mask)) if on else (d(x, pos, pos_mask), u0)
            eps = u0 + w * (c - u)
            if rescale > 0:
                held = u0 + c - u
                dims = list(range(1, eps.ndim))
                eps = (
                    rescale * eps * held.std(dim=dims, keepdim=True) / eps.std(dim=dims, keepdim=True)
                    + (1 - rescale) * eps
                )
        else:  # no CFG: eps = C(LP I) in the window
            eps = d(x_f if on else x, pos, pos_mask)
        denoised = pipe.scheduler.step(-eps, t, latents, per_token_timesteps=timestep, return_dict=False)[0]
        latents = torch.where((t / 1000 - 1e-6 < (1.0 - mask)).unsqueeze(-1), denoised, latents)
    return pipe._unpack_latents(latents, lf, lh, lw, p, pt)


@torch.no_grad()
def ltx2_condition(pipe, kw, image, steps, factor, end, seed):  # noqa: ANN001
    """LTX2ConditionPipeline with one image condition at latent frame 0 (strength 1, crf 0). As
    LTX-2 I2V (video and audio, a CFG pair plus an STG pass and a modality-isolation pass on the
    positive prompt, all combined in x0 space, x0(v) = x - sigma v), but every token is stepped:
    the x0 guess is blended with the clean latents by the conditioning mask (1 on frame 0, 0
    elsewhere), d = (1 - mask) g + mask clean, and the velocity (x - d) / sigma goes to the
    scheduler, so frame 0 stays the clean image latent. ALG: U on the image, C, U, STG and MOD on
    the latents with frame 0 low-passed. Guidance rescale per modality (r_video, r_audio) against
    the conditional term the pipeline holds, x0(U(I)) + x0(C(LP I)) - x0(U(LP I)). Audio: the
    pipeline's ``audio_scheduler`` if it has one, else a copy of the video scheduler, each with
    its own timesteps (the audio timestep goes to the transformer; both are stepped at the video
    timestep, as the pipeline does)."""
    import copy

    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import (
        LTX2VideoCondition,
        calculate_shift,
        retrieve_timesteps,
    )

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    height, width, frames, fps = kw["height"], kw["width"], kw["num_frames"], kw["frame_rate"]
    scales = [  # (w, s, m, r) for the video and the audio output
        (kw["guidance_scale"], kw["stg_scale"], kw["modality_scale"], kw["guidance_rescale"]),
        (
            kw["audio_guidance_scale"],
            kw["audio_stg_scale"],
            kw["audio_modality_scale"],
            kw["audio_guidance_rescale"],
        ),
    ]
    with_cfg = kw["guidance_scale"] > 1 or kw["audio_guidance_scale"] > 1
    with_stg = kw["stg_scale"] > 0 or kw["audio_stg_scale"] > 0
    with_mod = kw["modality_scale"] > 1 or kw["audio_modality_scale"] > 1
    texts = _ltx2_texts(pipe, kw, dtype)
    latents, mask, clean, keyframes = pipe.prepare_latents(
        [LTX2VideoCondition(frames=image, index=0, strength=1.0, crf=0)],
        1,
        pipe.transformer.config.in_channels,
        height,
        width,
        frames,
        fps,
        1.0,
        torch.float32,
        "cpu",
        gen,
    )
    assert keyframes is None
    lf = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
    lh, lw = height // pipe.vae_spatial_compression_ratio, width // pipe.vae_spatial_compression_ratio
    audio, af, mel = _ltx2_audio(pipe, frames, fps, 1.0, gen)
    mu = _ltx2_mu(pipe, latents.shape[1], calculate_shift)
    sigmas = np.linspace(1.0, 1 / steps, steps)
    audio_scheduler = (
        pipe.audio_scheduler if pipe.audio_scheduler is not None else copy.deepcopy(pipe.scheduler)
    )
    audio_timesteps, _ = retrieve_timesteps(audio_scheduler, steps, "cpu", None, sigmas=sigmas, mu=mu)
    timesteps, _ = retrieve_timesteps(pipe.scheduler, steps, "cpu", None, sigmas=sigmas, mu=mu)
    video_coords = pipe.transformer.rope.prepare_video_coords(1, lf, lh, lw, "cpu", fps=fps)
    audio_coords = pipe.transformer.audio_rope.prepare_audio_coords(1, af, "cpu")
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    first = pipe._unpack_latents(clean.to(dtype), lf, lh, lw, p, pt)[:, :, :1]
    lowpassed = downup(first, factor)

    for i, t in enumerate(timesteps):
        sigmas_now = (pipe.scheduler.sigmas[i].double(), audio_scheduler.sigmas[i].double())
        tt, ta = t.expand(1), audio_timesteps[i].expand(1)

        def d(hidden, text, stg_blocks=None, isolate=False):  # noqa: ANN001
            video_text, audio_text, text_mask = texts[text]
            out = pipe.transformer(
                hidden_states=hidden,
                audio_hidden_states=audio.to(dtype),  # noqa: B023
                encoder_hidden_states=video_text,
                audio_encoder_hidden_states=audio_text,
                timestep=tt.unsqueeze(-1) * (1 - mask.squeeze(-1)),  # noqa: B023
                audio_timestep=ta,  # noqa: B023
                sigma=tt,  # noqa: B023
                audio_sigma=ta,  # noqa: B023
                encoder_attention_mask=text_mask,
                audio_encoder_attention_mask=text_mask,
                num_frames=lf,
                height=lh,
                width=lw,
                fps=fps,
                audio_num_frames=af,
                video_coords=video_coords,
                audio_coords=audio_coords,
                isolate_modalities=isolate,
                spatio_temporal_guidance_blocks=stg_blocks,
                perturbation_mask=None,
                use_cross_timestep=True,
                return_dict=False,
            )
            return [o.double() for o in out]

        x = latents.to(dtype)
        video = pipe._unpack_latents(x, lf, lh, lw, p, pt)
        assert torch.equal(video[:, :, :1], first), "frame 0 must stay the clean image latent"
        x_f = pipe._pack_latents(torch.cat([lowpassed, video[:, :, 1:]], dim=2), p, pt)
        if not window(i, steps, end):
            x_f = x
        c = d(x_f, "pos")
        if with_cfg:
            u0 = d(x, "neg")
            u = d(x_f, "neg") if x_f is not x else u0
        else:  # no unconditional pass; the CFG term drops out (ALG without CFG: C(LP I))
            u0 = u = c
        stg = d(x_f, "pos", stg_blocks=kw["spatio_temporal_guidance_blocks"]) if with_stg else c
        mod = d(x_f, "pos", isolate=True) if with_mod else c
        velocities = []
        for k, (sample, sigma, (w, s, m, r)) in enumerate(zip((latents, audio), sigmas_now, scales)):
            sample = sample.double()

            def x0(pred):  # noqa: ANN001
                return sample - pred[k] * sigma  # noqa: B023

            g = _ltx2_guided_x0(x0, u0, c, u, stg, mod, w, s, m, r)
            if k == 0:
                g = g * (1 - mask.double()) + clean.double() * mask.double()
            velocities.append(((sample - g) / sigma).float())
        latents = pipe.scheduler.step(velocities[0], t, latents, return_dict=False)[0]
        audio = audio_scheduler.step(velocities[1], t, audio, return_dict=False)[0]
    return _ltx2_outputs(pipe, latents, audio, (lf, lh, lw), af, mel)


@torch.no_grad()
def wan_vace(pipe, kw, image, steps, factor, end, seed, pixel=False):  # noqa: ANN001
    """WanVACEPipeline as I2V: the image on frame 0 of the conditioning video, a mask keeping frame
    0 and generating the rest (grey frames), as in diffusers' VACE example. The image condition is
    the inactive latent, channels [0, z) of control_hidden_states; the reactive latent and the mask
    channels stay. Pixel space: frame 0 of the preprocessed video low-passed, then encoded."""
    from PIL import Image

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    w1 = kw["guidance_scale"]
    w2 = kw.get("guidance_scale_2", w1)
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    video = [image.resize((width, height))] + [Image.new("RGB", (width, height), (128, 128, 128))] * (
        frames - 1
    )
    mask = [Image.new("L", (width, height), 0)] + [Image.new("L", (width, height), 255)] * (frames - 1)
    pipe.scheduler.set_timesteps(steps)
    timesteps = pipe.scheduler.timesteps
    video, mask, refs = pipe.preprocess_conditions(
        video, mask, None, 1, height, width, frames, torch.float32, "cpu"
    )
    z = pipe.vae.config.z_dim
    state = gen.get_state()
    latents_in = pipe.prepare_video_latents(video, mask, refs, gen, "cpu")
    masks = pipe.prepare_masks(mask, refs, gen)
    full = torch.cat([latents_in, masks], dim=1).to(dtype)
    if pixel:
        lowpassed = video.clone()
        lowpassed[:, :, :1] = downup(video[:, :, :1], factor)  # the pipeline preprocesses in float32
        gen.set_state(state)  # the posterior is taken at its mode: the generator is not drawn from
        inactive = pipe.prepare_video_latents(lowpassed, mask, refs, gen, "cpu")[:, :z].to(dtype)
    else:
        inactive = downup(full[:, :z], factor)
    filtered = torch.cat([inactive, full[:, z:]], dim=1)
    latents = pipe.prepare_latents(1, 16, height, width, frames, torch.float32, "cpu", gen)
    layers = len(pipe.transformer.config.vace_layers)
    ratio = pipe.config.get("boundary_ratio")
    boundary = None if ratio is None else ratio * pipe.scheduler.config.num_train_timesteps
    for i, t in enumerate(timesteps):
        model, w = (pipe.transformer, w1) if boundary is None or t >= boundary else (pipe.transformer_2, w2)

        def d(control, text):  # noqa: ANN001
            return model(
                hidden_states=latents.to(dtype),
                timestep=t.expand(1),
                encoder_hidden_states=text,
                control_hidden_states=control,
                control_hidden_states_scale=torch.ones(layers, dtype=dtype),
                return_dict=False,
            )[0]

        eps = cfg_step(d, full, filtered, window(i, steps, end), pos, neg, w)
        latents = pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def wan_animate(pipe, kw, image, steps, factor, end, seed, pixel=False):  # noqa: ANN001
    """WanAnimatePipeline: segments of ``segment_frame_length`` frames, each a full loop of
    ``steps``. hidden_states = [latents z, mask 4, conditioning z]; in the conditioning channels
    latent frame 0 is the reference image latent (low-passed, the only thing ALG filters) and
    frames 1: the previous segment's frames (or zeros / the background video). The unconditional
    call gets the negative prompt and the face video blanked to -1, with either image. Pixel
    space: the preprocessed reference image low-passed, then encoded."""
    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    pos, neg = kw["prompt_embeds"].to(dtype), kw["negative_prompt_embeds"].to(dtype)
    w = kw["guidance_scale"]
    height, width = kw["height"], kw["width"]
    seg, prev = kw["segment_frame_length"], kw["prev_segment_conditioning_frames"]
    mode = kw.get("mode", "animate")
    z = pipe.vae.config.z_dim
    frames = len(kw["pose_video"])
    effective = seg - prev
    target = frames + (-(frames - prev)) % effective
    pixels = pipe.vae_image_processor.preprocess(image, height=height, width=width, resize_mode="fill")
    pixels = pixels.to(torch.float32)
    image_embeds = pipe.encode_image(image, "cpu").to(dtype)
    pose = pipe.video_processor.preprocess_video(
        pipe.pad_video_frames(kw["pose_video"], target), height=height, width=width
    ).to(torch.float32)
    size = pipe.transformer.config.motion_encoder_size
    face = pipe.video_processor.preprocess_video(
        pipe.pad_video_frames(kw["face_video"], target), height=size, width=size
    ).to(torch.float32)
    if mode == "replace":
        background = pipe.video_processor.preprocess_video(
            pipe.pad_video_frames(kw["background_video"], target), height=height, width=width
        ).to(torch.float32)
        masks = pipe.video_processor_for_mask.preprocess_video(
            pipe.pad_video_frames(kw["mask_video"], target), height=height, width=width
        ).to(torch.float32)
    pipe.scheduler.set_timesteps(steps)
    reference = pipe.prepare_reference_image_latents(pixels, 1, generator=gen, device="cpu")
    if pixel:
        lowpassed = pipe.prepare_reference_image_latents(
            downup(pixels, factor), 1, generator=gen, device="cpu"
        )
        ref_lp = lowpassed[:, -z:]
    else:
        ref_lp = downup(reference[:, -z:], factor)
    start, out = 0, None
    for _ in range(target // effective):
        pipe.scheduler.set_timesteps(steps)
        timesteps = pipe.scheduler.timesteps
        latents = pipe.prepare_latents(1, z, height, width, seg, torch.float32, "cpu", gen)
        face_seg = face[:, :, start : start + seg].to(dtype)
        blank = face_seg * 0 - 1
        pose_latents = pipe.prepare_pose_latents(
            pose[:, :, start : start + seg], 1, generator=gen, device="cpu"
        )
        cond_video = None if start == 0 else out[:, :, -prev:]
        extra = {}
        if mode == "replace":
            extra = {
                "background_video": background[:, :, start : start + seg],
                "mask_video": masks[:, :, start : start + seg],
            }
        prev_latents = pipe.prepare_prev_segment_cond_latents(
            cond_video,
            **extra,
            batch_size=1,
            segment_frame_length=seg,
            start_frame=start,
            height=height,
            width=width,
            prev_segment_cond_frames=prev,
            task=mode,
            generator=gen,
            device="cpu",
        )
        full = torch.cat([reference, prev_latents], dim=2).to(dtype)  # [mask 4, z] over 1 + T frames
        filtered = full.clone()
        filtered[:, -z:, :1] = ref_lp.to(dtype)
        for i, t in enumerate(timesteps):

            def d(cond, text):  # noqa: ANN001
                return pipe.transformer(
                    hidden_states=torch.cat([latents.to(dtype), cond], dim=1),
                    timestep=t.expand(1),
                    encoder_hidden_states=text,
                    encoder_hidden_states_image=image_embeds,
                    pose_hidden_states=pose_latents.to(dtype),
                    face_pixel_values=face_seg if text is pos else blank,
                    return_dict=False,
                )[0]

            on = window(i, steps, end)
            if w > 1:
                eps = cfg_step(d, full, filtered, on, pos, neg, w)
            else:  # no CFG: one conditional pass, eps = C(LP I) on filtered steps
                eps = d(filtered if on else full, pos)
            latents = pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
        latents = latents.to(pipe.vae.dtype)
        mean = torch.tensor(pipe.vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.dtype)
        recip = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.dtype)
        latents = latents / recip + mean  # the pipeline returns these (output_type="latent")
        out = pipe.vae.decode(latents[:, :, 1:], return_dict=False)[0]
        start += effective
    return latents


@torch.no_grad()
def kandinsky6(pipe, kw, image, steps, factor, end, seed, pixel=False):  # noqa: ANN001
    """Kandinsky 6 image-to-video-and-audio: channels-last [B, F + 1, h, w, C + C + 1] video
    latents whose appended tail frame holds the clean image latent (rotary position 0, token type
    1, mask 1; the middle C channels are zeros), reset before every step; audio latents
    [B, L, C_a] denoised by the same transformer call, stepped by a deep copy of the scheduler.
    Both outputs get the SPEC's CFG term: U(I) + w (C(LP I) - U(LP I)) on filtered steps (no CFG:
    C(LP I)). Pixel space: LP of the preprocessed image, encoded with the generator state the
    image's own encode drew from."""
    import copy

    dtype = pipe.transformer.dtype
    gen = torch.Generator().manual_seed(seed)
    height, width, frames = kw["height"], kw["width"], kw["num_frames"]
    w = kw["guidance_scale"]
    with_cfg = w > 1
    c = pipe.transformer.config.in_visual_dim
    pixels = pipe.video_processor.preprocess(image, height=height, width=width, resize_mode="crop")
    encode_state = gen.get_state()

    def encode(px, generator):  # noqa: ANN001
        z = pipe.vae.encode(px.to(pipe.vae.dtype).unsqueeze(2)).latent_dist.sample(generator)
        return (z * pipe.vae.config.scaling_factor)[:, :, 0].permute(0, 2, 3, 1).to(dtype)

    first = encode(pixels, gen)
    pipe.scheduler.set_timesteps(steps, device="cpu")
    timesteps = pipe.scheduler.timesteps
    audio_scheduler = copy.deepcopy(pipe.scheduler)
    lf = (frames - 1) // pipe.vae_scale_factor_temporal + 1
    lh, lw = height // pipe.vae_scale_factor_spatial, width // pipe.vae_scale_factor_spatial
    latents = torch.randn((1, lf, lh, lw, c), generator=gen, dtype=dtype)
    length = int(
        np.ceil(
            ((lf - 1) * pipe.vae_scale_factor_temporal + 1)
            / kw["frame_rate"]
            * pipe.audio_sample_rate
            / pipe.audio_latent_hop_length
        )
    )
    audio = torch.randn((1, length, pipe.transformer.config.in_audio_dim), generator=gen, dtype=dtype)
    if pixel:
        lowpassed = downup((pixels.to(dtype) + 1) / 2, factor).clamp(0, 1) * 2 - 1  # in the call's dtype
        filtered = encode(lowpassed, torch.Generator().set_state(encode_state))
    else:
        filtered = downup(first.permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1)
    latents = torch.cat([latents, first[:, None]], dim=1)
    types = torch.tensor([[0] * lf + [1]])
    rope = (
        torch.cat([torch.arange(lf), torch.zeros(1, dtype=torch.long)]),
        torch.arange(lh // 2),
        torch.arange(lw // 2),
    )
    texts = {
        "pos": (kw["prompt_embeds"].to(dtype), kw["pooled_prompt_embeds"].to(dtype)),
        "neg": (kw["negative_prompt_embeds"].to(dtype), kw["negative_pooled_prompt_embeds"].to(dtype)),
    }
    for i, t in enumerate(timesteps):
        latents[:, -1] = first
        on = window(i, steps, end)

        def d(tail, text):  # noqa: ANN001
            video = latents.clone()
            video[:, -1] = tail
            mask = torch.zeros((*video.shape[:-1], 1), dtype=dtype)
            mask[:, -1] = 1
            embeds, pooled = texts[text]
            return pipe.transformer(
                hidden_states=torch.cat([video, torch.zeros_like(video), mask], dim=-1),
                audio_hidden_states=audio,
                encoder_hidden_states=embeds,
                pooled_projections=pooled,
                timestep=t.expand(1),
                visual_rope_pos=rope,
                encoder_attention_mask=None,
                visual_token_type_ids=types,
                return_dict=True,
            )

        if with_cfg:
            v = cfg_step(lambda x, s: d(x, s).sample, first, filtered, on, "pos", "neg", w)
            a = cfg_step(lambda x, s: d(x, s).audio_sample, first, filtered, on, "pos", "neg", w)
        else:
            out = d(filtered if on else first, "pos")
            v, a = out.sample, out.audio_sample
        latents = pipe.scheduler.step(v, t, latents, return_dict=False)[0]
        audio = audio_scheduler.step(a, t, audio, return_dict=False)[0]
    return latents[:, :-1].permute(0, 4, 1, 2, 3), audio.permute(0, 2, 1)
