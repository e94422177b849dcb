"""Builds the optional media fast path (media/_fastpath.c); everything else is in pyproject.toml.

``optional=True``: without a C compiler or the Python headers the install still succeeds and
media/fastpath.py selects the pure-Python writer.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "media._fastpath",
            sources=["media/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
