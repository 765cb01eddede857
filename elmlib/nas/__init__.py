"""The method (paper Sections III-IV): search space, weight-sharing supernet, PCA-guided FFN growth,
PCA/CKA/similarity analysis, distillation losses, the search objective, evolution and importance."""
