"""r1chat: a terminal chat for DeepSeek-R1 reasoning models on llama.cpp."""

__version__ = "0.1.0"
