"""The CPU fast path of the ViT+GPT-2 family: int8 ONNX Runtime graphs driven by capbot's own decode loop.

Modules, each importing only those listed before it: `layout` (the conversion's file and tensor names),
`cpuint8` (which int8 recipe this CPU needs), `graph` (the two graphs over a loaded model, torch),
`build` (export and quantise them, torch), `cache` (where conversions live; runs `build`), `files` (what
serving reads from a model directory without torch), `engine` (`FastEngine`). Why ONNX Runtime and what it
gains: docs/performance.md.

The BLIP, GIT, Florence-2 and SmolVLM families' fast path keeps transformers' `generate`: `vision` (a vision
tower as a cached int8 ONNX Runtime graph, torch) and `families` (`quantize_for_cpu`, torch).
"""
