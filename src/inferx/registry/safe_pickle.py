"""Load pickle and joblib files while constructing only allow-listed globals.

A pickle is a program: every global it names is imported and may be called. This loader
refuses any global outside a short allow-list (classes of the ML libraries, numpy's array
plumbing, a few builtin types) when the pickle names it, before anything is called, which is
the approach skops takes for its own format. It subclasses the pure-Python
``pickle._Unpickler`` (as joblib does) rather than the C one, because it also hooks BUILD,
the constructor opcodes and the allocating opcodes, and reads joblib's numpy arrays that
follow their wrapper inline in the stream without ever calling joblib's own loader.
"""

from __future__ import annotations

import _compat_pickle
import bz2
import gzip
import importlib
import importlib.util
import inspect
import io
import lzma
import math
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import IO, Any, cast

import numpy as np

from inferx.inference.runtimes.base import MissingExtra, ModelLoadError

MAX_DECOMPRESSED_BYTES = 2 << 30
MAX_COMPRESSION_RATIO = 100
MIN_DECOMPRESSED_LIMIT = 64 << 20
MAX_CALL_SIZE = 1 << 26  # largest count a builtin constructor may be asked to allocate
_CHUNK = 1 << 20


class UnsafePickle(ModelLoadError):
    """The file names a global outside the allow-list; nothing from it was run."""

    kind = "unsafe_pickle"

    def __init__(self, global_name: str, reason: str = "not an allowed model class") -> None:
        super().__init__(f"refused {global_name}: {reason}")
        self.global_name = global_name


class UntrustedTypes(UnsafePickle):
    """A skops file needs types outside the allow-list; the client can never widen it."""

    def __init__(self, types: list[str]) -> None:
        super().__init__(types[0], "not an allowed model class")
        self.types = types
        self.detail = f"refused untrusted types: {', '.join(types)}"
        self.args = (self.detail,)


class PickleBomb(ModelLoadError):
    """The file asks for far more memory than its size justifies."""


class _ArrayWrapper:
    """Stands in for joblib's NumpyArrayWrapper: its BUILD state describes the next array."""


def _latin1_encode(obj: object, encoding: str = "latin1", errors: str = "strict") -> bytes:
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(text, "latin1").
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickle(f"_codecs.encode(..., {encoding!r})", "only latin1 text is allowed")
    return obj.encode("latin1", errors)


def _ufunc_reconstruct(module: object, name: object) -> np.ufunc:
    # numpy's own version imports any module the pickle names; this one only looks in numpy.
    ufunc = getattr(np, name, None) if isinstance(name, str) else None
    allowed_module = isinstance(module, str) and module.split(".")[0] == "numpy"
    if not allowed_module or not isinstance(ufunc, np.ufunc):
        raise UnsafePickle(f"{module}.{name}", "not a numpy ufunc")
    return ufunc


_SUBSTITUTES: dict[str, object] = {
    "_codecs.encode": _latin1_encode,
    "numpy._core._ufunc_reconstruct": _ufunc_reconstruct,
    "joblib.numpy_pickle.NumpyArrayWrapper": _ArrayWrapper,
}

_SAFE_BUILTINS = frozenset(
    [
        "bool",
        "int",
        "float",
        "complex",
        "str",
        "bytes",
        "bytearray",
        "list",
        "tuple",
        "set",
        "frozenset",
        "dict",
        "slice",
        "range",
    ]
)

_EXACT = frozenset(
    {
        "numpy.ndarray",
        "numpy.dtype",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy._core.numeric._frombuffer",
        "numpy.ma.MaskedArray",
        "numpy.ma.core.MaskedArray",
        "numpy.ma.core._mareconstruct",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random._pcg64.PCG64DXSM",
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
        "numpy.random.bit_generator.SeedSequence",
        "collections.OrderedDict",
        "collections.defaultdict",
        # Cython trees pickle through a module-level `newObj(cls) -> cls.__new__(cls)`.
        "sklearn.neighbors._kd_tree.newObj",
        "sklearn.neighbors._ball_tree.newObj",
        "sklearn.metrics._dist_metrics.newObj",
        "xgboost.core.Booster",
        "lightgbm.basic.Booster",
    }
)

# Parts of sklearn that hold test helpers, vendored code, data loaders or process pools.
_SKLEARN_EXCLUDED_PARTS = frozenset(
    [
        "tests",
        "conftest",
        "externals",
        "datasets",
        "experimental",
        "_build_utils",
        "_testing",
        "_mocking",
        "_show_versions",
        "parallel",
        "_joblib",
    ]
)

