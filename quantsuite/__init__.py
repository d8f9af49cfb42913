"""quantsuite: which model, quantization and prompting strategy give the best answers per GB."""

__version__ = "0.1.0"
