"""The model side of riskstream: featurizer, DeepSeek-architecture classifier, quantized scorer."""
