"""Reading and writing: atomic files and provenance (files), content-checked caches (cache), readable
errors for user inputs (inputs) and the strict settings validator every config shares (settings)."""
