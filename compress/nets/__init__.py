"""Architectures and the model registry. Importing this package registers every model."""

from compress.nets import arcnn as arcnn  # registers its models
from compress.nets import idcn as idcn  # registers its models
from compress.nets import rdn as rdn  # registers its models
from compress.nets.registry import MODELS, ModelSpec, build_model, count_params

__all__ = ["MODELS", "ModelSpec", "build_model", "count_params"]
