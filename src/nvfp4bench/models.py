"""Model configs: the bundled architecture-only config.json files, else transformers' own lookup.

A model id is a Hugging Face id ("meta-llama/Llama-3.1-8B-Instruct") or a local directory that
holds a config.json. The lookup order is:

1. the bundled folder ``model_configs/{org}--{name}/config.json`` (no network, no cache);
2. a local directory given as the id;
3. the Hugging Face cache (no network);
4. the Hugging Face hub, unless HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set.

Remote code is never run: ``trust_remote_code=False`` always, and a config.json that asks for it
(an ``auto_map``, or a ``model_type`` transformers does not know) is refused before transformers
sees it. Every failure is a one-line :class:`ModelConfigError` naming the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import transformers
from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .shapes import NULLABLE_KEYS, family_of, layer_shapes, shapes_frame

BUNDLED_DIR: Path = Path(__file__).resolve().parent / "model_configs"
CONFIG_NAME = "config.json"


class ModelConfigError(ValueError):
    """A model's config could not be found or loaded, or was refused (one-line message)."""


def bundled_folder(model_id: str) -> Path:
    """Where the bundled config of ``model_id`` lives (or would live): ``{org}--{name}``."""
    return BUNDLED_DIR / model_id.replace("/", "--")


def bundled_models() -> list[str]:
    """Ids ("org/name") of the models that ship a config.json, sorted case-insensitively."""
    if not BUNDLED_DIR.is_dir():
        return []
    ids = [
        d.name.replace("--", "/", 1)
        for d in BUNDLED_DIR.iterdir()
        if d.is_dir() and (d / CONFIG_NAME).is_file()
    ]
    return sorted(ids, key=str.lower)


def load_model_config(model_id: str) -> PretrainedConfig:
    """The transformers config of ``model_id`` (see the module docstring for the lookup)."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise ModelConfigError(f"model id must be a non-empty string, got {model_id!r}")
    model_id = model_id.strip()
    folder = _find_config_folder(model_id)
    raw = _read_raw(model_id, folder / CONFIG_NAME)
    _check_no_remote_code(model_id, raw)
    _check_required_keys(model_id, raw)
    try:
        return AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - any transformers failure becomes one line
        raise ModelConfigError(
            f"{model_id}: transformers could not load {folder / CONFIG_NAME}: {_one_line(e)}"
        ) from e


def model_shapes(model_id: str, tp: int) -> pd.DataFrame:
    """The layer shapes (``shapes.layer_shapes``) of ``model_id`` on one of ``tp`` ranks."""
    return shapes_frame(layer_shapes(load_model_config(model_id), model_id, tp))


# --- lookup -----------------------------------------------------------------------------------


def _find_config_folder(model_id: str) -> Path:
    bundled = _bundled_match(model_id)
    if bundled is not None:
        return bundled

    local = Path(model_id).expanduser()
    if local.is_dir():
        if not (local / CONFIG_NAME).is_file():
            raise ModelConfigError(f"{model_id}: local directory has no {CONFIG_NAME}")
        return local
    if _looks_like_path(model_id):
        raise ModelConfigError(f"{model_id}: no such directory")

    cached = _from_hf_cache(model_id)
    if cached is not None:
        return cached
    if _offline():
        raise ModelConfigError(_not_found_message(model_id, "not bundled and not in the HF cache"))
    return _from_hub(model_id)


def _bundled_match(model_id: str) -> Path | None:
    if not BUNDLED_DIR.is_dir() or model_id.count("/") > 1 or model_id.startswith((".", "/")):
        return None
    exact = bundled_folder(model_id)
    if (exact / CONFIG_NAME).is_file():
        return exact
    # Hub ids are case-insensitive ("meta-llama/llama-3.1-8b-instruct" is the same repo).
    wanted = exact.name.lower()
    for d in BUNDLED_DIR.iterdir():
        if d.name.lower() == wanted and (d / CONFIG_NAME).is_file():
            return d
    return None


def _looks_like_path(model_id: str) -> bool:
    return model_id.startswith((".", "/", "~")) or model_id.count("/") > 1 or "\\" in model_id


def _offline() -> bool:
    truthy = {"1", "ON", "YES", "TRUE"}
    if any(
        os.environ.get(v, "").upper() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _not_found_message(model_id: str, why: str) -> str:
    return (
        f"{model_id}: {why}; drop its config.json at {bundled_folder(model_id) / CONFIG_NAME} "
        f"(bundled), pass a local directory holding a {CONFIG_NAME}, or put it in the HF cache "
        f"({_hf_cache_dir()})"
    )


def _from_hf_cache(model_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(model_id, CONFIG_NAME)
    except Exception as e:  # noqa: BLE001 - HFValidationError and friends
        raise ModelConfigError(
            f"{model_id}: not a bundled model, a local directory or a valid Hugging Face id "
            f"({_one_line(e)}); bundled: {BUNDLED_DIR}"
        ) from e
    if isinstance(hit, str) and Path(hit).is_file():
        return Path(hit).parent
    return None


def _from_hub(model_id: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(model_id, CONFIG_NAME, etag_timeout=10)
    except Exception as e:  # noqa: BLE001 - offline, gated, missing repo, timeout, ...
        raise ModelConfigError(
            _not_found_message(
                model_id, f"not bundled and not fetched from the hub ({_one_line(e)})"
            )
        ) from e
    return Path(path).parent


# --- checks -----------------------------------------------------------------------------------


def _read_raw(model_id: str, path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelConfigError(f"{model_id}: cannot read {path}: {_one_line(e)}") from e
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{model_id}: {path} is not a JSON object")
    return raw


def _check_no_remote_code(model_id: str, raw: dict[str, Any]) -> None:
    if raw.get("auto_map"):
        classes = ", ".join(sorted(str(v) for v in _flatten(raw["auto_map"])))
        raise ModelConfigError(
            f"{model_id}: config.json asks for remote code (auto_map: {classes}); refused, "
            f"trust_remote_code is never enabled. If its model_type is built into transformers, "
            f"drop a copy without auto_map at {bundled_folder(model_id) / CONFIG_NAME}"
        )
    model_type = raw.get("model_type")
    if not model_type:
        raise ModelConfigError(f"{model_id}: config.json has no model_type")
    if model_type not in CONFIG_MAPPING:
        raise ModelConfigError(
            f"{model_id}: model_type {model_type!r} is not built into transformers "
            f"{transformers.__version__} and would need remote code; refused"
        )


def _check_required_keys(model_id: str, raw: dict[str, Any]) -> None:
    """The keys the shape extractor of this model type needs (``shapes.FAMILIES``) are stated;
    a type with no family is refused later, by the shape extraction."""
    family = family_of(raw["model_type"])
    for key in family.required_keys if family else ():
        if key not in raw or (raw[key] is None and key not in NULLABLE_KEYS):
            raise ModelConfigError(
                f"{model_id}: config.json has no {key!r} (needed for {raw['model_type']} shapes)"
            )


def _flatten(v: Any) -> list[Any]:
    if isinstance(v, dict):
        return [x for item in v.values() for x in _flatten(item)]
    if isinstance(v, (list, tuple)):
        return [x for item in v for x in _flatten(item)]
    return [v]


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
