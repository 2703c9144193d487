"""Model families, one package each: load a checkpoint once per process and generate clips.
Torch and transformers only; nothing about stems, storage or HTTP."""
