"""edgerun.export: trained models to verified, self-describing ONNX (see the export issue)."""
