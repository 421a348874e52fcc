"""A lean BiCodec that loads the released ``BiCodec/`` folder as it is: the decode path
(global + semantic tokens → waveform) and the speaker encoder (reference clip → global tokens)."""

from veena.plugins.spark.bicodec.config import BiCodecConfig, BiCodecConfigError
from veena.plugins.spark.bicodec.model import BiCodecDecoder, MissingWeightsError, fold_weight_norm
from veena.plugins.spark.bicodec.speaker import BiCodecSpeakerEncoder, SpeakerEncoderConfig

__all__ = ["BiCodecConfig", "BiCodecConfigError", "BiCodecDecoder", "BiCodecSpeakerEncoder",
           "MissingWeightsError", "SpeakerEncoderConfig", "fold_weight_norm"]
