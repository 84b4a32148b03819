"""ONNX export: fp32 and static QDQ int8, verified with onnxruntime; inspect; bad input.

(The official-weights check on the reference photos, ONNX fp32 included, is in
test_coreml.py, which converts both formats from one Keras reference.)
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx (the onnx extra) is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (the onnx extra) is not installed")

from support.cli import run_cli  # noqa: E402

from mbdeploy.accounting import model_cost  # noqa: E402
from mbdeploy.architecture import ModelSpec, layer_plan  # noqa: E402
from mbdeploy.convert import ConvertRequest, convert_model  # noqa: E402
from mbdeploy.errors import InvalidInput  # noqa: E402
from mbdeploy.inspection import inspect_model  # noqa: E402
from mbdeploy.numpy_ops import conv2d  # noqa: E402

SPEC = ModelSpec(0.25, 128)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """mobilenet_v1_0.25_128 as ONNX fp32 and int8 (random weights), converted once."""
    out = tmp_path_factory.mktemp("onnx")
    with pytest.warns(UserWarning, match="random weights"):
        return convert_model(ConvertRequest(0.25, 128, out_dir=out, formats=["onnx"]))


def artifact(result, precision: str) -> dict:
    return next(a for a in result.manifest["artifacts"] if a["precision"] == precision)


def path_of(result, precision: str):
    return result.manifest_path.parent / artifact(result, precision)["path"]


def test_default_precisions_are_fp32_and_int8(converted):
    assert sorted(a["precision"] for a in converted.manifest["artifacts"]) == ["fp32", "int8"]


def test_fp32_matches_keras(converted):
    verification = artifact(converted, "fp32")["verification"]
    assert verification["verifier"] == "onnxruntime"
    assert verification["passed"], verification["failures"]
    assert verification["max_abs_diff"] <= 1e-4


def test_int8_agrees_in_top1_and_cosine(converted):
    verification = artifact(converted, "int8")["verification"]
    assert verification["passed"], verification["failures"]
    assert verification["cosine"] >= 0.9 and verification["top1_agreement"] >= 0.6
    assert verification["max_abs_diff"] > 0  # really quantized
    assert artifact(converted, "int8")["bytes"] < artifact(converted, "fp32")["bytes"] / 3


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_inspect_agrees_with_the_analytic_count(converted, precision):
    report = inspect_model(path_of(converted, precision))
    cost = model_cost(SPEC)
    assert abs(report["macs"] - cost.macs) / cost.macs < 0.01
    assert abs(report["params"] - cost.params) / cost.params < 0.01
    assert [layer["name"] for layer in report["layers"]] == [layer.name for layer in layer_plan(SPEC)]
    assert [layer["type"] for layer in report["layers"]] == [layer.kind for layer in layer_plan(SPEC)]
    assert report["onnx"]["opset"] >= 17
    assert report["inputs"] == [{"name": "input", "shape": [1, 128, 128, 3], "dtype": "float32", "quantization": None}]
    assert report["outputs"][0]["shape"] == [1, 1001]
    assert report["ops"]["Conv"] == len(layer_plan(SPEC))
    if precision == "int8":
        assert report["ops"]["QuantizeLinear"] > 0 and report["ops"]["DequantizeLinear"] > len(layer_plan(SPEC))
    table2 = {row["kind"]: row["macs_percent"] for row in report["breakdown"]}
    assert max(table2, key=table2.get) == "pointwise"  # the paper's Table 2: 1x1 convs dominate


def test_same_padding_is_tensorflows():
    """Stride 2 on an even size pads only after (TensorFlow SAME), as the Keras reference does."""
    from mbdeploy.architecture import same_padding

    assert same_padding(128, 3, 2) == (0, 1)
    assert same_padding(127, 3, 2) == (1, 1)
    assert same_padding(8, 1, 1) == (0, 0)


def test_graph_pads_are_the_plans(converted):
    """Every Conv node carries its layer's padding from the plan (the plan owns the geometry)."""
    import onnx

    graph = onnx.load(str(path_of(converted, "fp32"))).graph
    pads = {node.name: list(next(a.ints for a in node.attribute if a.name == "pads"))
            for node in graph.node if node.op_type == "Conv"}
    assert pads == {layer.name: [layer.padding[0]] * 2 + [layer.padding[1]] * 2 for layer in layer_plan(SPEC)}


def test_first_layer_matches_numpy(converted):
    """The graph's Conv2d_0 (read back from the file) computes TensorFlow's conv: NHWC input, transposed inside."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(path_of(converted, "fp32")))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kernel = weights["Conv2d_0/weights"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
    bias = weights["Conv2d_0/biases"]
    # Make Conv2d_0's output a graph output and run the file's own graph.
    model.graph.output.append(helper.make_tensor_value_info("Conv2d_0", onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(3).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    ours = session.run(["Conv2d_0"], {"input": image})[0]
    expected = conv2d(image, kernel, bias, stride=2).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_unsupported_precision_is_rejected_before_any_work(tmp_path):
    out = tmp_path / "models"
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "onnx", "--precisions", "fp16",
                     "--out", out)
    assert result.returncode != 0
    assert "Error: precision 'fp16' is not supported for onnx; allowed: fp32, int8" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(out.rglob("*.onnx")) and not list(out.rglob("manifest.json"))


def test_inspect_of_a_file_that_is_not_onnx(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a protobuf at all")
    with pytest.raises(InvalidInput, match="not a readable ONNX model"):
        inspect_model(bogus)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_inspect_counts_gemm_macs_in_either_weight_layout(tmp_path, trans_b):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs, outputs = 256, 10
    weight = np.zeros((outputs, inputs) if trans_b else (inputs, outputs), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=trans_b)], "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(outputs, np.float32), "b")],
    )
    path = tmp_path / "fc.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    report = inspect_model(path)
    assert report["macs"] == inputs * outputs and report["params"] == inputs * outputs + outputs
