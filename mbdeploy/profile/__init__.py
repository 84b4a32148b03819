"""`mbdeploy profile`: where the time goes, layer by layer, on any device.

    slicing.py     single-layer .tflite models cut out of an artifact, mapped to the plan's layers
    coreml_layers.py  single-layer .mlpackages from a Core ML artifact's own ops (fp32, fp16)
    op_profile.py  an on-device op profile's node rows mapped to the plan's layers
    sweep.py       whole model and every layer on each device -> records in the run folder
"""
