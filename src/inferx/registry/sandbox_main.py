"""Entry point run inside the validation sandbox: sniff the format, load, describe, predict.

``python -m inferx.registry.sandbox_main PATH FILENAME|- DECLARED|- ALLOW_JSON ALLOW_PICKLE``
prints one JSON line: ``{"ok": true, "framework": ..., "metadata": {...}}`` or
``{"ok": false, "kind": ..., "detail": ..., "global": ...}``. Runs with no secrets, rlimits
and no network (see inferx.kit.sandbox); the API process never loads the file itself.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _fail(kind: str, detail: str, **extra: Any) -> int:
    sys.stdout.write(
        json.dumps({"ok": False, "kind": kind, "detail": detail[:2000], **extra}) + "\n"
    )
    return 2


def main(argv: list[str]) -> int:
    path, filename, declared, allow_json, allow_pickle = argv
    from inferx.inference.runtimes.base import MissingExtra, ModelLoadError
    from inferx.registry.detect import UnsupportedModelFile, detect_framework
    from inferx.registry.inspect import infer_input_schema, inspect_model
    from inferx.registry.safe_pickle import UnsafePickle

    try:
        framework = detect_framework(
            path, None if filename == "-" else filename, None if declared == "-" else declared
        )
    except UnsupportedModelFile as exc:
        return _fail("unsupported", str(exc))
    if framework == "sklearn" and allow_pickle != "1":
        return _fail("pickle_disabled", "Pickle/joblib uploads are turned off on this server.")
    try:
        metadata = inspect_model(path, framework, extra_allowed=json.loads(allow_json))
    except UnsafePickle as exc:
        return _fail("unsafe_pickle", str(exc), **{"global": getattr(exc, "global_name", None)})
    except MissingExtra as exc:
        return _fail("missing_extra", str(exc), extra=getattr(exc, "extra", None))
    except ModelLoadError as exc:
        return _fail("load_error", str(exc))
    except Exception as exc:  # anything the model's own code raised while loading or predicting
        return _fail("load_error", f"{type(exc).__name__}: {exc}")
    metadata["input_schema"] = infer_input_schema(metadata)
    sys.stdout.write(
        json.dumps({"ok": True, "framework": framework, "metadata": metadata}, default=str) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
