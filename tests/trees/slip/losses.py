import torch
import torch.nn.functional as F
from torch import nn

import utils


class CLIPLoss(nn.Module):
    def forward(self, outputs):
        image_embed = F.normalize(outputs["image_embed"], dim=-1, p=2)
        text_embed = F.normalize(outputs["text_embed"], dim=-1, p=2)
        logit_scale = outputs["logit_scale"]
        local_batch_size = image_embed.size(0)
        labels = local_batch_size * utils.get_rank() + torch.arange(local_batch_size, device=image_embed.device)
        image_embed_all, text_embed_all = utils.all_gather_batch_with_grad([image_embed, text_embed])
        logits_per_image = logit_scale * image_embed @ text_embed_all.t()
        logits_per_text = logit_scale * text_embed @ image_embed_all.t()
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


class SIMCLRLoss(nn.Module):
    """NT-Xent between two views of each image, negatives from every rank's views."""

    def __init__(self, temperature=0.1):
        super().__init__()
        self.tau = temperature

    def forward(self, outputs):
        q_a = F.normalize(outputs["aug1_embed"], dim=-1, p=2)
        q_b = F.normalize(outputs["aug2_embed"], dim=-1, p=2)
        local_batch_size = q_a.size(0)
        k_a, k_b = utils.all_gather_batch_with_grad([q_a, q_b])
        labels = local_batch_size * utils.get_rank() + torch.arange(local_batch_size, device=q_a.device)
        masks = F.one_hot(labels, k_a.size(0)) * 1e9
        logits_aa = q_a @ k_a.t() / self.tau - masks
        logits_bb = q_b @ k_b.t() / self.tau - masks
        logits_ab = q_a @ k_b.t() / self.tau
        logits_ba = q_b @ k_a.t() / self.tau
        loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], dim=1), labels)
        loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], dim=1), labels)
        return (loss_a + loss_b) / 2


class SLIPLoss(nn.Module):
    def __init__(self, ssl_loss, ssl_scale):
        super().__init__()
        self.clip_loss = CLIPLoss()
        self.ssl_loss = ssl_loss
        self.ssl_scale = ssl_scale

    def forward(self, outputs):
        clip_loss = self.clip_loss(outputs)
        ssl_loss = self.ssl_loss(outputs)
        return {"loss": clip_loss + self.ssl_scale * ssl_loss, "clip_loss": clip_loss, "ssl_loss": ssl_loss}
