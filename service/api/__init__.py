"""Thin HTTP controllers: decode, call a stage's service function, answer a wire struct of
``api.schemas`` (one module per resource). No SQL here; every handler has an operation id and
a summary, and ``LucController`` hands it the process's resources."""
