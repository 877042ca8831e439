"""The resolved experiment, every default filled in, as TOML (``noisegrid validate --explain``).

A config file says only what its author changed; this module writes out everything a run will use:
each section's keys, the backend's and noise models' options, paths made absolute, and the values
that depend on the data (``[eval] test_size`` when it is left out). Keys the file sets are written
as keys; every default is written too, commented out with its value (``# C = 4.0  # default``), so
the output is itself an experiment file with the same fingerprint as the spec it explains, and
uncommenting a line pins that value. Optional keys left unset say what their absence means, and
``[train]`` settings the backend does not read are named as such.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from typing import Any

from .backends import get_backend_class
from .config import DEFAULT_TEST_SIZE_CAP, ExperimentSpec
from .data import Corpus, resolve_test_size
from .noise import get_noise_model_class

_UNSET_MEANS = {
    ("train", "steps"): "the budget is epochs",
    ("train", "max_length"): "the model's maximum length",
    ("run", "address"): "the ray executor starts a private instance on this machine",
    ("dataset", "config_name"): "the dataset's default configuration",
}


def explain_spec(spec: ExperimentSpec, corpus: Corpus) -> str:
    """The spec as TOML with every default shown and data-dependent values resolved.

    Parameters
    ----------
    spec : ExperimentSpec
        A validated spec (after ``--set`` and ``--store``).
    corpus : Corpus
        The spec's loaded corpus: it decides the automatic ``[eval] test_size``.

    Returns
    -------
    str
        TOML text. Loaded as a config, it is the same experiment (same fingerprint).
    """
    lines: list[str] = []
    for key in ("name", "description"):
        value = getattr(spec, key)
        if value is not None:
            lines.append(_line(key, value, given=key in spec.model_fields_set))
    dataset = spec.dataset
    lines += _section("dataset", dataset.model_dump(mode="json"), dataset.model_fields_set)
    grid = spec.grid.model_dump(mode="json")
    grid.pop("repeats", None)  # already expanded into seeds
    lines += _section("grid", grid, spec.grid.model_fields_set - {"repeats"} | _repeats(spec))
    lines += _noise_section(spec)
    lines += _backend_section(spec)
    lines += _train_section(spec)
    lines += _eval_section(spec, corpus)
    lines += _run_section(spec)
    if spec.track is not None:
        track = spec.track
        unset = {"uri": "$MLFLOW_TRACKING_URI, else mlflow.db beside the store"}
        unset["experiment"] = "the spec's name, else noisegrid"
        lines += _section(
            "track", track.model_dump(mode="json"), track.model_fields_set, unset_means=unset
        )
    return "\n".join(lines).strip() + "\n"


def _repeats(spec: ExperimentSpec) -> set[str]:
    # ``repeats = 3`` sets the seeds: write them as given, so the output pins the same seeds.
    return {"seeds"} if spec.grid.repeats is not None else set()


def _section(
    name: str,
    values: Mapping[str, Any],
    given: Collection[str],
    *,
    notes: Mapping[str, str] | None = None,
    unset_means: Mapping[str, str] | None = None,
) -> list[str]:
    notes = notes or {}
    unset_means = unset_means or {}
    out = ["", f"[{name}]"]
    for key, value in values.items():
        if value is None:
            meaning = unset_means.get(key, _UNSET_MEANS.get((name, key), ""))
            out.append(f"# {key}: not set" + (f" ({meaning})" if meaning else ""))
            continue
        out.append(_line(key, value, given=key in given, note=notes.get(key, "")))
    return out


def _noise_section(spec: ExperimentSpec) -> list[str]:
    values: dict[str, Any] = {}
    readers: dict[str, list[str]] = {}
    options = spec.noise.options()
    for model in spec.grid.noise_models:
        cls = get_noise_model_class(model).Options
        # The model's options as the run sees them: the given keys, the rest at their defaults.
        resolved = cls.model_validate(
            {k: v for k, v in options.items() if k in cls.model_fields}
        ).model_dump(mode="json")
        for key, value in resolved.items():
            values.setdefault(key, value)
            readers.setdefault(key, []).append(model)
    notes = {}
    if len(spec.grid.noise_models) > 1:
        notes = {key: "read by " + ", ".join(models) for key, models in readers.items()}
    out = _section("noise", values, set(options), notes=notes)
    if not values:
        out.append(f"# noise model {', '.join(spec.grid.noise_models)} reads no options")
    return out


def _backend_section(spec: ExperimentSpec) -> list[str]:
    cls = get_backend_class(spec.backend.name)
    options = cls.Options.model_validate(spec.backend_options()).model_dump(mode="json")
    values = {"name": spec.backend.name, **options}
    return _section("backend", values, {"name", *spec.backend_options()})


def _train_section(spec: ExperimentSpec) -> list[str]:
    used = set(spec.used_train())
    given = spec.train.model_fields_set
    backend = spec.backend.name
    values = spec.train.model_dump(mode="json")
    unset_means = {}
    if spec.train.steps is not None:
        # Writing epochs out as well would give both budgets, which a config may not.
        values["epochs"] = None
        unset_means["epochs"] = "the budget is steps"
    out = ["", "[train]"]
    ignored = [k for k in values if k not in used and k not in given]
    shown = {k: v for k, v in values.items() if k in used or k in given}
    notes = {k: f"backend '{backend}' does not read it" for k in shown if k not in used}
    out += _section("train", shown, given, notes=notes, unset_means=unset_means)[2:]
    if ignored:
        out.append(f"# backend '{backend}' does not read: {', '.join(ignored)}")
    return out


def _eval_section(spec: ExperimentSpec, corpus: Corpus) -> list[str]:
    if spec.eval.test_size is not None:
        return _section("eval", spec.eval.model_dump(mode="json"), spec.eval.model_fields_set)
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
    notes = {}
    if values["cache_dir"] is None:
        values["cache_dir"] = str(spec.run.cache_path())
        notes["cache_dir"] = "$NOISEGRID_CACHE, else ~/.cache/noisegrid"
    return _section("run", values, spec.run.model_fields_set, notes=notes)


def _line(key: str, value: Any, *, given: bool, note: str = "") -> str:
    text = f"{_key(key)} = {toml_value(value)}"
    if given:
        return f"{text}  # {note}" if note else text
    return f"# {text}  # default" + (f", {note}" if note else "")


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
