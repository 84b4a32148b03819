"""What the tests share: paths, skips, fixtures and helpers (one module per concern).

- paths: the project root and the ../shared reference data
- skips: skip markers for tools that may be missing (adb)
- fixtures: the pytest fixtures tests/conftest.py registers (reference data, small models, adb server and phone)
- cli: running the real `mbdeploy` command in a subprocess, and its environment
- sshd: a real OpenSSH server on loopback
- tiny_model: small TFLite files converted with TensorFlow
- injection: a file name that would run a command if a path were not quoted, and the check that none ran
- records: result runs and manifests written through the real schema, for report/select/compare
- namespaces: whether a real tmpfs / read-only mount can be made for a command (`unshare -rm`)
"""
