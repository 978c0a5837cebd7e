"""Data exposure: what had checkpoint N seen, and when was a document (or a text) seen?

- `inverse`: the inverse index maps (format owner: `names`, `write`, `read`, `check`) - document ->
  doc_idx positions -> sample -> step, and per-step exposure histograms.
- `counts`: `pile exposure` (tokens and documents per pile_set_name after step N / checkpoints).
- `find`: `pile find` (occurrences of a document or of a token match in training).
- `textindex`: the sampled k-gram index (and scan) for exact token-sequence search.
- `contamination`: `pile contamination` (MinHash/LSH near-duplicates and exact 13-gram overlaps).
- `dataset`: opening DATA (either form) with its inverse maps and provenance.
"""
