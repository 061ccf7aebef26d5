"""The key/value cache of the continuous-batching engine (synthesis/engine.py), in blocks of
positions so that a decode step reads views of it, never gathered copies.

A sequence whose prompt starts with a shared prefix keeps only the positions after it here
(its cache index is its position minus the prefix length); the prefix's keys and values are
stored once, by the engine, and read once per step for every sequence that shares them."""
import torch


class BlockCache:
    """Keys and values of every slot, per layer, in blocks of `block` positions: per layer one
    [capacity, slots, kv_heads, block, head_dim] tensor, whose block b holds cache indices
    b*block..(b+1)*block-1 of every slot. A prefix of slots of one block is a contiguous view,
    which is what the decode step's matrix products read. Capacity grows by doubling (the old
    blocks are copied over once), so a step never waits on more than an occasional copy."""

    def __init__(self, *, layers: int, slots: int, kv_heads: int, head_dim: int, dtype, device, block: int = 64):
        self.layers, self.slots, self.kv_heads, self.head_dim = layers, slots, kv_heads, head_dim
        self.dtype, self.device, self.block = dtype, device, block
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.capacity = 0  # blocks allocated per layer

    def blocks_for(self, length: int) -> int:
        return -(-length // self.block)

    def reserve(self, length: int, *, most: int | None = None) -> None:
        """Room for cache indices 0..length-1 of every slot; when it grows, room for twice as
        many blocks, but not beyond `most` indices (the longest any sequence can reach)."""
        needed = self.blocks_for(length)
        if needed <= self.capacity:
            return
        doubled = 2 * self.capacity
        capacity = max(needed, min(doubled, self.blocks_for(most)) if most else doubled)
        shape = (capacity, self.slots, self.kv_heads, self.block, self.head_dim)
        for store in (self.keys, self.values):
            for layer in range(self.layers):
                grown = torch.zeros(shape, dtype=self.dtype, device=self.device)
                if self.capacity:
                    grown[:self.capacity] = store[layer]
                    store[layer] = grown
                else:
                    store.append(grown)
        self.capacity = capacity

    def write_tokens(self, layer: int, slots: torch.Tensor, indices: torch.Tensor, k, v) -> None:
        """One cache index per slot: k, v are [n, kv_heads, head_dim]."""
        blocks, offsets = indices // self.block, indices % self.block
        self.keys[layer][blocks, slots, :, offsets] = k
        self.values[layer][blocks, slots, :, offsets] = v

    def read_slot(self, layer: int, slot: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cache indices 0..end-1 of one slot as [kv_heads, end, head_dim] keys and values."""
        blocks = self.blocks_for(end)
        keys = self.keys[layer][:blocks, slot].transpose(0, 1).reshape(self.kv_heads, -1, self.head_dim)
        values = self.values[layer][:blocks, slot].transpose(0, 1).reshape(self.kv_heads, -1, self.head_dim)
        return keys[:, :end], values[:, :end]

    def block_views(self, layer: int, rows: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Blocks 0..len(rows)-1, block b for slots 0..rows[b]-1: per block a [rows[b], kv_heads,
        block, head_dim] view of the keys and one of the values."""
        keys, values = self.keys[layer], self.values[layer]
        return [keys[b, :n] for b, n in enumerate(rows)], [values[b, :n] for b, n in enumerate(rows)]

    def move(self, source: int, target: int, length: int) -> None:
        """Copy cache indices 0..length-1 of slot `source` into slot `target`."""
        blocks = self.blocks_for(length)
        if not blocks:
            return
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[:blocks, target] = tensor[:blocks, source]

    def clear(self) -> None:
        self.keys, self.values, self.capacity = [], [], 0
