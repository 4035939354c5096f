"""compress: a compression and quantization workbench for JPEG artifact-removal CNNs."""

from compress.errors import CompressError

__version__ = "0.1.0"
__all__ = ["CompressError", "__version__"]
