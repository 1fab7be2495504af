import torch
from torch import nn

from modules.module_clip import CLIP
from modules.until_module import AllGather, CrossEn

allgather = AllGather.apply


class CLIP4Clip(nn.Module):
    def __init__(self, clip_state_dict, task_config):
        super().__init__()
        self.task_config = task_config
        self.loose_type = task_config.loose_type
        vision_width = clip_state_dict["visual.conv1.weight"].shape[0]
        embed_dim = clip_state_dict["text_projection"].shape[1]
        self.clip = CLIP(embed_dim, 224, 12, vision_width, 77, 49408).float()
        self.sim_header = task_config.sim_header
        self.loss_fct = CrossEn()

    @classmethod
    def from_pretrained(cls, state_dict=None, cache_dir=None, task_config=None):
        clip_state_dict = CLIP.get_config(pretrained_clip_name=task_config.pretrained_clip_name)
        if state_dict is None:
            state_dict = {}
        for key, val in clip_state_dict.items():
            state_dict["clip." + key] = val.clone()
        model = cls(clip_state_dict, task_config)
        model.load_state_dict(state_dict, strict=False)
        return model

    def forward(self, input_ids, video, video_mask=None):
        sequence_output = self.clip.encode_text(input_ids)
        visual_output = self.clip.encode_image(video).mean(1)
        if self.training:
            sim_matrix = self.get_similarity_logits(sequence_output, visual_output)
            sim_loss1 = self.loss_fct(sim_matrix)
            sim_loss2 = self.loss_fct(sim_matrix.T)
            return (sim_loss1 + sim_loss2) / 2
        return None

    def get_similarity_logits(self, sequence_output, visual_output):
        if self.training:
            visual_output = allgather(visual_output, self.task_config)
            sequence_output = allgather(sequence_output, self.task_config)
            torch.distributed.barrier()
        visual_output = visual_output / visual_output.norm(dim=-1, keepdim=True)
        sequence_output = sequence_output / sequence_output.norm(dim=-1, keepdim=True)
        logit_scale = self.clip.logit_scale.exp()
        return logit_scale * torch.matmul(sequence_output, visual_output.t())
