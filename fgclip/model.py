"""FGCLIPModel: CLIP towers from transformers + FG-CLIP's long text, region and hard-negative losses.

Faithful to FG-CLIP v1 (360CVGroup/FG-CLIP `fgclip/model/clip_strc/fgclip.py`), plus the team's
`roi_projection` and region memory bank. Parameter names follow transformers' CLIPModel, so an
HF CLIP checkpoint loads straight in (`from_clip`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, CLIPTextModel, CLIPVisionModel
from transformers import initialization as hf_init
from transformers.modeling_outputs import ModelOutput
from transformers.models.clip.modeling_clip import CLIPPreTrainedModel, CLIPTextEmbeddings

from fgclip import faults
from fgclip.arguments import ArgumentError, long_positions_problem
from fgclip.config import FGCLIPConfig
from fgclip.losses import GlobalContrastiveLoss, HardNegativeLoss, RegionContrastiveLoss
from fgclip.memory_bank import RegionMemoryBank
from fgclip.roi_align import roi_align

SCALE_NAMES = ("logit_scale", "logit_scale_finegrained", "logit_scale_hardneg")


def stretch_positions(table: torch.Tensor, new_rows: int = 248, keep: int = 20) -> torch.Tensor:
    """[77, D] -> [new_rows, D]: first `keep` rows copied, the rest linearly interpolated 4x
    (the last row extrapolated), as Long-CLIP / FG-CLIP stretch the text position table."""
    rows = table.shape[0]
    if why := long_positions_problem(new_rows, rows, keep):
        raise ArgumentError("max_seq_length", new_rows, why)
    base = table[keep:]  # [rows-keep, D]
    nxt = torch.cat([table[keep + 1 :], (2 * table[-1] - table[-2])[None]])  # next row, extrapolated
    out = torch.empty(new_rows, table.shape[1], dtype=table.dtype, device=table.device)
    out[:keep] = table[:keep]
    for j in range(4):
        out[keep + j :: 4] = base + (j / 4) * (nxt - base)
    return out


class LongShortTextEmbeddings(CLIPTextEmbeddings):
    """CLIP text embeddings with a second, longer position table for long captions.

    Short captions (<= 77 tokens) use the original table; long captions (`use_long`, or any
    sequence longer than 77) the stretched table.
    """

    def __init__(self, config, long_positions: int) -> None:
        super().__init__(config)
        self.long_position_embedding = nn.Embedding(long_positions, config.hidden_size)

    use_long: bool = False  # set by FGCLIPModel.encode_text for the duration of one long encode

    def forward(self, input_ids=None, position_ids=None, inputs_embeds=None) -> torch.Tensor:
        seq = input_ids.shape[-1] if input_ids is not None else inputs_embeds.shape[-2]
        if not self.use_long and seq <= self.position_embedding.num_embeddings:
            return super().forward(input_ids, position_ids, inputs_embeds)
        if seq > self.long_position_embedding.num_embeddings:
            raise ValueError(f"text of {seq} tokens exceeds {self.long_position_embedding.num_embeddings} positions")
        if inputs_embeds is None:
            inputs_embeds = self.token_embedding(input_ids)
        if position_ids is None:
            # Built here, not kept as a non-persistent buffer: from_pretrained (meta init) leaves
            # such a buffer uninitialised, since CLIP's own _init_weights does not know it.
            position_ids = torch.arange(seq, device=inputs_embeds.device)[None]
        return inputs_embeds + self.long_position_embedding(position_ids)


@dataclass
class FGCLIPOutput(ModelOutput):
    loss: torch.Tensor | None = None
    global_loss: torch.Tensor | None = None
    region_loss: torch.Tensor | None = None
    hardneg_loss: torch.Tensor | None = None


class FGCLIPModel(CLIPPreTrainedModel):
    """FG-CLIP: global (long + short caption), region (RoIAlign boxes) and hard-negative losses."""

    config_class = FGCLIPConfig
    config: FGCLIPConfig
    base_model_prefix = "fgclip"
    main_input_name = "pixel_values"

    def __init__(self, config: FGCLIPConfig) -> None:
        super().__init__(config)
        text_cfg, vision_cfg = config.text_config, config.vision_config
        # refused here, before any table is made: the long table is the short one stretched 4x
        rows, keep = text_cfg.max_position_embeddings, config.keep_positions
        if why := long_positions_problem(config.long_text_positions, rows, keep):
            raise ArgumentError("max_seq_length", config.long_text_positions, why)
        self.text_model = CLIPTextModel._from_config(text_cfg)
        self.text_model.embeddings = LongShortTextEmbeddings(text_cfg, config.long_text_positions)
        self.vision_model = CLIPVisionModel._from_config(vision_cfg)
        d = config.projection_dim
        self.visual_projection = nn.Linear(vision_cfg.hidden_size, d, bias=False)
        self.text_projection = nn.Linear(text_cfg.hidden_size, d, bias=False)  # short captions
        self.text_filip_projection = nn.Linear(text_cfg.hidden_size, d, bias=False)  # long captions
        self.roi_projection = nn.Linear(d, d)  # team's head on box features; starts as identity
        init = config.logit_scale_init_value
        fine = config.logit_scale_finegrained_init
        hard = config.logit_scale_hardneg_init
        self.logit_scale = nn.Parameter(torch.tensor(float(init)))
        self.logit_scale_finegrained = nn.Parameter(torch.tensor(float(init if fine is None else fine)))
        self.logit_scale_hardneg = nn.Parameter(torch.tensor(float(init if hard is None else hard)))
        self.memory_bank = (
            RegionMemoryBank(
                d, config.memory_bank_size, config.memory_bank_warmup_steps, config.memory_bank_mask_same_caption
            )
            if config.use_memory_bank
            else None
        )
        self.global_head = GlobalContrastiveLoss()
        self.region_head = RegionContrastiveLoss(config.memory_bank_mask_same_caption)
        self.hardneg_head = HardNegativeLoss()
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self:
            c = self.config
            with torch.no_grad():
                nn.init.normal_(self.visual_projection.weight, std=self.vision_model.config.hidden_size**-0.5)
                nn.init.normal_(self.text_projection.weight, std=self.text_model.config.hidden_size**-0.5)
                self.text_filip_projection.weight.copy_(self.text_projection.weight)
                nn.init.eye_(self.roi_projection.weight)
                nn.init.zeros_(self.roi_projection.bias)
                fine, hard = c.logit_scale_finegrained_init, c.logit_scale_hardneg_init
                self.logit_scale.fill_(c.logit_scale_init_value)
                self.logit_scale_finegrained.fill_(c.logit_scale_init_value if fine is None else fine)
                self.logit_scale_hardneg.fill_(c.logit_scale_init_value if hard is None else hard)
                # Here, not in a LongShortTextEmbeddings branch: text_model is a PreTrainedModel, so
                # its modules are initialised by CLIP's _init_weights and never reach this method.
                emb = self.text_model.embeddings
                hf_init.copy_(
                    emb.long_position_embedding.weight,  # skipped for a loaded table
                    stretch_positions(
                        emb.position_embedding.weight, emb.long_position_embedding.num_embeddings, c.keep_positions
                    ),
                )
        elif isinstance(module, RegionMemoryBank):
            # An empty bank for buffers a checkpoint lacks (e.g. FG-CLIP's own weights): from_pretrained
            # leaves them uninitialised otherwise. A private generator keeps the global RNG untouched.
            g = torch.Generator(device="cpu").manual_seed(0)
            hf_init.copy_(module.queue, F.normalize(torch.randn(module.queue.shape, generator=g), dim=1))
            for name in ("queue_ids", "ptr", "fill", "forward_calls"):
                hf_init.zeros_(getattr(module, name))
            hf_init.constant_(module.enabled_at_call, -1)

    # ---- scales ---------------------------------------------------------------------------
    def logit_scales(self) -> dict[str, nn.Parameter]:
        """The three learnable scales as ln-values, by name."""
        return {name: getattr(self, name) for name in SCALE_NAMES}

    @torch.no_grad()
    def clamp_logit_scales_(self) -> None:
        """Clamp every scale to [0, max_logit_scale] (ln 100), as CLIP / open_clip do after each step."""
        for p in self.logit_scales().values():
            p.clamp_(0, self.config.max_logit_scale)

    # ---- encoders -------------------------------------------------------------------------
    def encode_text(self, input_ids: torch.Tensor, long: bool = False, normalize: bool = True) -> torch.Tensor:
        """[N, L] token ids -> [N, D] normalised (as projected with normalize=False); long captions
        use the long projection."""
        # Trim the padding after the last row's EOS: with a causal mask, tokens after a row's EOS
        # cannot change its EOS state, so the pooled output is the same at a fraction of the cost.
        eos = self.text_model.eos_token_id
        pool_at = input_ids.argmax(-1) if eos == 2 else (input_ids == eos).int().argmax(-1)  # HF's rule
        input_ids = input_ids[:, : int(pool_at.max()) + 1]
        emb = self.text_model.embeddings
        emb.use_long = long
        try:
            pooled = self.text_model(input_ids=input_ids).pooler_output  # EOS token state, [N, W]
        finally:
            emb.use_long = False
        proj = self.text_filip_projection if long else self.text_projection
        return F.normalize(proj(pooled), dim=-1) if normalize else proj(pooled)

    def _last_block_without_attention(self, x: torch.Tensor) -> torch.Tensor:
        # FG-CLIP's dense path: the last block with attention replaced by its value projection,
        # so each patch token keeps its own content instead of mixing in the CLS-like context.
        block = self.vision_model.encoder.layers[-1]
        x = x + block.self_attn.out_proj(block.self_attn.v_proj(block.layer_norm1(x)))
        return x + block.mlp(block.layer_norm2(x))

    def patch_feature_map(self, penultimate: torch.Tensor) -> torch.Tensor:
        """Penultimate hidden states [B, 1+P, W] -> projected patch map [B, D, g, g]."""
        x = self._last_block_without_attention(penultimate)[:, 1:]  # drop CLS, [B, P, W]
        x = self.roi_projection(self.visual_projection(self.vision_model.post_layernorm(x)))  # [B, P, D]
        b, p, d = x.shape
        g = int(math.isqrt(p))
        return x.transpose(1, 2).reshape(b, d, g, g)

    def box_features(self, fmap: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """RoIAlign (1x1, aligned) of normalised boxes [B, K, 4] where `valid` [B, K] -> [k, D] normalised."""
        b_idx, k_idx = valid.nonzero(as_tuple=True)
        xyxy = boxes[b_idx, k_idx].float()  # [k, 4] in [0, 1]
        if self.config.region_pool == "image":  # control: ignore the box, pool the whole image
            xyxy = torch.tensor([0.0, 0.0, 1.0, 1.0], device=xyxy.device).expand_as(xyxy)
        h, w = fmap.shape[-2:]
        grid = torch.tensor([w, h, w, h], dtype=torch.float32, device=xyxy.device)
        if faults.active("pixel-boxes"):  # casebook: boxes in pixels, as a loader that skips normalising
            xyxy = xyxy * self.config.vision_config.image_size
        rois = torch.cat([b_idx[:, None].float(), xyxy * grid], dim=1)  # [k, 5] on the patch grid
        spatial_scale = 1 / 16 if faults.active("roi-spatial-scale") else 1.0  # casebook: a detector's stride
        feats = roi_align(fmap.float(), rois, 1, spatial_scale, self.config.roi_sampling_ratio, aligned=True)
        if mix := faults.dose("region-image-mix"):  # casebook: boxes pooled with a share of the whole image
            whole = torch.cat([b_idx[:, None].float(), grid.expand(len(b_idx), 4) * xyxy.new_tensor([0, 0, 1, 1])], 1)
            image = roi_align(fmap.float(), whole, 1, 1.0, self.config.roi_sampling_ratio, aligned=True)
            feats = (1 - mix) * F.normalize(feats, dim=1) + mix * F.normalize(image, dim=1)
        return F.normalize(feats[:, :, 0, 0], dim=-1).to(fmap.dtype)  # [k, D]

    # ---- forward --------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        text_long: torch.Tensor | None = None,
        text_short: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        box_nums: torch.Tensor | None = None,
        box_texts: torch.Tensor | None = None,
        box_caption_ids: torch.Tensor | None = None,
        hard_texts: torch.Tensor | None = None,
        hard_valid: torch.Tensor | None = None,
        use_memory_bank: bool = True,
        return_loss: bool = True,
        **_: object,
    ) -> FGCLIPOutput:
        """Named loss terms; `loss` = global + 0.1 * region + 0.5 * hardneg (FG-CLIP v1 weights)."""
        c = self.config
        want_region = c.add_box_loss and boxes is not None and box_nums is not None and box_texts is not None
        want_hard = c.use_hard_neg and want_region and hard_texts is not None and hard_valid is not None
        vision = self.vision_model(pixel_values=pixel_values, output_hidden_states=want_region)
        image = F.normalize(self.visual_projection(vision.pooler_output), dim=-1)  # [B, D]

        out = FGCLIPOutput()
        total = []
        for ids, long in ((text_long, True), (text_short, False)):
            if ids is not None:  # FG-CLIP: loss_itcl + loss_itcs
                total.append(self.global_head(image, self.encode_text(ids, long), self.logit_scale).loss)
        if total:
            out.global_loss = sum(total)

        if want_region:
            fmap = self.patch_feature_map(vision.hidden_states[-2])  # [B, D, g, g]
            valid = torch.arange(boxes.shape[1], device=boxes.device)[None] < box_nums[:, None]  # [B, K]
            if valid.any():
                box_feats = self.box_features(fmap, boxes, valid)  # [k, D]
                projected = self.encode_text(box_texts[valid], normalize=False)  # [k, D]
                captions = F.normalize(projected, dim=-1)
                keys = projected if faults.active("bank-unnormalised") else captions  # casebook fault
                ids = box_caption_ids[valid] if box_caption_ids is not None else None
                out.region_loss = self._region_loss(box_feats, captions, ids, use_memory_bank, keys)
                if want_hard:
                    hard = (hard_valid & valid)[valid]  # which of the k boxes have rewrites, [k]
                    if hard.any():
                        texts = hard_texts[hard_valid & valid]  # [h, 1 + n, L]
                        h, n = texts.shape[:2]
                        caps = self.encode_text(texts.flatten(0, 1)).view(h, n, -1)  # [h, 1 + n, D]
                        out.hardneg_loss = self.hardneg_head(box_feats[hard], caps, self.logit_scale_hardneg).loss

        terms = [
            out.global_loss,
            None if out.region_loss is None else c.box_loss_weight * out.region_loss,
            None if out.hardneg_loss is None else c.hardneg_loss_weight * out.hardneg_loss,
        ]
        terms = [t for t in terms if t is not None]
        if return_loss and terms:
            out.loss = sum(terms)
        return out

    def _region_loss(self, box_feats, captions, ids, use_memory_bank: bool, keys=None) -> torch.Tensor:
        # keys: what the bank queues ([k, D]; the normalised captions unless a casebook fault says otherwise)
        bank = self.memory_bank
        queue = queue_ids = None
        if bank is not None:
            active = bank.tick() if self.training else bank.active
            if active and use_memory_bank and not faults.active("bank-unused"):
                queue, queue_ids = bank.candidates()
        loss = self.region_head(box_feats, captions, self.logit_scale_finegrained, ids, queue, queue_ids).loss
        if bank is not None and self.training:
            if ids is None:
                ids = torch.zeros(captions.shape[0], dtype=torch.long, device=captions.device)
            bank.enqueue(captions if keys is None else keys, ids)
        return loss

    # ---- loading --------------------------------------------------------------------------
    @classmethod
    def from_clip(cls, path: str, new_scale_init: float | None = None, **overrides) -> FGCLIPModel:
        """Start FG-CLIP fine-tuning from an HF CLIP checkpoint dir (FG-CLIP's `--from_openai`).

        Copies the towers, projections and learned global scale; stretches the position table
        77 -> 248; copies the short projection into the long one; starts the two new scales at
        `new_scale_init` or, by default, at the base's learned global scale (FG-CLIP v1).
        """
        clip = CLIPModel.from_pretrained(path)
        base_scale = float(clip.logit_scale.detach())
        new = base_scale if new_scale_init is None else float(new_scale_init)
        cfg = FGCLIPConfig(
            text_config=clip.config.text_config.to_dict(),
            vision_config=clip.config.vision_config.to_dict(),
            projection_dim=clip.config.projection_dim,
            logit_scale_init_value=base_scale,
            logit_scale_finegrained_init=new,
            logit_scale_hardneg_init=new,
            **overrides,
        )
        cfg.name_or_path = path  # where the weights came from, as from_pretrained records it
        model = cls(cfg)
        missing, unexpected = model.load_state_dict(clip.state_dict(), strict=False)
        if unexpected:
            raise ValueError(f"{path}: unexpected CLIP keys {unexpected[:5]}")
        with torch.no_grad():
            emb = model.text_model.embeddings
            emb.long_position_embedding.weight.copy_(
                stretch_positions(emb.position_embedding.weight, cfg.long_text_positions, cfg.keep_positions)
            )
            model.text_filip_projection.weight.copy_(model.text_projection.weight)
        return model
