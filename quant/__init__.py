"""The quantizer layer: specs, plans, manifests and one backend per method."""
