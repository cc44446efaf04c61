"""Import a ready-made captioning model (a hub id, or a directory without capbot's metadata) as a model
directory with a new version id, the form the registry and serving expect (`capbot modal pull-model`)."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, VisionEncoderDecoderModel

from inference.hub import ModelLoadError, load_pretrained
from inference.modeldir import new_metadata, save_model_dir

log = logging.getLogger(__name__)


def import_model(source: str, models_dir: str | Path) -> Path:
    """Load `source` (hub id or directory) and save it as `models_dir/<new version>`; returns that directory."""
    model = load_pretrained(AutoModelForImageTextToText.from_pretrained, source, "model")
    if not isinstance(model, VisionEncoderDecoderModel):
        raise ModelLoadError(f"{source} is a {type(model).__name__}, not a VisionEncoderDecoderModel (ViT + GPT-2)",
                             reason="invalid")
    processor = load_pretrained(AutoImageProcessor.from_pretrained, source, "image processor")
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, source, "tokenizer")
    metadata = new_metadata(made_by="import", base=str(source), source={"model": str(source)})
    out = save_model_dir(model, processor, tokenizer, Path(models_dir) / metadata.version, metadata)
    log.info("model imported", extra={"source": str(source), "version": metadata.version, "path": str(out)})
    return out
