"""vcon-otel's conserver side: a tracer module (`vcon_otel.tracer`) and lifecycle hooks
(`vcon_otel.hooks`) that append one record per call to the bridge's Redis stream."""

__version__ = "0.1.0"
