"""Import a ready-made captioning model (a hub id, or a directory without capbot's metadata) as a model
directory with a new version id, the form the registry and serving expect (`capbot models import`,
`capbot modal pull-model`).

The model is loaded as serving loads it (`inference.ved` for ViT+GPT-2, `inference.family_models` for the
other families) and saved the way capbot saves every version
(`inference.modeldir.save_model_dir`): safetensors weights, without the legacy buffers and generation
defaults an old checkpoint may carry, plus `capbot.json` naming where it came from.
"""

from __future__ import annotations

import logging
from pathlib import Path

from inference import family_models, ved
from inference.families import VISION_ENCODER_DECODER, family_of
from inference.hub import model_directory
from inference.modeldir import new_metadata, save_model_dir

log = logging.getLogger(__name__)


def import_model(source: str, models_dir: str | Path) -> Path:
    """Load `source` (hub id or directory) and save it as `models_dir/<new version>`; returns that directory."""
    folder = model_directory(source)
    family = family_of(folder)  # another architecture is refused before anything is loaded
    if family == VISION_ENCODER_DECODER:
        model, processor, tokenizer = ved.load_model(folder), ved.load_processor(folder), ved.load_tokenizer(folder)
    else:  # the family's processor saves its tokenizer and chat template with it
        model, processor = family_models.load_model(folder, family), family_models.load_processor(folder, family)
        tokenizer = None
    metadata = new_metadata(made_by="import", base=str(source), source={"model": str(source)})
    out = save_model_dir(model, processor, tokenizer, Path(models_dir) / metadata.version, metadata)
    log.info("model imported", extra={"source": str(source), "version": metadata.version, "family": family,
                                      "path": str(out)})
    return out
