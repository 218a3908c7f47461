"""The model layer: official and native InternVL checkpoints with V2PE positions."""

from v2pe.model.loading import convert_checkpoint, load_model
from v2pe.model.modeling import V2PEInternVLForConditionalGeneration
from v2pe.model.settings import V2PESettings

__all__ = ["V2PEInternVLForConditionalGeneration", "V2PESettings", "convert_checkpoint", "load_model"]
