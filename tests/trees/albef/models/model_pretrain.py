"""Image-text contrastive learning against a momentum encoder's queue of keys (MoCo style)."""
import torch
import torch.nn.functional as F
from torch import nn


class ALBEF(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        embed_dim, width = config["embed_dim"], config["vision_width"]
        self.visual_encoder = nn.Linear(3 * 16 * 16, width)
        self.text_encoder = nn.Embedding(30522, width)
        self.vision_proj = nn.Linear(width, embed_dim)
        self.text_proj = nn.Linear(width, embed_dim)
        self.temp = nn.Parameter(torch.ones([]) * config["temp"])
        self.queue_size = config["queue_size"]
        self.momentum = config["momentum"]

        self.visual_encoder_m = nn.Linear(3 * 16 * 16, width)
        self.text_encoder_m = nn.Embedding(30522, width)
        self.vision_proj_m = nn.Linear(width, embed_dim)
        self.text_proj_m = nn.Linear(width, embed_dim)
        self.model_pairs = [
            [self.visual_encoder, self.visual_encoder_m],
            [self.text_encoder, self.text_encoder_m],
            [self.vision_proj, self.vision_proj_m],
            [self.text_proj, self.text_proj_m],
        ]
        self.copy_params()

        self.register_buffer("image_queue", torch.randn(embed_dim, self.queue_size))
        self.register_buffer("text_queue", torch.randn(embed_dim, self.queue_size))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.image_queue = F.normalize(self.image_queue, dim=0)
        self.text_queue = F.normalize(self.text_queue, dim=0)

    def forward(self, image, text, alpha=0):
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        image_feat = F.normalize(self.vision_proj(self.visual_encoder(image).mean(1)), dim=-1)
        text_feat = F.normalize(self.text_proj(self.text_encoder(text)[:, 0]), dim=-1)
        with torch.no_grad():
            self._momentum_update()
            image_feat_m = F.normalize(self.vision_proj_m(self.visual_encoder_m(image).mean(1)), dim=-1)
            image_feat_all = torch.cat([image_feat_m.t(), self.image_queue.clone().detach()], dim=1)
            text_feat_m = F.normalize(self.text_proj_m(self.text_encoder_m(text)[:, 0]), dim=-1)
            text_feat_all = torch.cat([text_feat_m.t(), self.text_queue.clone().detach()], dim=1)
            sim_targets = torch.zeros(image_feat.size(0), image_feat_all.size(1), device=image.device)
            sim_targets.fill_diagonal_(1)
        sim_i2t = image_feat @ text_feat_all / self.temp
        sim_t2i = text_feat @ image_feat_all / self.temp
        loss_i2t = -torch.sum(F.log_softmax(sim_i2t, dim=1) * sim_targets, dim=1).mean()
        loss_t2i = -torch.sum(F.log_softmax(sim_t2i, dim=1) * sim_targets, dim=1).mean()
        loss_ita = (loss_i2t + loss_t2i) / 2
        self._dequeue_and_enqueue(image_feat_m, text_feat_m)
        return loss_ita

    @torch.no_grad()
    def copy_params(self):
        for model_pair in self.model_pairs:
            for param, param_m in zip(model_pair[0].parameters(), model_pair[1].parameters()):
                param_m.data.copy_(param.data)
                param_m.requires_grad = False

    @torch.no_grad()
    def _momentum_update(self):
        for model_pair in self.model_pairs:
            for param, param_m in zip(model_pair[0].parameters(), model_pair[1].parameters()):
                param_m.data = param_m.data * self.momentum + param.data * (1.0 - self.momentum)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, image_feat, text_feat):
        image_feats = concat_all_gather(image_feat)
        text_feats = concat_all_gather(text_feat)
        batch_size = image_feats.shape[0]
        ptr = int(self.queue_ptr)
        self.image_queue[:, ptr : ptr + batch_size] = image_feats.T
        self.text_queue[:, ptr : ptr + batch_size] = text_feats.T
        self.queue_ptr[0] = (ptr + batch_size) % self.queue_size


@torch.no_grad()
def concat_all_gather(tensor):
    gathered = [torch.ones_like(tensor) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, tensor, async_op=False)
    return torch.cat(gathered, dim=0)
