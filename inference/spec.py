"""How captions are made, said once: `CaptionerSpec`.

A spec is everything that decides what caption an image gets besides the model itself: the family and its
prompt, where
and in what precision the model runs, which engine runs it, its threads and batch size, the intake's
limits and the generation options (beams, length, n-gram ban, alternatives, confidence views). capbot
builds one from settings (`capbot.captioning.captioner_spec`); serving, `capbot caption`, `capbot
evaluate`, the retraining gate and the Modal GPU class each build their captioner from it
(`inference.captioner.LocalCaptioner(model, spec)`), so the gate scores the captions users are served.
A caller that deliberately differs says so in the spec it passes on: `scoring()` for evaluation, or a
`dataclasses.replace` of one named field (a command-line `--beams`, the Modal class's batch size).

The defaults are a default installation's: `Settings()` gives `CaptionerSpec()` with its cache folder
(tests/capbot/test_one_captioner.py holds the two together).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from inference.device import MODES, EngineConfigError
from inference.families import check_family
from inference.generation import check_options
from inference.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from inference.types import GenerationOptions

# What a default installation serves: two alternatives for the correction forms need three beams (the
# n-best), a length well above COCO's captions, the n-gram ban the base model needs, and confidence views
# where the device makes them cheap (`inference.views.views_for`).
SERVED_OPTIONS = GenerationOptions(num_beams=3, max_new_tokens=24, no_repeat_ngram_size=3, num_alternatives=2,
                                   confidence_views=None)


@dataclass(frozen=True)
class CaptionerSpec:
    """How a captioner makes captions (see the module docstring); validated on construction."""

    family: str = "auto"  # model family (`inference.families`); auto: the model's own, read from its config.json
    device: str = "auto"  # auto, cpu or cuda (`inference.device.resolve_device`)
    dtype: str = "auto"  # weights on the exact engine: auto (bf16 on a capable GPU, else fp32), float32, ...
    precision: str = "auto"  # engine: exact (plain generate), fast (CPU int8 graphs) or auto (fast on the CPU)
    threads: int = 0  # intra-op CPU threads; 0: `inference.device.resolve_threads`
    batch_size: int = 8  # images per forward pass
    options: GenerationOptions = SERVED_OPTIONS  # what a caption call without options of its own gets
    # Florence-2's task token or SmolVLM's question (`inference.family_models.caption_prompt`); None: the
    # family's own (<CAPTION>, "Caption this image."). A model of a family without prompts refuses one at load.
    prompt: str | None = None
    max_image_bytes: int = DEFAULT_MAX_BYTES  # the intake's limits (`inference.images`)
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    cache_dir: Path | None = field(default=None, compare=False)  # fast conversions of read-only model dirs

    def __post_init__(self) -> None:
        check_family(self.family)
        check_options(self.options)
        if self.precision not in MODES:
            raise EngineConfigError(f"unknown precision mode {self.precision!r}; use auto, exact or fast",
                                    reason="bad_precision")
        if self.batch_size < 1:
            raise EngineConfigError(f"batch size must be at least 1, got {self.batch_size}", reason="bad_batch_size")
        if self.threads < 0:
            raise EngineConfigError(f"threads must be 0 (auto) or more, got {self.threads}", reason="bad_threads")

    def scoring(self) -> "CaptionerSpec":
        """This spec for scoring caption text (the gate, `capbot evaluate`): without alternatives and
        confidence views, which cost time and change no caption (the best beam is the same whatever the
        n-best returned; views only re-score the caption)."""
        return replace(self, options=replace(self.options, num_alternatives=0, confidence_views=0))

    def with_choices(self, *, beams: int | None = None, max_new_tokens: int | None = None,
                     alternatives: int | None = None) -> "CaptionerSpec":
        """This spec with a caller's generation choices over its options (`choose_options`)."""
        return replace(self, options=choose_options(self.options, beams=beams, max_new_tokens=max_new_tokens,
                                                    alternatives=alternatives))


def choose_options(defaults: GenerationOptions, *, beams: int | None = None, max_new_tokens: int | None = None,
                   alternatives: int | None = None) -> GenerationOptions:
    """A caller's choices (None: not chosen) over `defaults`, the one rule for the web API and the CLI.

    Alternatives come from the beam search's n-best, so unless the caller set both, one follows the other:
    fewer beams offer fewer alternatives, more alternatives search with more beams. Both set and
    inconsistent: `EngineConfigError`.
    """
    if alternatives is None:
        alternatives = min(defaults.num_alternatives, (beams or defaults.num_beams) - 1)
    if beams is None:
        beams = max(defaults.num_beams, alternatives + 1)
    options = replace(defaults, num_beams=beams, num_alternatives=alternatives,
                      max_new_tokens=max_new_tokens or defaults.max_new_tokens)
    check_options(options)
    return options
