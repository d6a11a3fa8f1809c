"""Config checks (one line naming the bad value) and what each rule gets from the config."""

from __future__ import annotations

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from snakemake.utils import validate


class ConfigError(ValueError):
    pass


def _where(path) -> str:
    where = ""
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
    return where or "config"


def _coerce(value, schema: dict):
    """Snakemake's --config parses list items and nested values as strings: '16' -> 16."""
    kind = schema.get("type")
    if isinstance(value, dict) and kind == "object":
        props = schema.get("properties", {})
        return {k: _coerce(v, props[k]) if k in props else v for k, v in value.items()}
    if isinstance(value, list) and kind == "array":
        return [_coerce(v, schema.get("items", {})) for v in value]
    if isinstance(value, str) and kind in ("integer", "number"):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if kind == "integer" and number.is_integer() else number
    return value


def check_schema(config: dict, schema_path: str | Path) -> None:
    """Fix command-line string types in place, raise ConfigError with one line for the most
    relevant schema violation, then fill in the schema's defaults (Snakemake's ``validate``): the
    schema is the one place a default is written."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    config.update(_coerce(dict(config), schema))
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        validate(config, str(Path(schema_path).resolve()), set_default=True)
        return
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        raise ConfigError(
            f"config: unknown key {', '.join(map(repr, extra))} in {_where(error.absolute_path)}"
            f" (known: {allowed})"
        )
    raise ConfigError(f"config: {_where(error.absolute_path)}: {error.message}")


def check_providers(config: dict) -> None:
    """Every provider is known, and every format's bench job has a provider to run (the baseline
    alone is a sweep: the baseline format's job may time only it)."""
    from .providers import PROVIDERS

    unknown = [name for name in config["providers"] if name not in PROVIDERS]
    if unknown:
        raise ConfigError(
            f"config: unknown provider {unknown[0]!r} in providers (known: {', '.join(PROVIDERS)})"
        )
    for fmt in config["formats"]:
        if not format_providers(config, fmt):
            known = [name for name, p in PROVIDERS.items() if p.format == fmt]
            raise ConfigError(
                f"config: formats has {fmt!r} but providers names none of its providers "
                f"({', '.join(known)})"
            )


def baseline_format(config: dict) -> str:
    """The format whose bench job also times the baseline: the first enabled one in
    numerics.FORMATS order, so that adding a format never moves it."""
    from .numerics import FORMATS

    return next(fmt for fmt in FORMATS if fmt in config["formats"])


def format_providers(config: dict, fmt: str) -> list[str]:
    """The configured providers of format `fmt`, in config order, with the baseline where this
    format's job times it."""
    from .providers import PROVIDERS

    with_baseline = fmt == baseline_format(config)
    return [
        name
        for name in config["providers"]
        if PROVIDERS[name].format == fmt or (with_baseline and PROVIDERS[name].format is None)
    ]


def batch_sizes(config: dict, device: str) -> list[int]:
    """The configured batch sizes; on the CPU only those up to cpu.max_batch_size."""
    sizes = sorted(config["batch_sizes"])
    if device == "cpu":
        cap = config["cpu"]["max_batch_size"]
        sizes = [m for m in sizes if m <= cap] or sizes[:1]
    return sizes


def bench_params(config: dict, device: str, fmt: str = "nvfp4") -> dict:
    """Everything the bench job of format `fmt` depends on (a change re-runs it), named as the
    fields of ``sweep.SweepSettings``. Its providers are that format's (and the baseline, in the
    baseline format's job), so adding a format or its providers leaves the other jobs alone."""
    timing = config["timing"]
    gpu = device != "cpu"
    return {
        "batch_sizes": batch_sizes(config, device),
        "had_sizes": sorted(config["had_sizes"]),
        "providers": format_providers(config, fmt),
        "device": device,
        "timing_method": timing["method"],
        "stopping": timing["stopping"],
        "max_noise": timing["max_noise"],
        "rep_ms": config["cpu"]["rep_ms"] if device == "cpu" else timing["rep_ms"],
        # Only the cold-L2 timer warms up by time, and only `both` times some rows cold: where a
        # setting does nothing, a change must not re-run anything.
        "warmup_ms": timing["warmup_ms"] if gpu and timing["method"] != "cudagraph" else None,
        "cold_l2_max_batch_size": timing["cold_l2_max_batch_size"]
        if gpu and timing["method"] == "both"
        else None,
        # Unset: the tuner's own default.
        "tuning_rep_ms": timing.get("tuning_rep_ms"),
        "row_timeout_s": timing["row_timeout_s"],
        "seed": timing["seed"],
    }


def accuracy_params(config: dict, fmt: str = "nvfp4") -> dict:
    accuracy = config["accuracy"]
    return {
        "fmt": fmt,
        "had_sizes": sorted(config["had_sizes"]),
        "distributions": list(accuracy["distributions"]),
        "tokens": accuracy["tokens"],
        "max_out_channels": accuracy["max_out_channels"],
        "seed": accuracy["seed"],
    }


def model_key(model: str) -> str:
    """Folder name of a model's shape tables: org/name -> org--name."""
    return model.strip("/").replace("/", "--")


def check_models(config: dict) -> list[tuple[str, int, str]]:
    """Every model loads; K must suit NVFP4 scale blocks. Returns the (model, tp, reason) pairs
    whose layers a TP size cannot split: those are skipped, the rest runs (an error only when
    nothing is left)."""
    from .models import model_shapes
    from .numerics import BLOCK
    from .shapes import TPSplitError

    keys = {}
    skipped = []
    for model in config["models"]:
        key = model_key(model)
        if keys.setdefault(key, model) != model:
            raise ConfigError(f"config: models {keys[key]!r} and {model!r} share the name {key!r}")
        for tp in config["tp_sizes"]:
            try:
                table = model_shapes(model, tp)
            except TPSplitError as error:
                skipped.append((model, tp, str(error)))
                continue
            bad = table[table["K"] % BLOCK != 0]
            if len(bad):
                row = bad.iloc[0]
                raise ConfigError(
                    f"{model}: {row['layer']} at tp={row['tp']} has K={row['K']}, "
                    f"not a multiple of {BLOCK} (the NVFP4 scale block)"
                )
    if len(skipped) == len(config["models"]) * len(config["tp_sizes"]):
        raise ConfigError(f"config: no model splits over any TP size; first: {skipped[0][2]}")
    return skipped
