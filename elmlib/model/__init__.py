"""The standalone models: ``ElmConfig`` and the ``transformers`` classes a found architecture becomes.

These files are copied into every exported folder (``trust_remote_code``), so they import nothing
else of elmlib."""
