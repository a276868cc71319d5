"""Each runtime turns a real model file into a LoadedModel that predicts like the original."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_regression
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from inferx.inference.runtimes import FRAMEWORKS, load_model
from inferx.inference.runtimes.base import InputError, MissingExtra, ModelLoadError
from inferx.registry.safe_pickle import UnsafePickle, UntrustedTypes

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_REG, Y_REG = make_regression(60, 5, noise=0.1, random_state=0)
NAMES = np.array(["setosa", "versicolor", "virginica"])


@pytest.fixture(scope="module")
def logreg() -> LogisticRegression:
    return LogisticRegression(max_iter=500).fit(X_IRIS, Y_IRIS)


@pytest.fixture(scope="module")
def named_logreg() -> LogisticRegression:
    return LogisticRegression(max_iter=500).fit(X_IRIS, NAMES[Y_IRIS])


def _pickle(obj: Any, path: Path) -> str:
    path.write_bytes(pickle.dumps(obj))
    return str(path)


# --- sklearn -------------------------------------------------------------------------------


def test_sklearn_classifier(named_logreg: LogisticRegression, tmp_path: Path) -> None:
    model = load_model(_pickle(named_logreg, tmp_path / "m.pkl"), "sklearn")
    assert model.framework == "sklearn"
    assert model.output_kind == "classifier"
    assert model.classes == ["setosa", "versicolor", "virginica"]
    assert model.n_features == 4
    assert model.input_dtype == np.float64
    assert model.nbytes_estimate == (tmp_path / "m.pkl").stat().st_size
    np.testing.assert_array_equal(model.predict(X_IRIS), named_logreg.predict(X_IRIS))
    np.testing.assert_array_equal(model.predict_proba(X_IRIS), named_logreg.predict_proba(X_IRIS))
    # float32 and int input is cast; the answer does not change
    np.testing.assert_array_equal(
        model.predict(X_IRIS.astype(np.float32)),
        named_logreg.predict(X_IRIS.astype(np.float32).astype(np.float64)),
    )


def test_sklearn_regressor_and_clusterer(tmp_path: Path) -> None:
    regressor = load_model(_pickle(LinearRegression().fit(X_REG, Y_REG), tmp_path / "r"), "sklearn")
    assert regressor.output_kind == "regressor"
    assert regressor.classes is None
    assert regressor.predict_proba(X_REG) is None
    assert not regressor.has_predict_proba
    kmeans = KMeans(3, n_init=2, random_state=0).fit(X_IRIS)
    clusterer = load_model(_pickle(kmeans, tmp_path / "k"), "sklearn")
    assert clusterer.output_kind == "other"
    np.testing.assert_array_equal(clusterer.predict(X_IRIS), kmeans.predict(X_IRIS))


def test_sklearn_string_features_take_object_input(tmp_path: Path) -> None:
    X = np.array([["red", 1.0], ["blue", 2.5], ["red", -1.0], ["green", 0.0]] * 5, dtype=object)
    y = np.array([1, 0, 1, 0] * 5)
    pipe = make_pipeline(
        ColumnTransformer([("c", OneHotEncoder(), [0])], remainder=StandardScaler()),
        LogisticRegression(),
    ).fit(X, y)
    path = tmp_path / "pipe.joblib"
    joblib.dump(pipe, path, compress=3)
    model = load_model(str(path), "sklearn")
    assert model.input_dtype == np.dtype(object)
    assert model.feature_dtypes == ["string", "float"]
    np.testing.assert_array_equal(model.predict(X), pipe.predict(X))
    sample = model.sample_input(2)
    assert sample is not None and sample[0, 0] in {"blue", "green", "red"}


def test_inputs_of_the_wrong_shape(logreg: LogisticRegression, tmp_path: Path) -> None:
    model = load_model(_pickle(logreg, tmp_path / "m.pkl"), "sklearn")
    with pytest.raises(InputError, match="expected 4 features"):
        model.predict(X_IRIS[:, :3])
    with pytest.raises(InputError, match="2-D"):
        model.predict(X_IRIS[0])
    with pytest.raises(InputError, match="float64"):
        model.predict(np.array([["a", "b", "c", "d"]]))


def test_sklearn_refuses_unsafe_pickles_and_non_models(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pwned",))

    with pytest.raises(UnsafePickle, match=r"builtins\.print"):
        load_model(_pickle(Evil(), tmp_path / "e.pkl"), "sklearn")
    with pytest.raises(ModelLoadError, match="not a model with a predict"):
        load_model(_pickle({"weights": [1, 2]}, tmp_path / "d.pkl"), "sklearn")
    with pytest.raises(ModelLoadError, match="unknown framework"):
        load_model(str(tmp_path / "d.pkl"), "tensorflow")
    assert set(FRAMEWORKS) == {"sklearn", "skops", "onnx", "xgboost", "lightgbm", "torchscript"}


# --- skops ---------------------------------------------------------------------------------


def test_skops_loads_with_our_allow_list(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    gbr = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(X_REG, Y_REG)
    sio.dump(gbr, tmp_path / "gbr.skops")
    # skops itself does not trust sklearn's Tree; our allow-list does.
    assert sio.get_untrusted_types(file=tmp_path / "gbr.skops") == ["sklearn.tree._tree.Tree"]
    model = load_model(str(tmp_path / "gbr.skops"), "skops")
    assert (model.framework, model.library, model.output_kind) == ("skops", "skops", "regressor")
    np.testing.assert_array_equal(model.predict(X_REG), gbr.predict(X_REG))


def test_skops_refuses_types_outside_the_allow_list(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    from sklearn.preprocessing import FunctionTransformer

    sneaky = make_pipeline(FunctionTransformer(np.clip), LinearRegression())
    sio.dump(sneaky, tmp_path / "m.skops")
    with pytest.raises(UntrustedTypes) as info:
        load_model(str(tmp_path / "m.skops"), "skops")
    assert any("clip" in name for name in info.value.types)
    assert isinstance(info.value, UnsafePickle)


# --- ONNX ----------------------------------------------------------------------------------


def _to_onnx(model: Any, X: np.ndarray, path: Path, options: dict[Any, Any] | None = None) -> str:
    skl2onnx = pytest.importorskip("skl2onnx")
    proto = skl2onnx.to_onnx(model, X[:1].astype(np.float32), options=options)
    path.write_bytes(proto.SerializeToString())
    return str(path)


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_classifier(logreg: LogisticRegression, tmp_path: Path, zipmap: bool) -> None:
    options = None if zipmap else {id(logreg): {"zipmap": False}}
    model = load_model(_to_onnx(logreg, X_IRIS, tmp_path / "m.onnx", options), "onnx")
    assert (model.output_kind, model.classes, model.n_features) == ("classifier", [0, 1, 2], 4)
    assert model.input_dtype == np.float32
    np.testing.assert_array_equal(model.predict(X_IRIS), logreg.predict(X_IRIS))
    proba = model.predict_proba(X_IRIS)
    assert proba is not None and proba.shape == (150, 3)
    np.testing.assert_allclose(proba, logreg.predict_proba(X_IRIS), atol=1e-5)


def test_onnx_string_labels_and_regressor(named_logreg: LogisticRegression, tmp_path: Path) -> None:
    model = load_model(_to_onnx(named_logreg, X_IRIS, tmp_path / "c.onnx"), "onnx")
    assert model.classes == ["setosa", "versicolor", "virginica"]
    np.testing.assert_array_equal(model.predict(X_IRIS), named_logreg.predict(X_IRIS))
    linreg = LinearRegression().fit(X_REG, Y_REG)
    regressor = load_model(_to_onnx(linreg, X_REG, tmp_path / "r.onnx"), "onnx")
    assert regressor.output_kind == "regressor" and regressor.predict_proba(X_REG) is None
    prediction = regressor.predict(X_REG)
    assert prediction.shape == (60,)
    np.testing.assert_allclose(prediction, linreg.predict(X_REG), rtol=1e-3, atol=1e-2)
    assert regressor.describe()["inputs"] == [
        {"name": "X", "shape": [None, 5], "type": "tensor(float)"}
    ]


def _graph_model(onnx: Any, nodes: list[Any], inputs: list[Any], initializers: list[Any]) -> Any:
    helper = onnx.helper
    output = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph(nodes, "g", inputs, [output], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_multiple_named_inputs(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    inputs = [
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None, 1])
        for name in ("height", "width")
    ]
    proto = _graph_model(
        onnx, [onnx.helper.make_node("Mul", ["height", "width"], ["y"])], inputs, []
    )
    onnx.save_model(proto, tmp_path / "area.onnx")
    model = load_model(str(tmp_path / "area.onnx"), "onnx")
    assert model.feature_names == ["height", "width"] and model.n_features == 2
    np.testing.assert_allclose(model.predict(np.array([[2.0, 3.0], [4.0, 0.5]])), [6.0, 2.0])


def test_onnx_external_data_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 1])
    weight = onnx.numpy_helper.from_array(np.ones((1, 1), dtype=np.float32), "w")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    proto = _graph_model(onnx, [onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [weight])
    (tmp_path / "m.onnx").write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match=r"external data.*\.\./\.\./etc/passwd"):
        load_model(str(tmp_path / "m.onnx"), "onnx")


def test_onnx_custom_operators_are_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 1])
    node = onnx.helper.make_node("Pwn", ["x"], ["y"], domain="evil.ops")
    proto = _graph_model(onnx, [node], [x], [])
    (tmp_path / "m.onnx").write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match=r"custom ONNX operator evil\.ops\.Pwn"):
        load_model(str(tmp_path / "m.onnx"), "onnx")


def test_missing_extra_names_the_extra(
    logreg: LogisticRegression, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _to_onnx(logreg, X_IRIS, tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtra) as info:
        load_model(path, "onnx")
    assert info.value.extra == "onnx"
    assert "install inferx[onnx]" in str(info.value)


# --- XGBoost and LightGBM ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["json", "ubj"])
@pytest.mark.parametrize("classes", [2, 3])
def test_xgboost_classifier(tmp_path: Path, suffix: str, classes: int) -> None:
    xgb = pytest.importorskip("xgboost")
    y = Y_IRIS if classes == 3 else (Y_IRIS > 0).astype(int)
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X_IRIS, y)
    clf.save_model(tmp_path / f"m.{suffix}")
    model = load_model(str(tmp_path / f"m.{suffix}"), "xgboost")
    assert (model.output_kind, model.classes, model.n_features) == (
        "classifier",
        list(range(classes)),
        4,
    )
    np.testing.assert_array_equal(model.predict(X_IRIS), clf.predict(X_IRIS))
    np.testing.assert_allclose(model.predict_proba(X_IRIS), clf.predict_proba(X_IRIS), rtol=1e-6)


def test_xgboost_regressor_and_garbage(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    reg = xgb.XGBRegressor(n_estimators=5, n_jobs=1).fit(X_REG, Y_REG)
    reg.save_model(tmp_path / "r.json")
    model = load_model(str(tmp_path / "r.json"), "xgboost")
    assert model.output_kind == "regressor" and model.predict_proba(X_REG) is None
    np.testing.assert_allclose(model.predict(X_REG), reg.predict(X_REG), rtol=1e-6)
    (tmp_path / "bad.json").write_text('{"learner": 1}')
    with pytest.raises(ModelLoadError, match="XGBoost cannot load"):
        load_model(str(tmp_path / "bad.json"), "xgboost")


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_lightgbm(tmp_path: Path, task: str) -> None:
    lgb = pytest.importorskip("lightgbm")
    if task == "regression":
        X, estimator = X_REG, lgb.LGBMRegressor(n_estimators=5, min_child_samples=5, verbose=-1)
        y = Y_REG
    else:
        X, estimator = X_IRIS, lgb.LGBMClassifier(n_estimators=5, verbose=-1)
        y = Y_IRIS if task == "multiclass" else (Y_IRIS > 0).astype(int)
    estimator.fit(X, y)
    estimator.booster_.save_model(tmp_path / "m.txt")
    model = load_model(str(tmp_path / "m.txt"), "lightgbm")
    np.testing.assert_allclose(model.predict(X), estimator.predict(X), rtol=1e-9)
    assert model.n_features == X.shape[1] and model.feature_names is None
    if task == "regression":
        assert model.output_kind == "regressor" and model.predict_proba(X) is None
    else:
        assert model.output_kind == "classifier"
        np.testing.assert_allclose(model.predict_proba(X), estimator.predict_proba(X))


# --- TorchScript ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning")
def test_torchscript_classifier_with_metadata(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    meta = {"classes": ["a", "b", "c"], "output_kind": "classifier"}
    torch.jit.save(
        torch.jit.script(net),
        str(tmp_path / "m.pt"),
        _extra_files={"inferx.json": json.dumps(meta)},
    )
    model = load_model(str(tmp_path / "m.pt"), "torchscript")
    assert (model.n_features, model.output_kind, model.classes) == (
        4,
        "classifier",
        ["a", "b", "c"],
    )
    with torch.inference_mode():
        logits = net(torch.from_numpy(X_IRIS.astype(np.float32))).numpy()
    np.testing.assert_array_equal(
        model.predict(X_IRIS), np.array(["a", "b", "c"])[logits.argmax(1)]
    )
    proba = model.predict_proba(X_IRIS)
    assert proba is not None
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), logits.argmax(1))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_without_metadata_is_a_plain_function(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(5, 1))
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    model = load_model(str(tmp_path / "m.pt"), "torchscript")
    assert (model.n_features, model.output_kind, model.predict_proba(X_REG)) == (5, "other", None)
    with torch.inference_mode():
        expected = net(torch.from_numpy(X_REG.astype(np.float32))).numpy()
    np.testing.assert_allclose(model.predict(X_REG), expected, rtol=1e-6)
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ModelLoadError):
        load_model(str(tmp_path / "weights.pt"), "torchscript")
