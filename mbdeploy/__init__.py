"""mbdeploy: MobileNet v1 from trained weights to measured numbers on devices.

Importing the package is cheap: TensorFlow, coremltools and onnxruntime are
imported only inside the functions that need them.
"""

__version__ = "0.1.0"
