"""Trainer with its own parameter groups: optional separate LR for the text tower."""
from transformers import Trainer
from transformers.trainer import ALL_LAYERNORM_LAYERS, get_parameter_names


class RegionCLIPTrainer(Trainer):
    def create_optimizer(self):
        model = self.model
        if self.optimizer is None:
            decay = get_parameter_names(model, ALL_LAYERNORM_LAYERS)
            decay = [n for n in decay if "bias" not in n]
            named = list(model.named_parameters())
            groups = [
                {"params": [p for n, p in named if n in decay and p.requires_grad],
                 "weight_decay": self.args.weight_decay},
                {"params": [p for n, p in named if n not in decay and p.requires_grad],
                 "weight_decay": 0.0},
            ]
            if self.args.text_model_lr is not None:
                text = [p for n, p in named if "text_model" in n]
                groups.append({"params": text, "weight_decay": self.args.weight_decay,
                               "lr": self.args.text_model_lr})
            cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args)
            self.optimizer = cls(groups, **kwargs)
        return self.optimizer
