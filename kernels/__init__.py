"""Triton kernels of fsgen_engine, installed as ``fsgen_engine.kernels``.

Import a kernel module only when Triton is installed; on CPU the kernels run under
``TRITON_INTERPRET=1`` (set it before the first import).
"""
