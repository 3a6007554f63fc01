"""Build the optional C kernels; everything else is configured in pyproject.toml.

`lineage.store._planes` (byte-plane split/merge fused with the XOR delta) makes the
object store several times faster. It is optional: where no C compiler is available the
build goes on without it, and the store uses its numpy implementation of the same code.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "lineage.store._planes",
            sources=["lineage/store/_planes.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
