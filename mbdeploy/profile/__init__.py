"""`mbdeploy profile`: where the time goes, layer by layer, on any device.

    slicing.py     single-layer .tflite models cut out of an artifact, mapped to the plan's layers
    op_profile.py  an on-device op profile's node rows mapped to the plan's layers
    sweep.py       whole model and every layer on each device -> records in the run folder
"""
