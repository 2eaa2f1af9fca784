"""ekv-uptrain: recovery of an ekv-export model by distillation from the original (the fourth
EliteKV step). Stage 1 trains each layer's compressed attention to reproduce the original
attention block on that layer's inputs (layer-local, the CPU path); stage 2 minimizes
KL(original || compressed) on next-token distributions end to end. See docs/uptrain.md.
"""
