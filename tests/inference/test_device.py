"""One resolver for device and precision: serving casts weights, training autocasts; the same `auto` rule."""

from __future__ import annotations

import pytest
import torch

from inference.device import EngineConfigError, resolve_device, resolve_placement, resolve_precision
from inference.generation import clean_caption


def test_auto_is_fp32_on_the_cpu_for_serving_and_training():
    serve = resolve_placement("cpu", "auto", purpose="serve")
    train = resolve_placement("cpu", "auto", purpose="train")
    assert (serve.device.type, serve.weights, serve.autocast, serve.precision) == ("cpu", torch.float32, None, "fp32")
    assert (train.device.type, train.weights, train.autocast, train.precision) == ("cpu", torch.float32, None, "fp32")


@pytest.mark.parametrize("name", ["bf16", "bfloat16"])
def test_bf16_casts_weights_for_serving_and_autocasts_for_training(name):
    serve = resolve_placement("cpu", name, purpose="serve")
    train = resolve_placement("cpu", name, purpose="train")
    assert serve.weights == torch.bfloat16 and serve.autocast is None and serve.precision == "bf16"
    assert train.weights == torch.float32 and train.autocast == torch.bfloat16 and train.precision == "bf16"


def test_both_spellings_of_each_precision_are_accepted():
    cpu = torch.device("cpu")
    for short, long in (("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16")):
        assert resolve_precision(short, cpu) == resolve_precision(long, cpu)


def test_unknown_names_and_a_missing_gpu_are_user_errors():
    with pytest.raises(EngineConfigError) as err:
        resolve_precision("int3", torch.device("cpu"))
    assert err.value.reason == "bad_dtype" and "bf16" in err.value.message
    with pytest.raises(EngineConfigError) as err:
        resolve_device("tpu")
    assert err.value.reason == "bad_device"
    if not torch.cuda.is_available():
        with pytest.raises(EngineConfigError) as err:
            resolve_placement("cuda", "auto", purpose="train")
        assert err.value.reason == "no_gpu"


def test_a_torchrun_process_gets_its_own_gpu_index():
    if not torch.cuda.is_available():
        assert resolve_device("auto", local_rank=3) == torch.device("cpu")
    else:
        assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)


def test_caption_text_is_cleaned_to_one_line():
    assert clean_caption("  a red\n\tcircle \r on  white ") == "a red circle on white"
