"""Config files a training loads from one of its flags (`yaml.safe_load(open(args.config))`,
`OmegaConf.load(args.config)`, `json.load`, `tomllib.load`), read like flags.

    config/Pretrain.yaml            ->  {"batch_size_train": (64, "config/Pretrain.yaml:3 batch_size_train"),
      batch_size_train: 64                "schedular.lr": (0.0001, "config/Pretrain.yaml:9 schedular.lr"), ...}
      schedular: {lr: 1e-4, ...}

Nested mappings are flattened to dotted keys, each cited by its own line (YAML, and JSON top-level
keys; TOML by name). Nothing in the file is executed: YAML is read with the safe loader.
"""

from __future__ import annotations

from pathlib import Path

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.sources.files import display_path, read_text_file
from fgclip_doctor.sources.launch.args import load_args_file

MAX_KEYS = 5_000  # a training config has tens of keys; more is not a config


def load_config_file(path: Path) -> dict[str, tuple[object, str]]:
    """{dotted key: (value, `file:line key`)} of a .yaml / .yml / .json / .toml config."""
    suffix = path.suffix.lower()
    rel = display_path(path)
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(read_text_file(path))
        except tomllib.TOMLDecodeError as err:
            raise DoctorInputError(path, f"invalid TOML: {err}") from None
        return _flatten(data, lambda key: f"{rel}: {key}")
    if suffix == ".json":
        top = load_args_file(path)
        out: dict[str, tuple[object, str]] = {}
        for key, (value, source) in top.items():
            out.update(_flatten({key: value}, lambda k, s=source: f"{s.rsplit(' ', 1)[0]} {k}"))
        return out
    if suffix not in (".yaml", ".yml"):
        raise DoctorInputError(path, "expected a .yaml, .yml, .json or .toml config file")
    load_args_file(path)  # the same validation (one clear line on bad YAML, alias bombs)
    import yaml

    node = yaml.compose(read_text_file(path), Loader=yaml.SafeLoader)
    data = yaml.safe_load(read_text_file(path))
    lines: dict[str, int] = {}
    _yaml_lines(node, "", lines)
    return _flatten(data, lambda key: f"{rel}:{lines[key]} {key}" if key in lines else f"{rel}: {key}")


def _yaml_lines(node, prefix: str, out: dict[str, int]) -> None:
    import yaml

    if not isinstance(node, yaml.MappingNode) or len(out) > MAX_KEYS:
        return
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = f"{prefix}{key_node.value}"
            out[key] = key_node.start_mark.line + 1
            _yaml_lines(value_node, key + ".", out)


def _flatten(data: object, cite, prefix: str = "") -> dict[str, tuple[object, str]]:
    out: dict[str, tuple[object, str]] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and len(out) < MAX_KEYS:
            out.update(_flatten(value, cite, name + "."))
        else:
            out[name] = (value, cite(name))
    return out
