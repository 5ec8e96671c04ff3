"""Build the Cython fast paths.

Two kinds of extension live here:
- hand-written ``.pyx`` modules under ``msstorm/_fastpath/`` (the codec), whose
  plain-Python twin is a separate module under ``msstorm/protocol/``;
- "pure Python mode" modules: one ``.py`` source typed by a ``.pxd`` beside it.
  A ``*_c.py`` file is a symbolic link to its plain twin, so the same source is
  importable both interpreted and compiled (the aiohttp way).
Set ``MSSTORM_CYTHON_TRACE=1`` to build with line tracing for profilers.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# Hand-written Cython: hot loops index C arrays and lists unchecked, so each public
# entry point checks its indices itself.
MODULES = [
    "msstorm/_fastpath/codec_c.pyx",
    "msstorm/_fastpath/histogram_c.pyx",
    "msstorm/_fastpath/rtt_c.pyx",
    "msstorm/_fastpath/pokes_c.pyx",
    "msstorm/_fastpath/fanout_c.pyx",
    "msstorm/_fastpath/pokeback_c.pyx",
    "msstorm/_fastpath/trim_c.pyx",
]
# Pure Python mode: the plain twin's own source, so it keeps Python's checked
# indexing (an IndexError, not a read past the end of a list).
PURE_MODULES = [
    "msstorm/_fastpath/timers_c.py",
    "msstorm/_fastpath/session_c.py",
    "msstorm/_fastpath/connection_c.py",
    "msstorm/_fastpath/swarm_client_c.py",
]

trace = os.environ.get("MSSTORM_CYTHON_TRACE") == "1"
macros = [("CYTHON_TRACE", "1")] if trace else []
directives = {"cdivision": True, "embedsignature": True, "linetrace": trace}


def extensions(paths: list[str], checked: bool) -> list[Extension]:
    built = [
        Extension(
            path.rsplit(".", 1)[0].replace("/", "."),
            [path],
            define_macros=macros,
            extra_compile_args=["-O3"],
        )
        for path in paths
    ]
    return cythonize(
        built,
        language_level=3,
        compiler_directives={**directives, "boundscheck": checked, "wraparound": checked},
    )


setup(ext_modules=extensions(MODULES, False) + extensions(PURE_MODULES, True))
