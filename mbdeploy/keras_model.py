"""The Keras reference model, built from the layer plan and folded weights.

Every exporter's output is verified against this model. Layer names are the
Slim names, so a checkpoint variable, a Keras layer, a TFLite tensor and a
Core ML op line up.
"""

from __future__ import annotations

from mbdeploy.architecture import ModelSpec, layer_plan
from mbdeploy.weights import ModelWeights, check_shapes

RELU_CAP = 6.0  # Slim's MobileNet v1 uses ReLU6 after every conv but the classifier


def build_keras_model(spec: ModelSpec, weights: ModelWeights):
    from mbdeploy.tf_runtime import import_tensorflow

    import_tensorflow()
    import keras

    check_shapes(weights, spec, weights.details.get("file", weights.source))
    inputs = keras.Input((spec.resolution, spec.resolution, 3), batch_size=1, name="input")
    x = inputs
    for layer in layer_plan(spec):
        kernel, bias = weights.layers[layer.name]
        if layer.kind == "logits":
            x = keras.layers.AveragePooling2D(pool_size=x.shape[1], padding="valid", name="AvgPool_1a")(x)
            conv = keras.layers.Conv2D(layer.out_channels, 1, name="Logits")
        elif layer.kind == "depthwise":
            conv = keras.layers.DepthwiseConv2D(layer.kernel, layer.stride, padding="same", name=layer.name)
        else:
            conv = keras.layers.Conv2D(layer.out_channels, layer.kernel, layer.stride, padding="same", name=layer.name)
        x = conv(x)
        conv.set_weights([kernel, bias])
        if layer.kind != "logits":
            x = keras.layers.ReLU(RELU_CAP, name=f"{layer.name}_relu6")(x)
    x = keras.layers.Reshape((spec.classes,), name="SpatialSqueeze")(x)
    outputs = keras.layers.Softmax(name="Predictions")(x)
    return keras.Model(inputs, outputs, name=spec.name)
