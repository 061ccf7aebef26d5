"""The key/value cache of the continuous-batching engine (synthesis/engine.py), in blocks of
positions so that a decode step reads views of it, never gathered copies."""
import torch


class BlockCache:
    """Keys and values of every slot, per layer, in blocks of `block` positions: block b of a
    layer is a [slots, kv_heads, block, head_dim] tensor holding positions b*block..(b+1)*block-1
    of every slot. Blocks are added as sequences grow (never copied), and a prefix of slots of
    one block is a contiguous view, which is what the decode step's matrix products read."""

    def __init__(self, *, layers: int, slots: int, kv_heads: int, head_dim: int, dtype, device, block: int = 64):
        self.layers, self.slots, self.kv_heads, self.head_dim = layers, slots, kv_heads, head_dim
        self.dtype, self.device, self.block = dtype, device, block
        self.keys: list[list[torch.Tensor]] = [[] for _ in range(layers)]
        self.values: list[list[torch.Tensor]] = [[] for _ in range(layers)]

    def blocks_for(self, length: int) -> int:
        return -(-length // self.block)

    def reserve(self, length: int) -> None:
        """Blocks for positions 0..length-1 of every slot."""
        shape = (self.slots, self.kv_heads, self.block, self.head_dim)
        while len(self.keys[0]) < self.blocks_for(length):
            for layer in range(self.layers):
                self.keys[layer].append(torch.zeros(shape, dtype=self.dtype, device=self.device))
                self.values[layer].append(torch.zeros(shape, dtype=self.dtype, device=self.device))

    def write_tokens(self, layer: int, slots: torch.Tensor, positions: torch.Tensor, k, v) -> None:
        """One position per slot: k, v are [n, kv_heads, head_dim]."""
        blocks, offsets = positions // self.block, positions % self.block
        for number in torch.unique(blocks).tolist():
            rows = (blocks == number).nonzero().squeeze(1)
            self.keys[layer][number][slots[rows], :, offsets[rows]] = k[rows]
            self.values[layer][number][slots[rows], :, offsets[rows]] = v[rows]

    def write_span(self, layer: int, slot: int, start: int, k, v) -> None:
        """Positions start..start+n-1 of one slot: k, v are [n, kv_heads, head_dim]."""
        position, end = start, start + k.shape[0]
        while position < end:
            number, offset = divmod(position, self.block)
            stop = min(end, (number + 1) * self.block)
            span = slice(position - start, stop - start)
            self.keys[layer][number][slot, :, offset:offset + stop - position] = k[span].transpose(0, 1)
            self.values[layer][number][slot, :, offset:offset + stop - position] = v[span].transpose(0, 1)
            position = stop

    def read_slot(self, layer: int, slot: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions 0..end-1 of one slot as [1, kv_heads, end, head_dim] keys and values."""
        blocks = self.blocks_for(end)
        keys = torch.cat([b[slot:slot + 1] for b in self.keys[layer][:blocks]], dim=2)[:, :, :end]
        values = torch.cat([b[slot:slot + 1] for b in self.values[layer][:blocks]], dim=2)[:, :, :end]
        return keys, values

    def move(self, source: int, target: int, length: int) -> None:
        """Copy positions 0..length-1 of slot `source` into slot `target`."""
        for store in (self.keys, self.values):
            for blocks in store:
                for block in blocks[:self.blocks_for(length)]:
                    block[target] = block[source]

    def clear(self) -> None:
        self.keys = [[] for _ in range(self.layers)]
        self.values = [[] for _ in range(self.layers)]