# Never importable from a model file, even when an operator lists them in extra_allowed.
_DENIED_ROOTS = frozenset(
    [
        "os",
        "posix",
        "nt",
        "subprocess",
        "sys",
        "importlib",
        "pickle",
        "_pickle",
        "marshal",
        "shutil",
        "socket",
        "ctypes",
        "types",
        "runpy",
        "code",
        "codeop",
        "pty",
        "functools",
        "operator",
        "_operator",
        "io",
        "_io",
        "pathlib",
        "tempfile",
        "multiprocessing",
        "threading",
        "_thread",
        "signal",
        "webbrowser",
        "http",
        "urllib",
        "asyncio",
        "inspect",
        "gc",
        "cloudpickle",
        "dill",
        "joblib",
        "_posixsubprocess",
        "posixpath",
        "ntpath",
        "glob",
        "builtins",
    ]
)


# numpy functions that touch files (np.load can even unpickle): never, whatever the operator says.
_DENIED_NAMES = frozenset(
    ["numpy.load", "numpy.save", "numpy.fromfile", "numpy.memmap", "numpy.loadtxt"]
    + ["numpy.savetxt", "numpy.genfromtxt", "numpy.savez", "numpy.DataSource"]
)


def _normalise(module: str, name: str, proto: int) -> tuple[str, str]:
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    if module == "numpy.core" or module.startswith("numpy.core."):
        module = "numpy._core" + module[len("numpy.core") :]
    return module, name


def _import_attr(module: str, name: str) -> Any:
    candidates = [module]
    if module.startswith("numpy._core"):  # numpy 1.x keeps these under numpy.core
        candidates.append("numpy.core" + module[len("numpy._core") :])
    for candidate in candidates:
        try:
            mod = importlib.import_module(candidate)
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    root = module.split(".")[0]
    if root in ("xgboost", "lightgbm") and importlib.util.find_spec(root) is None:
        raise MissingExtra(root)
    raise ModelLoadError(
        f"{module}.{name} cannot be found: the model was saved with a different library version"
    )


def _is_identifier_path(module: str) -> bool:
    return all(part.isidentifier() and not part.startswith("__") for part in module.split("."))


def _sparse_class(obj: Any) -> bool:
    import scipy.sparse

    return inspect.isclass(obj) and issubclass(obj, scipy.sparse.spmatrix | scipy.sparse.sparray)


def _rule(module: str) -> Callable[[Any], bool] | None:
    """The check an object imported from `module` must pass, or None if nothing there is."""
    parts = set(module.split("."))
    if module.split(".")[0] == "sklearn" and not parts & _SKLEARN_EXCLUDED_PARTS:
        return lambda obj: inspect.isclass(obj) and obj.__module__.startswith("sklearn.")
    if module in ("xgboost.sklearn", "lightgbm.sklearn"):
        return lambda obj: inspect.isclass(obj) and obj.__module__ == module
    if module.startswith("scipy.sparse.") and not parts & {"linalg", "csgraph", "tests"}:
        return _sparse_class
    if module == "numpy":
        return lambda obj: (
            isinstance(obj, np.ufunc) or (inspect.isclass(obj) and issubclass(obj, np.generic))
        )
    if module == "numpy.dtypes":
        return lambda obj: inspect.isclass(obj) and issubclass(obj, np.dtype)
    return None


def _denied(module: str, name: str) -> bool:
    if f"{module}.{name}" in _DENIED_NAMES:
        return True
    root = module.split(".")[0]
    if root == "builtins":
        return name not in _SAFE_BUILTINS
    return root in _DENIED_ROOTS


def resolve_global(module: str, name: str, extra_allowed: Iterable[str] = ()) -> Any:
    """The object `module.name` if a model file may use it, else raise UnsafePickle."""
    full = f"{module}.{name}"
    if full in _SUBSTITUTES:
        return _SUBSTITUTES[full]
    if full in _EXACT:
        return _import_attr(module, name)
    if not (name.isidentifier() and not name.startswith("__") and _is_identifier_path(module)):
        raise UnsafePickle(full)
    if module == "builtins":
        if name in _SAFE_BUILTINS:
            return _import_attr(module, name)
        raise UnsafePickle(full)
    if full in extra_allowed and not _denied(module, name):
        return _import_attr(module, name)
    check = _rule(module)
    if check is None:
        raise UnsafePickle(full)
    obj = _import_attr(module, name)
    if not check(obj):
        raise UnsafePickle(full, "only classes (not functions) may be loaded from this library")
    return obj


