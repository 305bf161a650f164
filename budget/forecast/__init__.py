"""Fast estimates and predictions: sampled compression, fitted corrections, model shapes, weight statistics."""
