"""A lean, decoder-only BiCodec that loads the released ``BiCodec/`` folder as it is."""

from veena.plugins.spark.bicodec.config import BiCodecConfig, BiCodecConfigError
from veena.plugins.spark.bicodec.model import BiCodecDecoder, MissingWeightsError, fold_weight_norm

__all__ = ["BiCodecConfig", "BiCodecConfigError", "BiCodecDecoder", "MissingWeightsError",
           "fold_weight_norm"]
