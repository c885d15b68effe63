"""Engines: what turns messages into a stream of tokens.

- base: the protocols (`Engine`, `DecodesTogether`), events and stats every engine shares;
- step: the per-token step every local decode loop runs (end of reply, text, thinking control);
- llama: a GGUF model on llama.cpp (the only module family that imports llama_cpp);
- batch: k samples of one prompt decoded together in one llama.cpp context;
- remote: an OpenAI-compatible server (vLLM, llama-server, Ollama);
- scripted: replayed text, for tests, demos and benchmarks.
"""
