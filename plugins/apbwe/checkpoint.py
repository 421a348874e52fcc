"""AP-BWE checkpoints on disk: find, load, and write random ones in the released format.

The released format (and what the original training script saves): a ``torch.save`` file
whose ``generator`` entry is the generator's ``state_dict``, named ``g_<something>`` (e.g.
``16kto48k/g_16kto48k``), with the training ``config.json`` in the same folder. A path may
name the file itself or its folder (then the last ``g_*`` file by name is used).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from veena.plugins.apbwe.model import APBWEConfig, APBWEGenerator, clean_state_dict

CONFIG_NAME = "config.json"


class CheckpointError(Exception):
    """The checkpoint is missing, incomplete or does not fit the generator."""


def find_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(weights file, config.json) for a file or folder path."""
    p = Path(path).expanduser()
    if p.is_dir():
        candidates = sorted(f for f in p.glob("g_*") if f.is_file())
        if not candidates:
            candidates = sorted(f for f in p.iterdir()
                                if f.suffix in (".pt", ".pth", ".ckpt") and f.is_file())
        if not candidates:
            raise CheckpointError(f"{p} holds no generator checkpoint (g_* file)")
        weights = candidates[-1]
    elif p.is_file():
        weights = p
    else:
        raise CheckpointError(f"{p} does not exist")
    config = weights.parent / CONFIG_NAME
    if not config.is_file():
        raise CheckpointError(f"{config} is missing (it must lie beside the weights)")
    return weights, config


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> APBWEGenerator:
    """The generator of a checkpoint (file or folder), in eval mode on ``device``."""
    weights, config_path = find_checkpoint(path)
    try:
        config = APBWEConfig.load(config_path)
    except (ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: {exc}") from exc
    try:
        data = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or torch errors all mean "unreadable"
        raise CheckpointError(f"{weights} is not a readable torch checkpoint: {exc}") from exc
    if not isinstance(data, dict) or "generator" not in data:
        raise CheckpointError(f"{weights} has no 'generator' entry")
    model = APBWEGenerator(config)
    try:
        model.load_state_dict(clean_state_dict(data["generator"]), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not fit an AP-BWE generator of "
                              f"{config.channels} channels x {config.layers} layers: {exc}") from exc
    return model.eval().to(device)


def write_random_checkpoint(folder: str | Path, *, channels: int = 512, layers: int = 8,
                            seed: int = 0, name: str = "g_16kto48k") -> Path:
    """Writes a random-weight checkpoint in the released format (for tests and benchmarks:
    no weights can be downloaded here); returns the weights file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = APBWEConfig(channels=channels, layers=layers)
    model = APBWEGenerator(config).randomize(seed)
    (folder / CONFIG_NAME).write_text(json.dumps(config.to_json(), indent=4))
    weights = folder / name
    torch.save({"generator": model.state_dict()}, weights)
    return weights
