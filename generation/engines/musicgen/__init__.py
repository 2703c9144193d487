"""MusicGen (transformers): loading (``loader``), batched generation and windowed
continuation (``generate``), the project's decoding loop (``decoding``, ``fast_decoder``,
``attention_kernel`` with its C++ source in ``csrc/``), melody chroma (``chroma``), memory
hand-back of replaced weights (``pages``) and the cross-request batcher (``batcher``)."""