def is_allowed_global(qualname: str, extra_allowed: Iterable[str] = ()) -> bool:
    """Whether a "module.Name" string passes the same allow-list as pickles (used for skops)."""
    module, _, name = qualname.rpartition(".")
    if not module:
        return False
    try:
        resolve_global(*_normalise(module, name, pickle.HIGHEST_PROTOCOL), frozenset(extra_allowed))
    except ModelLoadError:
        return False
    return True


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


_SIZED_TYPES = (bytes, bytearray, str, list, tuple, set, frozenset, dict, np.void)


def _count(value: Any) -> int:
    if isinstance(value, range):
        return abs(value.stop - value.start) // max(abs(value.step), 1)
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and all(isinstance(n, int) for n in value):
        return math.prod(value)
    return 0


def _guard_call(func: Any, args: tuple[Any, ...]) -> None:
    """Refuse constructors asked to allocate far more than any model needs (pickle bombs)."""
    if isinstance(func, type) and issubclass(func, _SIZED_TYPES):
        sizes = [_count(arg) for arg in args]
    elif func is np.ndarray:
        sizes = [_count(args[0])] if args else []
    elif getattr(func, "__name__", None) == "_reconstruct" and func is _import_attr(
        "numpy._core.multiarray", "_reconstruct"
    ):
        sizes = [_count(args[1])] if len(args) > 1 else []
    else:
        return
    if any(size > MAX_CALL_SIZE for size in sizes):
        raise PickleBomb(f"{_qualname(func)}{args!r:.80} asks for too much memory")


# The pure-Python unpickler: its opcode handlers can be replaced one by one.
_PyUnpickler: Any = pickle._Unpickler  # type: ignore[attr-defined]


