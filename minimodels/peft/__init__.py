"""Parameter-efficient fine-tuning: LoRA (merging, adapters saved alone), the rest of the PEFT family,
vocabulary expansion with staged freezing, and a 4-bit base (QLoRA).

    from minimodels.peft import LoRAConfig, apply_lora, merge_lora, save_lora, trainable_parameters
    model = apply_lora(model, LoRAConfig(r=8, alpha=16, target_modules=("q_proj", "v_proj")))
    print(trainable_parameters(model))

LoRA equals peft's `get_peft_model`, NF4 equals bitsandbytes' `quantize_4bit` (tests/test_lora.py,
tests/test_quant.py). Lesson: notebooks/10_lora_and_quantization.ipynb.
"""

from minimodels.peft.adapters import Adapted, BottleneckAdapter, apply_adapters
from minimodels.peft.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    load_lora,
    lora_modules,
    lora_state_dict,
    merge_and_unload,
    merge_lora,
    save_lora,
    unmerge_lora,
)
from minimodels.peft.params import TrainableReport, freeze, trainable_parameters
from minimodels.peft.prompt import PromptTuning
from minimodels.peft.quant import (
    QuantizedTensor,
    QuantLinear,
    dequantize,
    nf4_code,
    quantize,
    quantize_int8,
    quantize_model,
    quantize_nf4,
)
from minimodels.peft.selective import apply_bitfit, full_finetune, train_last_layers
from minimodels.peft.vocab import STAGES, expand_vocabulary, extend_tokenizer, new_token_pieces, set_stage

__all__ = [
    "Adapted", "BottleneckAdapter", "LoRAConfig", "LoRALinear", "PromptTuning", "QuantLinear", "QuantizedTensor",
    "STAGES", "TrainableReport", "apply_adapters", "apply_bitfit", "apply_lora", "dequantize", "expand_vocabulary",
    "extend_tokenizer", "freeze", "full_finetune", "load_lora", "lora_modules", "lora_state_dict",
    "merge_and_unload", "merge_lora", "new_token_pieces", "nf4_code", "quantize", "quantize_int8",
    "quantize_model", "quantize_nf4", "save_lora", "set_stage", "train_last_layers", "trainable_parameters",
    "unmerge_lora",
]
