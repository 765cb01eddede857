"""elmlib: reference implementation of ELM (Elastic Architecture Search for Efficient Language Models)."""
__version__ = "0.1.0"
