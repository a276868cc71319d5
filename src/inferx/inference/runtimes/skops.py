"""Estimators saved with ``skops.io.dump``, trusting only types our own allow-list accepts."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable
from pathlib import Path

from inferx.inference.runtimes.base import ModelLoadError, require
from inferx.inference.runtimes.sklearn import SklearnModel, from_estimator, saved_sklearn_version
from inferx.registry.detect import check_archive, check_skops_members
from inferx.registry.safe_pickle import UntrustedTypes, is_allowed_global


def load(path: str, *, extra_allowed: Iterable[str] = ()) -> SklearnModel:
    sio = require("skops.io", "skops")
    skops = require("skops", "skops")
    allowed = frozenset(extra_allowed)
    check_skops_members(path, check_archive(path))
    try:
        untrusted = list(sio.get_untrusted_types(file=path))
    except Exception as exc:  # skops raises assorted errors on malformed schemas
        raise ModelLoadError(f"not a loadable skops file: {exc}") from exc
    refused = [name for name in untrusted if not is_allowed_global(name, allowed)]
    if refused:
        raise UntrustedTypes(refused)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # The trusted list is computed here from the file and our allow-list, never taken
            # from the client.
            estimator = sio.load(path, trusted=untrusted)
    except Exception as exc:  # skops raises assorted errors on malformed content
        raise ModelLoadError(f"not a loadable skops file: {exc}") from exc
    model = from_estimator(
        estimator,
        framework="skops",
        nbytes=Path(path).stat().st_size,
        saved_with_version=saved_sklearn_version(caught),
    )
    return dataclasses.replace(model, library="skops", library_version=str(skops.__version__))
