"""The resolved experiment, every default filled in, as TOML (``noisegrid validate --explain``).

A config file says only what its author changed; this module writes out everything a run will use:
each section's keys with their values, the backend's and noise models' options with their
defaults, paths made absolute, and the values that depend on the data (``[eval] test_size`` when it
is left out). Keys the file did not set carry a ``# default`` comment; optional keys left unset
appear as comments saying what their absence means. The output is itself an experiment file with
the same fingerprint as the spec it explains.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from .backends import get_backend_class
from .config import DEFAULT_TEST_SIZE_CAP, ExperimentSpec
from .data import Corpus, resolve_test_size
from .noise import get_noise_model_class
from .runner import default_cache_dir

_UNSET_MEANS = {
    ("train", "steps"): "the budget is epochs",
    ("train", "max_length"): "the model's maximum length",
    ("run", "address"): "the ray executor starts a private instance on this machine",
    ("dataset", "config_name"): "the dataset's only (or default) configuration",
}


def explain_spec(spec: ExperimentSpec, corpus: Corpus) -> str:
    """The spec as TOML with every default filled in and data-dependent values resolved.

    Parameters
    ----------
    spec : ExperimentSpec
        A validated spec (after ``--set`` and ``--store``).
    corpus : Corpus
        The spec's loaded corpus: it decides the automatic ``[eval] test_size``.

    Returns
    -------
    str
        TOML text; ``tomllib.loads`` of it validates as the same experiment.
    """
    lines: list[str] = []
    top = spec.model_fields_set
    for key in ("name", "description"):
        value = getattr(spec, key)
        if value is not None:
            lines.append(_line(key, value, default=key not in top))
    for section in ("dataset", "grid"):
        lines += _section(section, getattr(spec, section))
    lines += _noise_section(spec)
    lines += _backend_section(spec)
    lines += _train_section(spec)
    lines += _eval_section(spec, corpus)
    lines += _run_section(spec)
    return "\n".join(lines).strip() + "\n"


def _section(
    name: str,
    model: BaseModel,
    *,
    values: Mapping[str, Any] | None = None,
    given: set[str] | None = None,
    notes: Mapping[str, str] | None = None,
    unused: Mapping[tuple[str, str], str] | None = None,
) -> list[str]:
    unused = unused or {}
    data = dict(values) if values is not None else model.model_dump(mode="json")
    given = model.model_fields_set if given is None else given
    notes = notes or {}
    out = ["", f"[{name}]"]
    for key, value in data.items():
        if name == "grid" and key == "repeats":
            continue  # already expanded into seeds
        if value is None or (name, key) in unused:
            meaning = _UNSET_MEANS.get((name, key))
            if (name, key) in unused:
                meaning = unused[(name, key)]
            out.append(f"# {key}: not set" + (f" ({meaning})" if meaning else ""))
            continue
        out.append(_line(key, value, default=key not in given, note=notes.get(key, "")))
    return out


def _noise_section(spec: ExperimentSpec) -> list[str]:
    values: dict[str, Any] = {}
    notes: dict[str, str] = {}
    given = set(spec.noise.options())
    for model in spec.grid.noise_models:
        options = get_noise_model_class(model).Options
        # Given keys as written, then this model's remaining options at their defaults.
        resolved = options.model_validate(
            {k: v for k, v in spec.noise.options().items() if k in options.model_fields}
        ).model_dump(mode="json")
        for key, value in resolved.items():
            values.setdefault(key, value)
            readers = notes.get(key, "").removeprefix("read by ")
            notes[key] = "read by " + (f"{readers}, {model}" if readers else model)
    if len(spec.grid.noise_models) == 1:
        notes = {}
    out = _section("noise", spec.noise, values=values, given=given, notes=notes)
    if not values:
        models = ", ".join(spec.grid.noise_models)
        out.append(f"# noise model {models} reads no options")
    return out


def _backend_section(spec: ExperimentSpec) -> list[str]:
    cls = get_backend_class(spec.backend.name)
    options = cls.Options.model_validate(spec.backend_options()).model_dump(mode="json")
    given = {"name"} | set(spec.backend_options())
    return _section(
        "backend", spec.backend, values={"name": spec.backend.name, **options}, given=given
    )


def _train_section(spec: ExperimentSpec) -> list[str]:
    unused = {}
    if spec.train.steps is not None:
        # Writing epochs out as well would give both budgets, which a config may not.
        unused[("train", "epochs")] = "the budget is steps"
    return _section("train", spec.train, unused=unused)


def _eval_section(spec: ExperimentSpec, corpus: Corpus) -> list[str]:
    if spec.eval.test_size is not None:
        return _section("eval", spec.eval)
    size = resolve_test_size(corpus, spec)
    k = corpus.n_classes
    smallest = int(corpus.test.class_counts(k).min())
    # A comment, not a key: an explicit test_size is a different experiment (fingerprint) from
    # the automatic one, even where both draw the same sample.
    return [
        "",
        "[eval]",
        f"# test_size: not set, so {size:,} = the largest class-balanced sample up to "
        f"{DEFAULT_TEST_SIZE_CAP:,} (min({DEFAULT_TEST_SIZE_CAP:,}, {k} classes × {smallest:,} in "
        f"the smallest class of the test split), rounded down to a multiple of {k})",
    ]


def _run_section(spec: ExperimentSpec) -> list[str]:
    values = spec.run.model_dump(mode="json")
    given = spec.run.model_fields_set
    notes = {}
    if values["cache_dir"] is None:
        values["cache_dir"] = str(default_cache_dir(spec))
        notes["cache_dir"] = "$NOISEGRID_CACHE, else ~/.cache/noisegrid"
    return _section("run", spec.run, values=values, given=given, notes=notes)


def _line(key: str, value: Any, *, default: bool, note: str = "") -> str:
    comment = ", ".join(part for part in ("default" if default else "", note) if part)
    text = f"{_key(key)} = {toml_value(value)}"
    return f"{text}  # {comment}" if comment else text


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def toml_value(value: Any) -> str:
    """One value as a TOML literal (strings, numbers, booleans, arrays, inline tables).

    Examples
    --------
    >>> toml_value([0.0, 0.1]), toml_value({"cpu": 1.0}), toml_value("a\\"b"), toml_value(True)
    ('[0.0, 0.1]', '{cpu = 1.0}', '"a\\\\"b"', 'true')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


__all__ = ["explain_spec", "toml_value"]
