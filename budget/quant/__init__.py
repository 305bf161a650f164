"""What a tensor becomes: quantization schemes, bit packing, group math, the official int8 format and plans."""
