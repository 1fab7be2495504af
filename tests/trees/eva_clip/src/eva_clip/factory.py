import json
from pathlib import Path

from .model import CustomCLIP

_MODEL_CONFIG_PATHS = Path(__file__).parent / "model_configs"


def create_model(model_name, precision="fp32"):
    with open(_MODEL_CONFIG_PATHS / f"{model_name}.json") as f:
        cfg = json.load(f)
    return CustomCLIP(**cfg)