class _SafeUnpickler(_PyUnpickler):
    dispatch = _PyUnpickler.dispatch.copy()

    def __init__(self, stream: io.BytesIO, size: int, extra_allowed: frozenset[str]) -> None:
        super().__init__(stream)
        self._stream = stream
        self._size = size
        self._extra_allowed = extra_allowed

    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise UnsafePickle(f"{module!r}.{name!r}", "global names must be strings")
        return resolve_global(*_normalise(module, name, self.proto), self._extra_allowed)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle(f"persistent id {pid!r}", "persistent ids are not supported")

    def _instantiate(self, klass: Any, args: tuple[Any, ...]) -> None:
        _guard_call(klass, args)
        super()._instantiate(klass, args)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        _guard_call(func, args)
        self.stack[-1] = func(*args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        _guard_call(cls, args)
        self.append(cls.__new__(cls, *args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        _guard_call(cls, args)
        self.append(cls.__new__(cls, *args, **kwargs))

    def load_bytearray8(self) -> None:
        (length,) = struct.unpack("<Q", self.read(8))
        if length > self._size:
            raise PickleBomb(f"a {length}-byte array in a {self._size}-byte file")
        buffer = bytearray(length)
        self.readinto(buffer)
        self.append(buffer)

    def load_build(self) -> None:
        inst = self.stack[-2]
        if isinstance(inst, _ArrayWrapper):
            state = self.stack.pop()
            self.stack[-1] = self._read_joblib_array(state)
            return
        if isinstance(
            inst, type | ModuleType | FunctionType | BuiltinFunctionType | MethodType | np.ufunc
        ):
            # Setting "state" on a class would monkey-patch it for every model in the process.
            raise UnsafePickle(_qualname(inst), "a model file may not change a class or function")
        super().load_build()

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8
    dispatch[pickle.BUILD[0]] = load_build

    def remaining(self) -> int:
        return self._size - self._stream.tell()

    def _read_joblib_array(self, state: Any) -> np.ndarray:
        """Read the array joblib wrote right after its wrapper (joblib's own format)."""
        if not isinstance(state, dict):
            raise ModelLoadError("malformed joblib array header")
        dtype, shape, order = state.get("dtype"), state.get("shape"), state.get("order", "C")
        if not isinstance(shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise ModelLoadError("malformed joblib array header")
        if not isinstance(dtype, np.dtype) or order not in ("C", "F"):
            raise ModelLoadError("malformed joblib array header")
        if dtype.hasobject:
            # Object arrays are a nested pickle; it goes through this same allow-list.
            nested = _SafeUnpickler(self._stream, self._size, self._extra_allowed).load()
            if not isinstance(nested, np.ndarray):
                raise ModelLoadError("malformed joblib object array")
            return nested
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self._stream.read(1)
            self._stream.read(padding[0] if padding else 0)
        count = math.prod(shape)
        if count * dtype.itemsize > self.remaining():
            raise PickleBomb("a joblib array is larger than the rest of the file")
        buffer = bytearray(count * dtype.itemsize)
        self._stream.readinto(buffer)
        flat = np.frombuffer(buffer, dtype=dtype) if buffer else np.empty(count, dtype=dtype)
        array = flat.reshape(shape[::-1]).T if order == "F" else flat.reshape(shape)
        if not dtype.isnative:
            array = array.byteswap().view(dtype.newbyteorder("="))
        return np.asmatrix(array) if state.get("subclass") is np.matrix else array


def compression_of(head: bytes) -> str | None:
    """Which compressor (as joblib writes them) produced a stream starting with `head`."""
    if head.startswith(b"ZF"):
        return "joblib-legacy"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    prefixes = {
        b"\x1f\x8b": "gzip",
        b"BZh": "bz2",
        b"\xfd7zXZ\x00": "xz",
        b"\x5d\x00\x00": "lzma",
        b"\x04\x22\x4d\x18": "lz4",
    }
    return next((method for magic, method in prefixes.items() if head.startswith(magic)), None)


class _ZlibReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._inflater = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = _CHUNK if size is None or size < 0 else size
        out = bytearray()
        while len(out) < size and not self._inflater.eof:
            data = self._inflater.unconsumed_tail or self._raw.read(_CHUNK)
            if not data:
                out += self._inflater.flush()
                break
            out += self._inflater.decompress(data, size - len(out))
        return bytes(out)


def open_decompressed(raw: IO[bytes], method: str) -> IO[bytes]:
    """A reader of the decompressed stream (nothing is inflated until it is read)."""
    if method == "zlib":
        return _ZlibReader(raw)  # type: ignore[return-value]
    if method == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if method == "bz2":
        return cast(IO[bytes], bz2.BZ2File(raw))
    if method in ("xz", "lzma"):
        fmt = lzma.FORMAT_XZ if method == "xz" else lzma.FORMAT_ALONE
        return cast(IO[bytes], lzma.LZMAFile(raw, format=fmt))
    if method == "lz4":
        try:
            import lz4.frame  # type: ignore[import-not-found]
        except ImportError as exc:
            raise MissingExtra("lz4") from exc
        return lz4.frame.LZ4FrameFile(raw)  # type: ignore[no-any-return]
    raise ModelLoadError(f"unsupported compression: {method} (re-save with joblib >= 0.10)")


def _inflate(data: bytes, method: str) -> bytes:
    limit = min(
        MAX_DECOMPRESSED_BYTES, max(MIN_DECOMPRESSED_LIMIT, MAX_COMPRESSION_RATIO * len(data))
    )
    out = bytearray()
    try:
        with open_decompressed(io.BytesIO(data), method) as reader:
            while chunk := reader.read(_CHUNK):
                out += chunk
                if len(out) > limit:
                    raise PickleBomb(f"the file inflates to more than {limit} bytes")
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ModelLoadError(f"corrupt {method} stream: {exc}") from exc
    return bytes(out)


def read_pickle_bytes(source: str | os.PathLike[str] | IO[bytes] | bytes) -> bytes:
    """The raw pickle stream of a pickle or joblib file, decompressed if joblib compressed it."""
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, str | os.PathLike):
        data = Path(source).read_bytes()
    else:
        data = source.read()
    method = compression_of(data[:8])
    return _inflate(data, method) if method else data


def safe_loads(data: bytes, extra_allowed: Iterable[str] = ()) -> object:
    """Unpickle an (uncompressed) pickle or joblib stream with the allow-list."""
    unpickler = _SafeUnpickler(io.BytesIO(data), len(data), frozenset(extra_allowed))
    try:
        obj = unpickler.load()
    except ModelLoadError:
        raise
    except (MemoryError, RecursionError) as exc:
        raise PickleBomb(f"loading the pickle exhausted resources: {type(exc).__name__}") from exc
    except Exception as exc:
        raise ModelLoadError(
            f"the pickle could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    if unpickler.remaining():
        raise ModelLoadError(f"{unpickler.remaining()} unexpected bytes after the pickle's end")
    return obj


def safe_load(
    fileobj_or_path: str | os.PathLike[str] | IO[bytes], extra_allowed: Iterable[str] = ()
) -> object:
    """Load a pickle or joblib file (plain or zlib/gzip/bz2/lzma/xz-compressed) safely.

    Raises UnsafePickle naming the first global outside the allow-list, before it is called.
    """
    return safe_loads(read_pickle_bytes(fileobj_or_path), extra_allowed)
