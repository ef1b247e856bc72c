"""Build the compiled kernels (everything else is in pyproject.toml).

Each loss family is one extension module built from one C file under
src/probloss/_native/; add a family with one line in EXTENSIONS. The headers
there (pl_math.h, pl_parallel.h, pl_rows.h) are shared.

Portable flags only: no -march=native. The hot loops carry target_clones
(pl_parallel.h), so one binary uses AVX-512 or AVX2 where the CPU has them.
OpenMP is used where the compiler supports it (tried once, at build time);
without it the extension is built serial from the same source. No -ffast-math:
the kernels' accuracy depends on IEEE arithmetic.
"""

from __future__ import annotations

import os
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = "src/probloss/_native"
HEADERS = [f"{NATIVE}/{name}" for name in ("pl_huge.h", "pl_math.h", "pl_parallel.h", "pl_pool.h", "pl_rows.h")]


def xla_include_dir() -> str | None:
    """The directory of XLA's FFI C API header (``xla/ffi/api/c_api.h``), from an installed jaxlib, or None.

    Where it is found, the binary and softmax modules also export their kernels
    as XLA FFI handlers (pl_xla.h), which JAX's CPU fast paths call without a
    copy. Without it (no JAX at build time, PROBLOSS_NO_XLA_FFI=1) JAX uses its
    own XLA code for those losses.
    """
    if os.environ.get("PROBLOSS_NO_XLA_FFI") == "1":
        return None
    try:
        import jaxlib  # optional, at build time only
    except ImportError:
        return None
    include = os.path.join(os.path.dirname(jaxlib.__file__), "include")
    return include if os.path.isfile(os.path.join(include, "xla", "ffi", "api", "c_api.h")) else None


XLA_INCLUDE = xla_include_dir()


def family(name: str, source: str, *more: str, depends: tuple[str, ...] = (), xla: bool = False) -> Extension:
    """The extension module ``probloss._native.<name>`` built from ``src/probloss/_native/<source>`` (and ``more``).

    ``xla``: the module also holds XLA FFI handlers, compiled where XLA's header is found.
    """
    include_dirs, macros = [NATIVE], []
    if xla and XLA_INCLUDE is not None:
        include_dirs.append(XLA_INCLUDE)
        macros.append(("PL_XLA_FFI", "1"))
    return Extension(f"probloss._native.{name}", [f"{NATIVE}/{s}" for s in (source, *more)], include_dirs=include_dirs,
                     define_macros=macros, depends=HEADERS + [f"{NATIVE}/{d}" for d in (*depends, "pl_xla.h")])


EXTENSIONS = [
    # binary.c compiles binary_impl.h twice: load-time clones, and the baseline alone.
    family("_binary", "binary.c", depends=("binary_impl.h",), xla=True),
    # softmax_ce_base.c, softmax_ce_avx2.c and softmax_ce_avx512.c compile softmax_ce_impl.h for three instruction sets;
    # softmax_ce.c picks one at run time.
    family("_softmax", "softmax.c", "softmax_ce.c", "softmax_ce_base.c", "softmax_ce_avx2.c", "softmax_ce_avx512.c",
           depends=("softmax_ce.h", "softmax_ce_impl.h", "softmax_glue.h"), xla=True),
    # Categorical focal CE with its gradient (PyTorch's fused path): softmax_ce_impl.h's helpers
    # compiled again under this module's names, plus softmax_focal_grad_impl.h.
    family("_softmax_grad", "softmax_focal_grad.c", "softmax_focal_grad_base.c", "softmax_focal_grad_avx2.c",
           depends=("softmax_ce.h", "softmax_ce_impl.h", "softmax_focal_grad_impl.h", "softmax_glue.h")),
    family("_ctc", "ctc.c"),
]

UNIX_FLAGS = ["-O3", "-g0", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast",
              "-fvisibility=hidden", "-Wall", "-Wno-unknown-pragmas"]
MSVC_FLAGS = ["/O2", "/fp:precise"]


class BuildWithOpenMP(build_ext):
    """Add the compiler's optimisation and OpenMP flags (OpenMP only if a test program builds)."""

    def build_extensions(self) -> None:
        msvc = self.compiler.compiler_type == "msvc"
        compile_flags = list(MSVC_FLAGS if msvc else UNIX_FLAGS)
        link_flags: list[str] = []
        openmp = ["/openmp"] if msvc else ["-fopenmp"]
        if os.environ.get("PROBLOSS_NO_OPENMP") != "1" and self._builds_with(openmp):
            compile_flags += openmp
            link_flags += [] if msvc else openmp
        for extension in self.extensions:
            extension.extra_compile_args = compile_flags + list(extension.extra_compile_args)
            extension.extra_link_args = link_flags + list(extension.extra_link_args)
        super().build_extensions()

    def _builds_with(self, flags: list[str]) -> bool:
        """Whether a small OpenMP program compiles and links with ``flags``."""
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "omp_check.c")
            with open(source, "w") as f:
                f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
            try:
                objects = self.compiler.compile([source], output_dir=tmp, extra_postargs=flags)
                self.compiler.link_executable(objects, os.path.join(tmp, "omp_check"), extra_postargs=flags
                                              if self.compiler.compiler_type != "msvc" else [])
            except Exception:  # any failure means "no OpenMP here"
                print("probloss: building the kernels without OpenMP (single-threaded)", file=sys.stderr)
                return False
        return True


setup(ext_modules=EXTENSIONS, cmdclass={"build_ext": BuildWithOpenMP})
