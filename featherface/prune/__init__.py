"""B-FPGM pruning: FPGM filter selection, soft filter pruning, layer groups, physical pruning
and the Bayesian search over per-group rates (Kaparinos and Mezaris, WACVW 2025)."""
