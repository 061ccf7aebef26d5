"""The decoder layer's projections fused for the engine (synthesis/lm/engine.py)."""
import torch


def fused_projections(layer) -> tuple:
    """(qkv weight, qkv bias, gate_up weight, gate_up bias) of a decoder layer: one matrix product
    for q, k and v, one for the MLP's gate and up, instead of five. The module's own weights
    become views into the fused tensors (no second copy in memory), once per layer."""
    attention, mlp = layer.self_attn, layer.mlp
    cached = getattr(layer, "_ksg_fused", None)
    if cached is not None and cached[0].data_ptr() == attention.q_proj.weight.data_ptr() \
            and cached[2].data_ptr() == mlp.gate_proj.weight.data_ptr():
        return cached
    fused = []
    for modules in ((attention.q_proj, attention.k_proj, attention.v_proj), (mlp.gate_proj, mlp.up_proj)):
        weight = torch.cat([m.weight.detach() for m in modules])
        bias = torch.cat([m.bias.detach() for m in modules]) if modules[0].bias is not None else None
        start = 0
        for module in modules:
            rows = module.weight.shape[0]
            module.weight.data = weight[start:start + rows]
            if bias is not None:
                module.bias.data = bias[start:start + rows]
            start += rows
        fused += [weight, bias]
    layer._ksg_fused = tuple(fused)
    return layer._ksg_fused
