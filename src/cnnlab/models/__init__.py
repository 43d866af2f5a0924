"""The model registry (torchvision classifiers + cnnlab's own networks) and layer aliases."""

from cnnlab.models.layers import layer_aliases, resolve_layers
from cnnlab.models.registry import (IMAGENET_MEAN, IMAGENET_STD, ModelBundle, available_models, build_model,
                                    load_state_dict_file, register_model, replace_head)

__all__ = ["ModelBundle", "build_model", "available_models", "register_model", "replace_head",
           "load_state_dict_file", "layer_aliases", "resolve_layers", "IMAGENET_MEAN", "IMAGENET_STD"]
