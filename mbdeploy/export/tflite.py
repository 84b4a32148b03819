"""TFLite export (fp32, fp16, dynamic, int8); LiteRT, the host runtime that verification and eval share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mbdeploy.atomic import write_bytes
from mbdeploy.errors import ConversionError, MissingDependency
from mbdeploy.export import ExportJob, Predictor, predict_all
from mbdeploy.tf_runtime import import_tensorflow, native_output_silenced
from mbdeploy.verify import compare


def frozen_function(job: ExportJob):
    """The Keras model as a concrete function with its weights as constants."""
    tf = import_tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    resolution = job.spec.resolution
    signature = tf.TensorSpec([1, resolution, resolution, 3], tf.float32, name="input")
    function = tf.function(lambda x: job.keras_model(x, training=False)).get_concrete_function(signature)
    return convert_variables_to_constants_v2(function)


def converter_for(job: ExportJob, precision: str):
    tf = import_tensorflow()
    # Freezing first gives a plain constant graph: quicker to convert than
    # from_keras_model (which saves a SavedModel) and it prints nothing.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_function(job)])
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in job.calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


def export(job: ExportJob, precision: str, out_path: Path) -> None:
    import warnings

    converter = converter_for(job, precision)
    try:
        with warnings.catch_warnings(), native_output_silenced():
            warnings.simplefilter("ignore")  # the converter's own deprecation chatter
            flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and others
        raise ConversionError(f"TFLite {precision} conversion of {job.spec.name} failed: {exc}") from None
    write_bytes(out_path, flatbuffer)


def predictor(path: Path, threads: int | None = None) -> Predictor:
    """LiteRT on one float HWC image -> 1-D scores, (de)quantizing int8/uint8 I/O as its tensors say.

    `threads` None is LiteRT's own default; verification pins 1 for repeatable figures.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise MissingDependency("ai-edge-litert", "all") from None
    with native_output_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    sink = interpreter.get_output_details()[0]

    def predict(image: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source["index"], quantize(image[None], source))
        interpreter.invoke()
        return dequantize(interpreter.get_tensor(sink["index"]), sink)[0]

    return predict


def quantize(values: np.ndarray, details: dict) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return values.astype(dtype)
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    if np.dtype(details["dtype"]).kind == "f":
        return values.astype(np.float32)
    scale, zero_point = details["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def verify(job: ExportJob, precision: str, path: Path) -> dict:
    return compare("tflite", precision, predict_all(predictor(path, threads=1), job.probes), job.reference,
                   verifier="LiteRT")
