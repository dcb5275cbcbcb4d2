"""Build of moegs and its compiled module ``moegs._C``.

The extension is compiled ahead of time (never at import). Switches, read from
the environment:

* ``MOEGS_NO_CUDA=1``     build the CPU kernels only, even with a CUDA torch.
* ``MOEGS_FORCE_CUDA=1``  build the CUDA kernels even when no GPU is visible
                          (needs a CUDA build of torch and nvcc / CUDA_HOME).
* ``TORCH_CUDA_ARCH_LIST`` the CUDA architectures, as for any torch extension
                          (default here: 8.0 8.6 8.9 9.0+PTX).
* ``MOEGS_DEBUG=1``       -O0 -g instead of -O3.
* ``MOEGS_PTXAS_VERBOSE=1`` print ptxas register / spill reports of the CUDA kernels.

By default CUDA kernels are built when the installed torch is a CUDA build and
nvcc is found. The chosen configuration is printed.
"""

import glob
import json
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def read_sources(kind):
    """Expand the glob patterns listed for ``kind`` in csrc/SOURCES."""
    out = []
    with open(os.path.join(ROOT, "csrc", "SOURCES")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            set_name, pattern = (part.strip() for part in line.split(":", 1))
            if set_name == kind:
                out += sorted(glob.glob(os.path.join(ROOT, pattern)))
    return [os.path.relpath(p, ROOT) for p in out]


def extension_modules():
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        sys.exit(
            "moegs: building the compiled module needs torch at build time.\n"
            "  Install it first (CPU build: pip install torch==2.13.0), then\n"
            "  pip install --no-build-isolation -e ."
        )

    cuda_sources = read_sources("cuda")
    torch_has_cuda = torch.version.cuda is not None
    if _flag("MOEGS_NO_CUDA"):
        with_cuda, reason = False, "MOEGS_NO_CUDA=1"
    elif _flag("MOEGS_FORCE_CUDA"):
        if not torch_has_cuda or CUDA_HOME is None:
            sys.exit(
                "moegs: MOEGS_FORCE_CUDA=1 needs a CUDA build of torch and a CUDA toolkit "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={CUDA_HOME})"
            )
        with_cuda, reason = True, "MOEGS_FORCE_CUDA=1"
    elif torch_has_cuda and CUDA_HOME is not None and cuda_sources:
        with_cuda, reason = True, "CUDA torch and toolkit found"
    else:
        with_cuda, reason = False, (
            "torch is a CPU build" if not torch_has_cuda else "no CUDA toolkit found"
        )
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0 8.6 8.9 9.0+PTX"

    debug = _flag("MOEGS_DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    sources = read_sources("cpu") + (cuda_sources if with_cuda else [])
    # -ffp-contract=off: no fused multiply-add contraction, so the SIMD clones of the
    # CPU kernels (csrc/cpu/composite_cpu.h) give the same bits as the baseline x86-64 code.
    extra = {"cxx": opt + ["-fopenmp", "-fvisibility=hidden", "-ffp-contract=off"]}
    if with_cuda:
        extra["nvcc"] = opt + ["--expt-relaxed-constexpr", "-lineinfo"]
        if _flag("MOEGS_PTXAS_VERBOSE"):
            extra["nvcc"] += ["-Xptxas", "-v"]
    ext_cls = CUDAExtension if with_cuda else CppExtension
    ext = ext_cls(
        name="moegs._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc", "include")],
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
    )

    config = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "with_cuda": with_cuda,
        "cuda_reason": reason,
        "cuda_home": CUDA_HOME if with_cuda else None,
        "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if with_cuda else None,
        "debug": debug,
        "sources": len(sources),
    }
    print("moegs build configuration:")
    for key, value in config.items():
        print(f"  {key:>15}: {value}")
    with open(os.path.join(ROOT, "moegs", "_build_config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = extension_modules()

setup(
    packages=find_packages(include=["moegs", "moegs.*"]),
    package_data={"moegs": ["_build_config.json"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
